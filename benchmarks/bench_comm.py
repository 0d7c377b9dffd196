"""Communication micro-benchmarks: cicada_async against a raw TCP floor and against Cicada.

One command prints one markdown table, every contender measured side by side in the same run:

1. small-value ping-pong between 2 players, µs per round trip: cicada_async on uvloop, cicada_async
   on plain asyncio (``CICADA_ASYNC_LOOP=asyncio``), the floor (two processes with blocking TCP
   sockets, TCP_NODELAY, echoing a 33-byte message: the size of cicada_async's frame for an int)
   and Cicada's ``SocketCommunicator``;
2. an 8 MB float64 array (``numpy.ones(2**20)``) sent one way repeatedly, MB/s (1 MB = 2**20 bytes),
   with one small acknowledgement at the end of each timed block; the floor sends 8 MB buffers with
   ``sendall`` into ``recv_into`` a preallocated buffer;
3. a small allgather (an int) with 3 and 5 players, µs per allgather.

Usage::

    python benchmarks/bench_comm.py                # ~2 minutes
    python benchmarks/bench_comm.py --quick        # ~20 s smoke run
    python benchmarks/bench_comm.py --cicada-python /path/to/other/venv/bin/python

Cicada rows run under ``--cicada-python`` (default: this interpreter); when Cicada cannot be
imported there they print "skipped (install the compare extra)".  See ``benchmarks/README.md``
for the methodology.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from _common import (
    SKIPPED_COMPARE,
    WorkerError,
    emit_result,
    format_number,
    header_lines,
    markdown_table,
    median,
    paired_ratio,
    probe,
    run_worker,
    spread_text,
)

# ---------------------------------------------------------------------------------------------
# Workload parameters

PING_VALUE = 12345  # a small int; cicada_async encodes it in 9 bytes + a 24-byte header = 33 bytes
RAW_PING_SIZE = 33
BULK_ELEMENTS = 2**20  # numpy.ones(2**20): 8 MiB of float64
BULK_BYTES = BULK_ELEMENTS * 8
MIB = 2**20

# warm-up iterations, and bounds on the iterations of one timed block
WARMUP = {"pingpong": 300, "bulk": 8, "allgather": 150}
ITERATION_BOUNDS = {"pingpong": (20, 200_000), "bulk": (2, 2_000), "allgather": (10, 200_000)}
UNITS = {"pingpong": "µs", "bulk": "MB/s", "allgather": "µs"}

COMM_TIMEOUT = 60  # seconds; generous, so a loaded machine slows a run down instead of failing it


def _pin(spec: dict[str, Any], rank: int) -> None:
    """Pin the calling thread (the player's main thread) to one core, as ``spec["pin"]`` asks.

    ``split``: rank r on core r mod (number of usable cores), so two players never share a core
    when there are enough (like players on separate hosts); ``same``: every player on the first
    core; ``none``: leave placement to the scheduler.  Threads the library already started (Cicada's
    two reader threads per player) are left to the scheduler: confining them to the player's core
    would penalise a threaded design for the harness's choice.
    """
    cores = spec.get("cores") or []
    if spec.get("pin", "none") == "none" or not cores or not hasattr(os, "sched_setaffinity"):
        return
    core = cores[0] if spec["pin"] == "same" else cores[rank % len(cores)]
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {core})  # on Linux, 0 is the calling thread only


def _iterations(workload: str, seconds_per_iteration: float, block_seconds: float) -> int:
    low, high = ITERATION_BOUNDS[workload]
    wanted = int(block_seconds / max(seconds_per_iteration, 1e-9))
    return max(low, min(high, wanted))


def _figure(workload: str, elapsed: float, iterations: int) -> float:
    """µs per iteration, or MB/s for the bulk transfer."""
    if workload == "bulk":
        return iterations * BULK_BYTES / elapsed / MIB
    return elapsed / iterations * 1e6


# ---------------------------------------------------------------------------------------------
# cicada_async players (run in the worker's child processes)


async def _async_block(comm: Any, workload: str, iterations: int, payload: Any) -> float:
    perf_counter = time.perf_counter
    rank = comm.rank
    start = perf_counter()
    if workload == "pingpong":
        if rank == 0:
            for _ in range(iterations):
                await comm.send(value=payload, dst=1, tag=0)
                await comm.recv(src=1, tag=0)
        else:
            for _ in range(iterations):
                value = await comm.recv(src=0, tag=0)
                await comm.send(value=value, dst=0, tag=0)
    elif workload == "bulk":
        if rank == 0:
            for _ in range(iterations):
                await comm.send(value=payload, dst=1, tag=0)
            await comm.recv(src=1, tag=1)
        else:
            for _ in range(iterations):
                await comm.recv(src=0, tag=0)
            await comm.send(value=True, dst=0, tag=1)
    else:
        for _ in range(iterations):
            await comm.allgather(rank)
    return perf_counter() - start


async def _async_player(comm: Any, spec: dict[str, Any]) -> dict[str, Any]:
    import asyncio

    import numpy

    workload = spec["workload"]
    payload = numpy.ones(BULK_ELEMENTS) if workload == "bulk" else PING_VALUE
    loop = asyncio.get_running_loop()
    _pin(spec, comm.rank)
    await comm.allgather(None)
    warmup = WARMUP[workload]
    estimate = await _async_block(comm, workload, warmup, payload) / warmup
    iterations = _iterations(workload, max(await comm.allgather(estimate)), spec["block_seconds"])
    figures = []
    for _ in range(spec["blocks"]):
        await comm.allgather(None)  # start together (see README: Cicada's barrier slows what follows)
        elapsed = await _async_block(comm, workload, iterations, payload)
        figures.append(_figure(workload, elapsed, iterations))
    return {"figures": figures, "iterations": iterations,
            "loop": f"{type(loop).__module__}.{type(loop).__qualname__}"}


def _run_async(spec: dict[str, Any]) -> dict[str, Any]:
    from cicada_async import AsyncSocketCommunicator

    results = AsyncSocketCommunicator.run(world_size=spec["players"], fn=_async_player, args=(spec,),
                                          timeout=COMM_TIMEOUT, startup_timeout=30)
    _check_results(results)
    return results[0]


# ---------------------------------------------------------------------------------------------
# Cicada players (synchronous)


def _cicada_block(comm: Any, workload: str, iterations: int, payload: Any) -> float:
    perf_counter = time.perf_counter
    rank = comm.rank
    start = perf_counter()
    if workload == "pingpong":
        if rank == 0:
            for _ in range(iterations):
                comm.send(value=payload, dst=1, tag=0)
                comm.recv(src=1, tag=0)
        else:
            for _ in range(iterations):
                value = comm.recv(src=0, tag=0)
                comm.send(value=value, dst=0, tag=0)
    elif workload == "bulk":
        if rank == 0:
            for _ in range(iterations):
                comm.send(value=payload, dst=1, tag=0)
            comm.recv(src=1, tag=1)
        else:
            for _ in range(iterations):
                comm.recv(src=0, tag=0)
            comm.send(value=True, dst=0, tag=1)
    else:
        for _ in range(iterations):
            comm.allgather(rank)
    return perf_counter() - start


def _cicada_player(comm: Any, spec: dict[str, Any]) -> dict[str, Any]:
    import numpy

    workload = spec["workload"]
    payload = numpy.ones(BULK_ELEMENTS) if workload == "bulk" else PING_VALUE
    _pin(spec, comm.rank)
    comm.allgather(None)
    warmup = WARMUP[workload]
    estimate = _cicada_block(comm, workload, warmup, payload) / warmup
    iterations = _iterations(workload, max(comm.allgather(estimate)), spec["block_seconds"])
    figures = []
    for _ in range(spec["blocks"]):
        comm.allgather(None)  # start together (see README: Cicada's barrier slows what follows)
        elapsed = _cicada_block(comm, workload, iterations, payload)
        figures.append(_figure(workload, elapsed, iterations))
    return {"figures": figures, "iterations": iterations}


def _run_cicada(spec: dict[str, Any]) -> dict[str, Any]:
    from cicada.communicator import SocketCommunicator

    results = SocketCommunicator.run(world_size=spec["players"], fn=_cicada_player, args=(spec,),
                                     timeout=COMM_TIMEOUT, startup_timeout=30)
    _check_results(results)
    return results[0]


def _check_results(results: list[Any]) -> None:
    for rank, result in enumerate(results):
        if not isinstance(result, dict):
            raise WorkerError(f"player {rank}: {result!r}")


# ---------------------------------------------------------------------------------------------
# Raw TCP floor: two processes, blocking sockets, TCP_NODELAY


def _recv_exactly(sock: socket.socket, view: memoryview) -> None:
    received = 0
    total = len(view)
    while received < total:
        count = sock.recv_into(view[received:])
        if count == 0:
            raise ConnectionError("peer closed the connection")
        received += count


def _raw_echo(port: int, spec: dict[str, Any]) -> None:
    """Rank 1 of the ping-pong floor: echo 33-byte messages until one starts with a zero byte."""
    _pin(spec, 1)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = bytearray(RAW_PING_SIZE)
    view = memoryview(buffer)
    while True:
        _recv_exactly(sock, view)
        if buffer[0] == 0:
            break
        sock.sendall(view)
    sock.close()


def _raw_sink(port: int, spec: dict[str, Any]) -> None:
    """Rank 1 of the bulk floor: per block, an 8-byte count, that many 8 MB buffers, a 1-byte ack."""
    _pin(spec, 1)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    header = bytearray(8)
    buffer = memoryview(bytearray(BULK_BYTES))
    while True:
        _recv_exactly(sock, memoryview(header))
        (count,) = struct.unpack("<Q", header)
        if count == 0:
            break
        for _ in range(count):
            _recv_exactly(sock, buffer)
        sock.sendall(b"\x01")
    sock.close()


def _raw_pingpong_block(sock: socket.socket, iterations: int) -> float:
    message = memoryview(b"\x01" + bytes(RAW_PING_SIZE - 1))
    reply = memoryview(bytearray(RAW_PING_SIZE))
    perf_counter = time.perf_counter
    sendall = sock.sendall
    start = perf_counter()
    for _ in range(iterations):
        sendall(message)
        _recv_exactly(sock, reply)
    return perf_counter() - start


def _raw_bulk_block(sock: socket.socket, iterations: int, data: memoryview) -> float:
    ack = memoryview(bytearray(1))
    perf_counter = time.perf_counter
    start = perf_counter()
    sock.sendall(struct.pack("<Q", iterations))
    for _ in range(iterations):
        sock.sendall(data)
    _recv_exactly(sock, ack)
    return perf_counter() - start


def _run_raw(spec: dict[str, Any]) -> dict[str, Any]:
    import multiprocessing

    import numpy

    workload = spec["workload"]
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    context = multiprocessing.get_context("fork")
    peer = context.Process(target=_raw_echo if workload == "pingpong" else _raw_sink, args=(port, spec),
                           daemon=True)
    peer.start()
    _pin(spec, 0)  # after the fork: the peer chooses its own core
    listener.settimeout(30)
    sock, _ = listener.accept()
    listener.close()
    sock.settimeout(COMM_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        if workload == "pingpong":
            def block(iterations: int) -> float:
                return _raw_pingpong_block(sock, iterations)
        else:
            data = memoryview(numpy.ones(BULK_ELEMENTS)).cast("B")

            def block(iterations: int) -> float:
                return _raw_bulk_block(sock, iterations, data)

        warmup = WARMUP[workload]
        iterations = _iterations(workload, block(warmup) / warmup, spec["block_seconds"])
        figures = [_figure(workload, block(iterations), iterations) for _ in range(spec["blocks"])]
        # tell the peer to stop: a zero first byte for the echo, a zero count for the sink
        sock.sendall(bytes(RAW_PING_SIZE) if workload == "pingpong" else struct.pack("<Q", 0))
    finally:
        sock.close()
        peer.join(10)
        if peer.is_alive():
            peer.kill()
    return {"figures": figures, "iterations": iterations}


def worker_main(spec: dict[str, Any]) -> None:
    runner = {"raw": _run_raw, "async": _run_async, "cicada": _run_cicada}[spec["kind"]]
    emit_result(runner(spec))


# ---------------------------------------------------------------------------------------------
# The parent: schedule interleaved runs, then print the table


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    kind: str  # "raw", "async" or "cicada"
    loop: str | None = None


RAW = Contender("raw", "raw TCP floor", "raw")
UVLOOP = Contender("uvloop", "cicada_async (uvloop)", "async", "uvloop")
ASYNCIO = Contender("asyncio", "cicada_async (asyncio)", "async", "asyncio")
CICADA = Contender("cicada", "Cicada SocketCommunicator", "cicada")


@dataclass(frozen=True)
class Benchmark:
    workload: str
    players: int
    title: str
    contenders: tuple[Contender, ...]


BENCHMARKS = (
    Benchmark("pingpong", 2, "1. ping-pong, int, 2 players (µs/round trip)", (RAW, UVLOOP, ASYNCIO, CICADA)),
    Benchmark("bulk", 2, "2. 8 MB float64 one way, 2 players (MB/s)", (RAW, UVLOOP, ASYNCIO, CICADA)),
    Benchmark("allgather", 3, "3a. allgather, int, 3 players (µs/op)", (UVLOOP, ASYNCIO, CICADA)),
    Benchmark("allgather", 5, "3b. allgather, int, 5 players (µs/op)", (UVLOOP, ASYNCIO, CICADA)),
)


@dataclass
class Measurements:
    """Per-round block figures of one contender on one benchmark."""

    rounds: list[list[float]] = field(default_factory=list)  # [] for a round whose run failed
    iterations: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def figures(self) -> list[float]:
        return [figure for round_ in self.rounds for figure in round_]


def _worker_env(contender: Contender) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CICADA_ASYNC_LOOP", None)
    if contender.loop is not None:
        env["CICADA_ASYNC_LOOP"] = contender.loop
    return env


def _check_loop(contender: Contender, result: dict[str, Any]) -> None:
    if contender.loop is None:
        return
    running = result.get("loop", "")
    if (contender.loop == "uvloop") != running.startswith("uvloop"):
        raise WorkerError(f"expected a {contender.loop} loop in the players, got {running}")


def _met(value: str, ok: bool) -> str:
    return f"{value} {'met' if ok else 'NOT met'}"


def _row_figures(bench: Benchmark, contender: Contender,
                 data: dict[tuple[Benchmark, Contender], Measurements]) -> tuple[str, str, str]:
    """The ratio and goal cells of one measured row, and the name of its reference."""
    def rounds(other: Contender) -> list[list[float]]:
        return data[bench, other].rounds

    # cicada_async's reference configuration: uvloop, or plain asyncio when uvloop is missing
    ours = UVLOOP if data[bench, UVLOOP].figures else ASYNCIO
    ours_name = f"cicada_async ({ours.key})"
    ratio = goal = ""
    if bench.workload in ("pingpong", "bulk"):
        if contender is RAW:
            return "baseline", "", ""
        floor = paired_ratio(rounds(contender), rounds(RAW))
        if floor is not None:
            ratio = f"{floor:.2f}x floor" if bench.workload == "pingpong" else f"{floor * 100:.0f}% of floor"
        if bench.workload == "pingpong" and contender is UVLOOP and floor is not None:
            goal = "<= 2x floor: " + _met(f"{floor:.2f}x", floor <= 2)
        elif bench.workload == "bulk" and contender.kind == "async" and floor is not None:
            goal = ">= 70% of floor: " + _met(f"{floor * 100:.0f}%", floor >= 0.7)
    elif contender is ours:
        return "baseline", "", ""
    else:
        versus = paired_ratio(rounds(contender), rounds(ours))
        ratio = "" if versus is None else f"{versus:.2f}x {ours_name}"
    if contender is CICADA:
        slower = paired_ratio(rounds(ours), rounds(CICADA)) if bench.workload == "bulk" else \
            paired_ratio(rounds(CICADA), rounds(ours))
        if slower is not None:
            goal = (f"(Cicada is {slower:.2f}x slower than {ours_name})" if bench.workload == "bulk" else
                    f"Cicada >= 5x slower than {ours_name}: " + _met(f"{slower:.2f}x", slower >= 5))
    return ratio, goal, ours_name


def build_rows(benchmarks: list[Benchmark], data: dict[tuple[Benchmark, Contender], Measurements],
               ) -> tuple[list[list[str]], list[str]]:
    rows: list[list[str]] = []
    notes: list[str] = []
    for bench in benchmarks:
        unit = UNITS[bench.workload]
        for contender in bench.contenders:
            measured = data[bench, contender]
            row = [bench.title, contender.label]
            if measured.skipped is not None:
                rows.append([*row, measured.skipped, "", "", "", ""])
                continue
            figures = measured.figures
            if measured.errors:
                notes.append(f"{bench.title} / {contender.label}: {measured.errors[0]}")
            if not figures:
                rows.append([*row, f"error ({len(measured.errors)} runs failed)", "", "", "", ""])
                continue
            value = f"{format_number(median(figures))} {unit}"
            if measured.errors:
                value += f" ({len(measured.errors)} runs failed)"
            ratio, goal, _ = _row_figures(bench, contender, data)
            count = f"{len(figures)} x {int(median(measured.iterations))}"
            rows.append([*row, value, spread_text(figures), ratio, goal, count])
    return rows, notes


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a ~20 s smoke run (fewer, shorter rounds)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 7, quick 3)")
    parser.add_argument("--blocks", type=int, help="timed blocks per run (default 3, quick 3)")
    parser.add_argument("--block-seconds", type=float,
                        help="target duration of one timed block (default 0.15, quick 0.05)")
    parser.add_argument("--cicada-python", default=sys.executable, metavar="PATH",
                        help="interpreter for the Cicada rows (default: this one)")
    parser.add_argument("--pin", choices=("split", "same", "none"), default="split",
                        help="core placement of the players: 'split' (default) pins rank r to core r mod "
                             "cores, so two players never share a core when there are enough; 'same' "
                             "puts every player on one core; 'none' leaves it to the scheduler")
    parser.add_argument("--only", metavar="LIST",
                        help="comma-separated subset of the benchmarks: pingpong, bulk, allgather")
    parser.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 3 if args.quick else 7
    if args.blocks is None:
        args.blocks = 3
    if args.block_seconds is None:
        args.block_seconds = 0.05 if args.quick else 0.15
    workloads = {bench.workload for bench in BENCHMARKS}
    args.only = set(workloads if args.only is None else args.only.split(","))
    if not args.only <= workloads:
        parser.error(f"--only: unknown benchmark(s) {sorted(args.only - workloads)}")
    if args.rounds * args.blocks < 5:
        parser.error("rounds x blocks must be at least 5 (the table reports medians of >= 5 blocks)")
    return args


def main(argv: list[str] | None = None) -> int:
    import json

    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker is not None:
        worker_main(json.loads(args.worker))
        return 0

    started = time.perf_counter()
    script = os.path.abspath(__file__)
    cicada_python = args.cicada_python
    cicada_version = probe(cicada_python, "import importlib.metadata, cicada.communicator; "
                                          "print(importlib.metadata.version('cicada-mpc'))")
    has_uvloop = probe(sys.executable, "import uvloop") is not None
    python_of = {"raw": sys.executable, "async": sys.executable, "cicada": cicada_python}
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not cores:
        args.pin = "none"
    placement = {"split": f"rank r pinned to core r mod {len(cores)} (cores {cores})",
                 "same": f"every player pinned to core {cores[0] if cores else '?'}",
                 "none": "left to the scheduler"}[args.pin]

    benchmarks = [bench for bench in BENCHMARKS if bench.workload in args.only]
    data: dict[tuple[Benchmark, Contender], Measurements] = {}
    for bench in benchmarks:
        for contender in bench.contenders:
            measured = data[bench, contender] = Measurements()
            if contender is CICADA and cicada_version is None:
                measured.skipped = SKIPPED_COMPARE
            elif contender is UVLOOP and not has_uvloop:
                measured.skipped = "skipped (uvloop not installed)"

    for round_index in range(args.rounds):
        for bench in benchmarks:
            contenders = [c for c in bench.contenders if data[bench, c].skipped is None]
            shift = round_index % len(contenders) if contenders else 0
            for contender in contenders[shift:] + contenders[:shift]:  # rotate the order every round
                spec = {"kind": contender.kind, "workload": bench.workload, "players": bench.players,
                        "blocks": args.blocks, "block_seconds": args.block_seconds,
                        "pin": args.pin, "cores": cores}
                print(f"round {round_index + 1}/{args.rounds}: {bench.title} / {contender.label}",
                      file=sys.stderr, flush=True)
                measured = data[bench, contender]
                try:
                    result = run_worker(python_of[contender.kind], script, spec, env=_worker_env(contender))
                    _check_loop(contender, result)
                except (WorkerError, OSError, ValueError) as exc:
                    measured.errors.append(str(exc))
                    measured.rounds.append([])
                    print(f"  failed: {exc}", file=sys.stderr, flush=True)
                    continue
                measured.rounds.append([float(x) for x in result["figures"]])
                measured.iterations.append(int(result["iterations"]))

    rows, notes = build_rows(benchmarks, data)
    cicada_text = (f"{cicada_version} ({cicada_python})" if cicada_version is not None
                   else f"not importable with {cicada_python}")
    lines = header_lines("cicada_async communication benchmarks", {
        "cicada-mpc": cicada_text,
        "method": f"{args.rounds} interleaved rounds x {args.blocks} timed blocks of "
                  f"~{args.block_seconds:g} s after warm-up; one fresh set of player processes per run; "
                  "rank 0's figures",
        "player placement": f"--pin {args.pin}: {placement}",
    })
    print("\n".join(lines))
    print()
    print(markdown_table(["benchmark", "contender", "median", "IQR/2", "ratio", "goal", "blocks x iters"],
                         rows))
    print()
    print("Ratios are paired: the median over rounds of (this contender's round median) / (the baseline's "
          "round median of the same round).")
    for note in notes:
        print(f"- error: {note}")
    print(f"\nTotal time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
