"""Comparisons and their functions: cicada_async against MPyC's ``<`` and Sandia's Cicada.

    python benchmarks/bench_comparisons.py                  # 3 rounds, about 2 minutes
    python benchmarks/bench_comparisons.py --quick          # 1 round, small sizes only
    python benchmarks/bench_comparisons.py --compare-python /path/to/venv/bin/python

3 players, each a process on this host, threshold 2 (MPyC ``-T1``, its default at 3 parties).

Rows
----
* cicada_async (``ShamirProtocolSuite``, FixedPoint(16) operands uniform in [-1000, 1000]):
  ``less``, ``equal``, ``relu``, ``maximum``, ``floor``, ``divide`` on 1,000 values; ``less`` and
  ``divide`` on 10; ``less`` on 100,000 values; ``bit_decompose`` on 1,000.  Timed: the awaited
  operation, from shares to shares (nothing revealed), on rank 0 after a barrier; the result of each row is revealed
  afterwards and checked against numpy (a wrong result makes the script exit 1).
* MPyC 0.11: ``a < b`` on secure arrays of ``mpc.SecInt(32)`` (its default) and of
  ``SecInt(64)`` (the range of cicada_async's comparisons), 1,000 values, then
  ``await mpc.gather(c)`` (this party's share is ready); checked after the timing.
* Cicada 2.1: ``suite.less`` and ``suite.divide`` on 10 values (``less`` takes about 0.4 s per
  value here).

Method: every run (one contender, every row) is a fresh subprocess; rounds run the contenders in
rotating order; a cell is the median over all repetitions of all rounds; a ratio is the median
over rounds of the ratio of the per-round medians (paired, so load drift cancels).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from _common import (  # noqa: E402
    RESULT_MARKER,
    WorkerError,
    emit_result,
    free_port_block,
    header_lines,
    markdown_table,
    median,
    paired_ratio,
    probe,
    run_worker,
)

PLAYERS = 3
THRESHOLD = 2
ROWS = [("less", 1_000), ("equal", 1_000), ("relu", 1_000), ("maximum", 1_000), ("floor", 1_000), ("divide", 1_000),
        ("less", 10), ("divide", 10), ("less", 100_000), ("bit_decompose", 1_000)]
QUICK_ROWS = [("less", 1_000), ("equal", 1_000), ("relu", 1_000), ("divide", 1_000), ("less", 10)]


def inputs(count: int, which: int) -> Any:
    import numpy

    generator = numpy.random.default_rng(1234 + which)
    return numpy.round(generator.uniform(-1000, 1000, size=count) * 2**16) / 2**16


# ---------------------------------------------------------------------------------------------
# cicada_async worker


async def _player(comm: Any, spec: dict[str, Any]) -> Any:
    import numpy

    from cicada_async.encoding import Bits, Boolean
    from cicada_async.shamir import ShamirProtocolSuite

    suite = ShamirProtocolSuite(comm, threshold=THRESHOLD)
    rank = comm.rank
    results = []
    for name, count in spec["rows"]:
        x, y = inputs(count, 0), inputs(count, 1)
        y[: count // 10] = x[: count // 10]  # some equal pairs
        y[y == 0] = 1.0  # no zero divisors
        a = await suite.share(src=0, secret=x if rank == 0 else None, shape=(count,))
        b = await suite.share(src=1, secret=y if rank == 1 else None, shape=(count,))
        operations = {
            "less": lambda a=a, b=b: suite.less(a, b),
            "equal": lambda a=a, b=b: suite.equal(a, b),
            "relu": lambda a=a: suite.relu(a),
            "maximum": lambda a=a, b=b: suite.maximum(a, b),
            "floor": lambda a=a: suite.floor(a),
            "bit_decompose": lambda a=a: suite.bit_decompose(a, bits=32),
            "divide": lambda a=a, b=b: suite.divide(a, b),
        }
        start_operation = operations[name]
        reps = 1 if count >= 100_000 else int(spec["reps"])
        if count < 100_000:
            await start_operation()  # warm-up
        times = []
        out = None
        for _ in range(reps):
            await comm.barrier()
            start = time.perf_counter()
            out = await start_operation()
            times.append(time.perf_counter() - start)
        expected = {"less": x < y, "equal": x == y, "relu": numpy.maximum(x, 0), "maximum": numpy.maximum(x, y),
                    "floor": numpy.floor(x)}
        if name in ("less", "equal"):
            got = await suite.reveal(out, encoding=Boolean())
            ok = bool(numpy.array_equal(got, expected[name]))
        elif name == "divide":
            got = await suite.reveal(out)
            exact = x / y
            ok = bool(numpy.all(numpy.abs(got - exact) <= numpy.maximum(4 * 2**-16, numpy.abs(exact) * 2**-29)))
        elif name == "bit_decompose":
            got = await suite.reveal(out, encoding=Bits())
            field_values = [round(v * 2**16) % (2**127 - 1) for v in x]
            ok = all([int(bit) for bit in row] == [(v >> (31 - i)) & 1 for i in range(32)]
                     for row, v in zip(got, field_values, strict=True))
        else:
            got = await suite.reveal(out)
            ok = bool(numpy.array_equal(got, expected[name]))
        results.append({"name": name, "count": count, "times": times, "ok": ok})
    return results if rank == 0 else None


def cicada_async_worker(spec: dict[str, Any]) -> None:
    from cicada_async import AsyncSocketCommunicator

    results = AsyncSocketCommunicator.run(world_size=PLAYERS, fn=_player, args=(spec,), timeout=120,
                                          startup_timeout=30)
    if not isinstance(results[0], list):
        raise SystemExit(f"cicada_async rank 0 failed: {results[0]!r}")
    emit_result({"rows": results[0]})


# ---------------------------------------------------------------------------------------------
# Cicada worker (runs under the compare interpreter)


def _cicada_player(communicator: Any, spec: dict[str, Any]) -> Any:
    import numpy
    from cicada.encoding import Boolean
    from cicada.shamir import ShamirProtocolSuite

    suite = ShamirProtocolSuite(communicator, threshold=THRESHOLD)
    rank = communicator.rank
    count = int(spec["count"])
    x, y = inputs(count, 0), inputs(count, 1)
    a = suite.share(src=0, secret=x if rank == 0 else None, shape=(count,))
    b = suite.share(src=1, secret=y if rank == 1 else None, shape=(count,))
    operation = suite.divide if spec["operation"] == "divide" else suite.less
    times = []
    out = None
    for _ in range(int(spec["reps"])):
        communicator.barrier()
        start = time.perf_counter()
        out = operation(a, b)
        times.append(time.perf_counter() - start)
    if spec["operation"] == "divide":
        ok = bool(numpy.allclose(suite.reveal(out), x / y, rtol=1e-3, atol=1e-3))
    else:
        ok = bool(numpy.array_equal(suite.reveal(out, encoding=Boolean()), x < y))
    return {"times": times, "ok": ok} if rank == 0 else None


def cicada_worker(spec: dict[str, Any]) -> None:
    from cicada.communicator import SocketCommunicator

    results = SocketCommunicator.run(world_size=PLAYERS, fn=_cicada_player, args=(spec,), timeout=600)
    if not isinstance(results[0], dict):
        raise SystemExit(f"Cicada rank 0 failed: {results[0]!r}")
    emit_result(results[0])


# ---------------------------------------------------------------------------------------------
# MPyC party (runs under the compare interpreter, one process per party)


def mpyc_party(spec: dict[str, Any]) -> None:
    import numpy
    from mpyc.runtime import mpc

    count = int(spec["count"])
    x = numpy.round(inputs(count, 0) * 2**16).astype(numpy.int64)
    y = numpy.round(inputs(count, 1) * 2**16).astype(numpy.int64)
    if int(spec["bits"]) == 32:
        x, y = x // 2**8, y // 2**8  # within 32 bits
    secint = mpc.SecInt(int(spec["bits"]))

    async def main() -> None:
        await mpc.start()
        a = mpc.input(secint.array(x if mpc.pid == 0 else None, shape=(count,)), senders=0)
        b = mpc.input(secint.array(y if mpc.pid == 1 else None, shape=(count,)), senders=1)
        await mpc.gather(a, b)
        c = a < b
        await mpc.gather(c)  # warm-up
        times = []
        for _ in range(int(spec["reps"])):
            await mpc.transfer(None)  # line the parties up
            start = time.perf_counter()
            c = a < b
            await mpc.gather(c)
            times.append(time.perf_counter() - start)
        got = await mpc.output(c)
        ok = bool(numpy.array_equal(numpy.asarray(got, dtype=numpy.int64) == 1, x < y))
        await mpc.shutdown()
        if mpc.pid == 0:
            emit_result({"times": times, "ok": ok})

    mpc.run(main())


def run_mpyc(python: str, spec: dict[str, Any], timeout: float = 300) -> Any:
    base = free_port_block(PLAYERS)
    command = [python, str(Path(__file__).resolve()), "--mpyc-party", json.dumps(spec), "-M", str(PLAYERS),
               "-T", str(THRESHOLD - 1), "-B", str(base), "--no-log"]
    with tempfile.TemporaryDirectory(prefix="bench-comparisons-") as directory:
        logs = [open(os.path.join(directory, f"party{i}.log"), "w+") for i in range(PLAYERS)]
        processes = [subprocess.Popen([*command, "-I", str(i)], stdout=logs[i], stderr=subprocess.STDOUT, text=True)
                     for i in range(PLAYERS)]
        try:
            for process in processes:
                process.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise WorkerError(f"MPyC timed out after {timeout:g} s") from exc
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            logs[0].seek(0)
            output = logs[0].read()
            for log in logs:
                log.close()
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    raise WorkerError(f"MPyC party 0 gave no result: {output.strip().splitlines()[-3:]}")


# ---------------------------------------------------------------------------------------------
# Parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round, small sizes only")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every contender (default 3)")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per row and run (default 5)")
    parser.add_argument("--compare-python", help="an interpreter with cicada-mpc and mpyc (default: this one)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--mpyc-party", help=argparse.SUPPRESS)
    options, extra = parser.parse_known_args()
    if options.worker:
        spec = json.loads(options.worker)
        (cicada_worker if spec.get("contender") == "cicada" else cicada_async_worker)(spec)
        return 0
    if options.mpyc_party:
        sys.argv = [sys.argv[0], *extra]  # MPyC reads -M, -I, -T, -B from the command line
        mpyc_party(json.loads(options.mpyc_party))
        return 0
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    rounds = 1 if options.quick else options.rounds
    rows = QUICK_ROWS if options.quick else ROWS
    compare = options.compare_python or sys.executable
    have = (probe(compare, "import cicada, mpyc; print('yes')") or "").endswith("yes")
    script = str(Path(__file__).resolve())
    ours: list[dict[str, list[float]]] = []
    theirs: dict[str, list[list[float]]] = {"mpyc32": [], "mpyc64": [], "cicada": [], "cicada-divide": []}
    failures = []
    contenders = ["cicada_async", "mpyc32", "mpyc64", "cicada", "cicada-divide"] if have else ["cicada_async"]
    for round_index in range(rounds):
        order = contenders[round_index % len(contenders):] + contenders[:round_index % len(contenders)]
        for contender in order:
            print(f"round {round_index + 1}/{rounds}: {contender}", file=sys.stderr, flush=True)
            try:
                if contender == "cicada_async":
                    result = run_worker(sys.executable, script, {"rows": rows, "reps": options.reps}, timeout=900)
                    ours.append({f"{row['name']}:{row['count']}": row["times"] for row in result["rows"]})
                    failures += [f"{row['name']} on {row['count']}" for row in result["rows"] if not row["ok"]]
                elif contender.startswith("cicada"):
                    operation = "divide" if contender == "cicada-divide" else "less"
                    result = run_worker(compare, script, {"contender": "cicada", "count": 10, "operation": operation,
                                                          "reps": 1 if options.quick else 2}, timeout=900)
                    theirs[contender].append(result["times"])
                    if not result["ok"]:
                        print(f"  Cicada's {operation} gave wrong results", file=sys.stderr)
                else:
                    result = run_mpyc(compare, {"count": 1_000, "bits": int(contender[4:]),
                                                "reps": options.reps})
                    theirs[contender].append(result["times"])
            except WorkerError as error:
                print(f"  {contender} failed: {error}", file=sys.stderr)
                failures.append(f"{contender}: {error}")

    def ms(values: list[float]) -> str:
        return f"{median(values) * 1e3:,.1f} ms" if values else "n/a"

    table = []
    for name, count in rows:
        key = f"{name}:{count}"
        mine = [run.get(key, []) for run in ours]
        flat = [t for run in mine for t in run]
        row = [f"`{name}`", f"{count:,}", ms(flat), f"{median(flat) / count * 1e6:,.1f} µs" if flat else ""]
        note = ""
        if key == "less:1000" and have:
            for label, baseline in (("MPyC SecInt(32)", "mpyc32"), ("MPyC SecInt(64)", "mpyc64")):
                ratio = paired_ratio(theirs[baseline], mine)
                flat_theirs = [t for run in theirs[baseline] for t in run]
                note += f"{label} `<`: {ms(flat_theirs)} ({ratio:.1f}x slower); " if ratio else ""
        if key in ("less:10", "divide:10") and have:
            baseline = "cicada" if name == "less" else "cicada-divide"
            ratio = paired_ratio(theirs[baseline], mine)
            flat_theirs = [t for run in theirs[baseline] for t in run]
            note += f"Cicada `{name}`: {ms(flat_theirs)} ({ratio:,.0f}x slower)" if ratio else ""
        table.append([*row, note.rstrip("; ")])
    less = [t for run in ours for t in run.get("less:1000", [])]
    print("\n".join(header_lines("Comparisons: cicada_async, MPyC and Cicada", {
        "players": f"{PLAYERS} processes, threshold {THRESHOLD}", "rounds": str(rounds),
        "compare interpreter": compare if have else "none (cicada-mpc and mpyc not found)"})))
    print()
    print(markdown_table(["operation", "values", "cicada_async", "per value", "baselines (same run)"], table))
    print()
    if less:
        for name in ("relu", "maximum", "equal"):
            other = [run.get(f"{name}:1000", []) for run in ours]
            ratio = paired_ratio(other, [run.get("less:1000", []) for run in ours])
            if ratio:
                print(f"- `{name}` / `less` on 1,000 values: {ratio:.2f}x (goal <= 1.5x)")
        print(f"- `less` on 1,000 values: {median(less):.3f} s (goal <= 0.2 s)")
        divide = [t for run in ours for t in run.get("divide:1000", [])]
        if divide:
            print(f"- `divide` on 1,000 values: {median(divide):.3f} s (goal <= 1 s)")
    if failures:
        print(f"- FAILED: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
