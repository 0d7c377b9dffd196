"""Run the fault-recovery program many times, under CPU load, and check the survivors never split.

Each run starts 4-8 players with a random failure probability and seed (SIGKILL between
operations, as in ``examples/fault_recovery.py``).  A run *splits* if two survivors revealed
different totals for the same iteration; a total is *garbage* if it is not a whole number or
grows faster than 1 per iteration (increments are lost only when their own sharing failed).  Both must never happen.

    python benchmarks/stress_fault_recovery.py [--runs 400] [--load 2] [--seed 0] [--trace DIR]

With ``--trace DIR`` every player writes its log (the example's lines and the library's, at
DEBUG, with times) to ``DIR/run-N/player-R.log``; the directories of runs that went right are
removed, so what is left is the runs to read.  (A drift between survivors shows there first as
one player failing at the log while another fails at the next share.)
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import itertools
import logging
import multiprocessing
import os
import random
import shutil
import sys
import time

from cicada_async import AsyncSocketCommunicator

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "fault_recovery.py")


async def traced(communicator, *, directory: str, example_main, **kwargs):  # pragma: no cover - player
    """Run the example with this player's log going to ``directory/player-R.log``."""
    handler = logging.FileHandler(os.path.join(directory, f"player-{communicator.rank}.log"))
    handler.setFormatter(logging.Formatter("%(relativeCreated)9.1f %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    return await example_main(communicator, **kwargs)


def burn() -> None:  # pragma: no cover - load generator
    x = 0
    while True:
        x = (x * 1103515245 + 12345) % 2**31


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--load", type=int, default=2, help="busy-looping processes to run beside (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trace", metavar="DIR", help="keep every player's log of the runs that went wrong here")
    options = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    spec = importlib.util.spec_from_file_location("fault_recovery", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    rng = random.Random(options.seed)
    burners = [multiprocessing.Process(target=burn, daemon=True) for _ in range(options.load)]
    for process in burners:
        process.start()
    splits = garbage = errors = deaths = 0
    start = time.monotonic()
    try:
        for run in range(options.runs):
            players = rng.randint(4, 8)
            pfail = rng.choice([0.03, 0.05, 0.1, 0.15])
            seed = rng.randrange(10**6)
            fn = example.main
            directory = None
            if options.trace:
                directory = os.path.join(options.trace, f"run-{run}")
                os.makedirs(directory, exist_ok=True)
                fn = functools.partial(traced, directory=directory, example_main=example.main)
            results = AsyncSocketCommunicator.run(world_size=players, fn=fn, name="world-0",
                                                  kwargs=dict(pfail=pfail, seed=seed, iterations=40))
            went_wrong = False
            survivors = [r for r in results if isinstance(r, list)]
            deaths += sum(1 for r in results if not isinstance(r, list))
            for rank, result in enumerate(results):
                if type(result).__name__ == "Failed":
                    errors += 1
                    went_wrong = True
                    print(f"run {run}: player {rank} raised (players={players} pfail={pfail} seed={seed}): "
                          f"{result.exception!r}", file=sys.stderr)
            seen: dict[int, set[float]] = {}
            for totals in survivors:
                for iteration, total in totals:
                    seen.setdefault(iteration, set()).add(total)
            if any(len(values) > 1 for values in seen.values()):
                splits += 1
                went_wrong = True
                print(f"run {run}: SPLIT players={players} pfail={pfail} seed={seed}: {seen}", file=sys.stderr)
            ordered = [(i, min(seen[i])) for i in sorted(seen)]
            # Each iteration adds at most 1 (an increment is lost when its sharing fails).
            if any(not float(t).is_integer() for _, t in ordered) or any(
                    not 0 <= b - a <= j - i for (i, a), (j, b) in itertools.pairwise(ordered)):
                garbage += 1
                went_wrong = True
                print(f"run {run}: GARBAGE players={players} pfail={pfail} seed={seed}: {results}", file=sys.stderr)
            if directory is not None and not went_wrong:
                shutil.rmtree(directory)
            if (run + 1) % 50 == 0:
                print(f"  {run + 1} runs, {splits} splits, {garbage} garbage, {errors} players raised",
                      file=sys.stderr)
    finally:
        for process in burners:
            process.kill()
    elapsed = time.monotonic() - start
    print(f"{options.runs} runs of the fault-recovery program ({deaths} players killed or failed, "
          f"{errors} raised instead of dying) under {options.load} busy processes on {os.cpu_count()} cores "
          f"in {elapsed:.0f} s: {splits} splits, {garbage} runs with a wrong total.")


if __name__ == "__main__":
    main()
