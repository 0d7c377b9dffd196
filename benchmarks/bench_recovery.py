"""Fault-recovery benchmarks: how long survivors take to carry on after a player dies or hangs.

Rows (each a median over repeated runs, each run a fresh set of player processes):

1. SIGKILL -> first successful collective on the shrunk communicator, 4 and 8 players, the
   victim a participant (middle rank) and, at 4 players, the coordinator (rank 0).  The victim
   stores ``time.monotonic()`` in shared memory and kills itself between two allgathers; every
   survivor revokes, shrinks, runs one allgather on the new communicator and reports the time;
   the figure is the last survivor's time minus the kill time.  Cicada's SocketCommunicator
   runs the same program beside it when cicada-mpc is installed (its defaults: 5 s receive
   timeout and 5 s shrink timeout; and with both at 1 s).
2. SIGSTOP (a hung player) with ``timeout=1`` and ``shrink(timeout=1)``: from the SIGSTOP to the
   first successful collective after the shrink.  Goal: receive deadline + shrink timeout +
   < 100 ms, i.e. < 2.1 s.
3. Shrink with nobody dead, 4/8/16 players: from a barrier to the last player's return from
   ``shrink`` (goal < 10 ms at 8 players).

    python benchmarks/bench_recovery.py [--runs 5] [--quick] [--compare-python PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (
    WorkerError,
    emit_result,
    format_number,
    header_lines,
    markdown_table,
    median,
    probe,
    run_worker,
)

SCRIPT = os.path.abspath(__file__)


# -- workers (run in a fresh interpreter each) -----------------------------------------------

def worker_kill_cicada_async(players: int, victim: int) -> float:
    import multiprocessing

    from cicada_async import AsyncSocketCommunicator, CommunicatorError

    killed_at = multiprocessing.Value("d", 0.0)

    async def fn(comm):
        step = 0
        while True:
            if comm.rank == victim and step == 20:
                killed_at.value = time.monotonic()
                os.kill(os.getpid(), signal.SIGKILL)
            try:
                await comm.allgather(step)
                step += 1
            except CommunicatorError:
                break
        await comm.revoke()
        new, _ = await comm.shrink(name="recovered")
        await new.allgather(comm.rank)
        return time.monotonic()

    results = AsyncSocketCommunicator.run(world_size=players, fn=fn, timeout=5)
    done = [r for r in results if isinstance(r, float)]
    assert len(done) == players - 1, results
    return max(done) - killed_at.value


def worker_kill_cicada(players: int, victim: int, timeout: float) -> float:
    import multiprocessing

    from cicada.communicator import SocketCommunicator

    killed_at = multiprocessing.Value("d", 0.0)

    def fn(comm):
        step = 0
        while True:
            if comm.rank == victim and step == 20:
                killed_at.value = time.monotonic()
                os.kill(os.getpid(), signal.SIGKILL)
            try:
                comm.allgather(step)
                step += 1
            except Exception:
                break
        comm.revoke()
        new, _ = comm.shrink(name="recovered", shrink_timeout=timeout, timeout=timeout)
        new.allgather(comm.rank)
        return time.monotonic()

    results = SocketCommunicator.run(world_size=players, fn=fn, timeout=timeout)
    done = [r for r in results if isinstance(r, float)]
    assert len(done) == players - 1, results
    return max(done) - killed_at.value


def worker_hang_cicada_async(players: int, victim: int) -> float:
    import multiprocessing

    from cicada_async import AsyncSocketCommunicator, CommunicatorError, Excluded

    stopped_at = multiprocessing.Value("d", 0.0)
    stopper = 1 if victim == 0 else 0

    async def fn(comm):
        pids = await comm.allgather(os.getpid())
        step = 0
        while True:
            if comm.rank == stopper and step == 20:
                stopped_at.value = time.monotonic()
                os.kill(pids[victim], signal.SIGSTOP)
            try:
                await comm.allgather(step)
                step += 1
            except CommunicatorError:
                break
        if comm.rank == victim:  # resumed after the others recovered: it must be excluded
            try:
                await comm.revoke()
                await comm.shrink(name="recovered")
            except Excluded:
                return "excluded"
            return "NOT EXCLUDED"
        await comm.revoke()
        new, _ = await comm.shrink(name="recovered", timeout=1.0)
        await new.allgather(comm.rank)
        done = time.monotonic()
        await new.barrier()
        if new.rank == 0:
            os.kill(pids[victim], signal.SIGCONT)
        return done

    results = AsyncSocketCommunicator.run(world_size=players, fn=fn, timeout=1.0)
    assert results[victim] == "excluded", results
    done = [r for r in results if isinstance(r, float)]
    assert len(done) == players - 1, results
    return max(done) - stopped_at.value


def worker_shrink_cicada_async(players: int, repetitions: int) -> list[float]:
    from cicada_async import AsyncSocketCommunicator

    async def fn(comm):
        times = []
        for _ in range(repetitions):
            await comm.barrier()
            start = time.monotonic()
            new, oldranks = await comm.shrink(name="same")
            times.append((start, time.monotonic()))
            assert oldranks == list(range(comm.world_size))
            await new.free()
        return times

    results = AsyncSocketCommunicator.run(world_size=players, fn=fn, timeout=10, startup_timeout=30)
    # Per repetition: from the earliest start to the last return.
    return [max(r[i][1] for r in results) - min(r[i][0] for r in results) for i in range(repetitions)]


def worker_shrink_cicada(players: int, repetitions: int) -> list[float]:
    from cicada.communicator import SocketCommunicator

    def fn(comm):
        times = []
        for _ in range(repetitions):
            comm.barrier()
            start = time.monotonic()
            new, _ = comm.shrink(name="same", shrink_timeout=5)
            times.append((start, time.monotonic()))
            new.free()
        return times

    results = SocketCommunicator.run(world_size=players, fn=fn, timeout=10, startup_timeout=30)
    return [max(r[i][1] for r in results) - min(r[i][0] for r in results) for i in range(repetitions)]


WORKERS = {
    "kill": worker_kill_cicada_async,
    "kill-cicada": worker_kill_cicada,
    "hang": worker_hang_cicada_async,
    "shrink": worker_shrink_cicada_async,
    "shrink-cicada": worker_shrink_cicada,
}


def run_as_worker(spec: dict) -> None:
    kind = spec.pop("kind")
    emit_result(WORKERS[kind](**spec))


# -- parent -----------------------------------------------------------------------------------

def measure(python: str, spec: dict, runs: int, timeout: float = 120) -> tuple[float | None, str]:
    values: list[float] = []
    for _ in range(runs):
        try:
            result = run_worker(python, SCRIPT, spec, timeout=timeout)
        except WorkerError as error:
            return None, f"error: {error}"
        values.extend(result if isinstance(result, list) else [result])
    return median(values), f"{len(values)} runs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=5, help="runs per cicada_async row (default 5)")
    parser.add_argument("--cicada-runs", type=int, default=3, help="runs per Cicada row (default 3)")
    parser.add_argument("--quick", action="store_true", help="fewer runs, no Cicada-at-defaults row")
    parser.add_argument("--compare-python", default=sys.executable,
                        help="an interpreter with cicada-mpc installed (default: this one)")
    options = parser.parse_args()
    if options.worker:
        run_as_worker(json.loads(options.worker))
        return
    runs = 3 if options.quick else options.runs
    cicada_runs = 1 if options.quick else options.cicada_runs
    python = sys.executable
    cicada = probe(options.compare_python, "import cicada, importlib.metadata as m; print(m.version('cicada-mpc'))")
    print("\n".join(header_lines("cicada_async recovery benchmarks", {
        "cicada-mpc": f"{cicada} ({options.compare_python})" if cicada else "not installed (compare extra)",
        "method": "median over runs; each run is a fresh set of player processes; times are system-wide "
                  "monotonic clock readings taken inside the players",
    })))
    print()
    rows = []

    def add(label: str, contender: str, value: float | None, note: str, goal: str = "", scale: float = 1000.0,
            unit: str = "ms") -> None:
        shown = "—" if value is None else f"{format_number(value * scale)} {unit}"
        rows.append([label, contender, shown, note, goal])
        print(f"  {label} / {contender}: {shown} ({note})", file=sys.stderr)

    for players, victim, label in [(4, 2, "SIGKILL participant, 4 players"), (8, 4, "SIGKILL participant, 8 players"),
                                   (4, 0, "SIGKILL coordinator, 4 players")]:
        value, note = measure(python, {"kind": "kill", "players": players, "victim": victim}, runs)
        mine = value
        met = "met" if value is not None and value < 0.1 else "NOT met"
        add(label, "cicada_async", value, note, f"< 100 ms: {met}")
        if cicada and victim != 0:
            settings = [(1.0, "Cicada, 1 s timers")] + ([] if options.quick else [(5.0, "Cicada, defaults")])
            for timeout, what in settings:
                value, note = measure(options.compare_python, {"kind": "kill-cicada", "players": players,
                                                               "victim": victim, "timeout": timeout},
                                      cicada_runs, timeout=180)
                ratio = f"{value / mine:.0f}x slower" if value and mine else ""
                add(label, what, value, note, ratio)
    for players, victim, label in [(4, 2, "SIGSTOP participant, 4 players"), (4, 0, "SIGSTOP coordinator, 4 players")]:
        value, note = measure(python, {"kind": "hang", "players": players, "victim": victim}, runs)
        goal = "< 2.1 s (1 s deadline + 1 s shrink + 100 ms): " + (
            "met" if value is not None and value < 2.1 else "NOT met")
        add(label + ", timeout 1 s", "cicada_async", value, note, goal)
    repetitions = 5 if options.quick else 20
    for players in (4, 8, 16):
        value, note = measure(python, {"kind": "shrink", "players": players, "repetitions": repetitions}, 1)
        goal = ("< 10 ms: " + ("met" if value is not None and value < 0.010 else "NOT met")) if players == 8 else ""
        add(f"shrink, nobody dead, {players} players", "cicada_async", value, note, goal)
        if cicada and players <= 8:
            mine = value
            value, note = measure(options.compare_python, {"kind": "shrink-cicada", "players": players,
                                                           "repetitions": 3}, 1, timeout=300)
            add(f"shrink, nobody dead, {players} players", "Cicada", value, note,
                f"{value / mine:.0f}x slower" if value and mine else "")
    print(markdown_table(["scenario", "contender", "median", "runs", "goal / comparison"], rows))


if __name__ == "__main__":
    main()
