"""World set-up under Hydra's ``mpiexec`` against the local launcher, side by side.

    python benchmarks/bench_launchers.py                  # 4, 8 and 16 players, 5 rounds
    python benchmarks/bench_launchers.py --players 4 --rounds 3

For each player count, each round runs both, in alternating order:

* **local**: ``python prog.py``, whose ``AsyncSocketCommunicator.run(world_size=N, ...)`` forks
  the N players;
* **mpiexec**: ``mpiexec -n N python prog.py``: N Python processes, each the player of its
  rank (supervising it in a child process), meeting on a Unix socket directory named by the job.

Figures: the time from starting the command until the last player's ``fn`` starts (the world
is formed: every player is linked to every other), taken from a timestamp the parent passes in
the environment; and the whole command's wall time.  Medians over rounds; the ratio is the
median over rounds of mpiexec / local (paired).  Needs ``mpiexec`` on PATH (``pip install mpich``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import header_lines, markdown_table, median  # noqa: E402

PROGRAM = """\
import os, time
from cicada_async import AsyncSocketCommunicator

async def main(communicator):
    formed = time.time() - float(os.environ["BENCH_STARTED"])
    await communicator.allgather(None)
    return formed

results = AsyncSocketCommunicator.run(world_size={players}, fn=main, startup_timeout=60)
print("FORMED", max(r for r in results if isinstance(r, float)), flush=True)
"""


def run_once(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    started = time.time()
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**env, "BENCH_STARTED": repr(started)}, check=False)
    wall = time.time() - started
    if result.returncode != 0:
        raise SystemExit(f"{command} failed: {result.stderr.strip().splitlines()[-3:]}")
    formed = max(float(line.split()[1]) for line in result.stdout.split("\n") if line.startswith("FORMED"))
    return formed, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--players", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit("mpiexec not found (pip install mpich)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-launchers-") as directory:
        for players in options.players:
            script = Path(directory) / f"prog{players}.py"
            script.write_text(PROGRAM.format(players=players))
            local_cmd = [sys.executable, str(script)]
            mpi_cmd = [mpiexec, "-n", str(players), sys.executable, str(script)]
            figures: dict[str, list[tuple[float, float]]] = {"local": [], "mpiexec": []}
            for round_index in range(options.rounds):
                order = ["local", "mpiexec"] if round_index % 2 == 0 else ["mpiexec", "local"]
                for which in order:
                    print(f"{players} players, round {round_index + 1}: {which}", file=sys.stderr, flush=True)
                    figures[which].append(run_once(local_cmd if which == "local" else mpi_cmd, env))
            ratios = [m[0] / loc[0] for m, loc in zip(figures["mpiexec"], figures["local"], strict=True)]
            rows.append([str(players),
                         f"{median(f for f, _ in figures['local']) * 1e3:,.0f} ms",
                         f"{median(f for f, _ in figures['mpiexec']) * 1e3:,.0f} ms",
                         f"{median(ratios):.2f}x",
                         f"{median(w for _, w in figures['local']):.2f} s / "
                         f"{median(w for _, w in figures['mpiexec']):.2f} s"])
    print("\n".join(header_lines("World set-up: mpiexec against the local launcher", {"rounds": str(options.rounds)})))
    print()
    print(markdown_table(["players", "formed, local run", "formed, mpiexec", "mpiexec / local",
                          "whole command, local / mpiexec"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
