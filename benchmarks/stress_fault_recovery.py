"""Run the fault-recovery program many times, under CPU load, and check the survivors never split.

Each run starts 4-8 players with a random failure probability and seed (SIGKILL between
operations, as in ``examples/fault_recovery.py``).  A run *splits* if two survivors revealed
different totals for the same iteration; a total is *garbage* if it is not a whole number or
grows faster than 1 per iteration (increments are lost only when their own sharing failed).  Both must never happen.

    python benchmarks/stress_fault_recovery.py [--runs 400] [--load 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import logging
import multiprocessing
import os
import random
import sys
import time

from cicada_async import AsyncSocketCommunicator

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "fault_recovery.py")


def burn() -> None:  # pragma: no cover - load generator
    x = 0
    while True:
        x = (x * 1103515245 + 12345) % 2**31


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--load", type=int, default=2, help="busy-looping processes to run beside (default 2)")
    parser.add_argument("--seed", type=int, default=0)
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
            results = AsyncSocketCommunicator.run(world_size=players, fn=example.main, name="world-0",
                                                  kwargs=dict(pfail=pfail, seed=seed, iterations=40))
            survivors = [r for r in results if isinstance(r, list)]
            deaths += sum(1 for r in results if not isinstance(r, list))
            for rank, result in enumerate(results):
                if type(result).__name__ == "Failed":
                    errors += 1
                    print(f"run {run}: player {rank} raised (players={players} pfail={pfail} seed={seed}): "
                          f"{result.exception!r}", file=sys.stderr)
            seen: dict[int, set[float]] = {}
            for totals in survivors:
                for iteration, total in totals:
                    seen.setdefault(iteration, set()).add(total)
            if any(len(values) > 1 for values in seen.values()):
                splits += 1
                print(f"run {run}: SPLIT players={players} pfail={pfail} seed={seed}: {seen}", file=sys.stderr)
            ordered = [(i, min(seen[i])) for i in sorted(seen)]
            # Each iteration adds at most 1 (an increment is lost when its sharing fails).
            if any(not float(t).is_integer() for _, t in ordered) or any(
                    not 0 <= b - a <= j - i for (i, a), (j, b) in itertools.pairwise(ordered)):
                garbage += 1
                print(f"run {run}: GARBAGE players={players} pfail={pfail} seed={seed}: {results}", file=sys.stderr)
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
