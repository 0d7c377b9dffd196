"""Shamir protocol suites: cicada_async against Sandia's Cicada and MPyC.

    python benchmarks/bench_shamir.py                      # full run, ~4 minutes
    python benchmarks/bench_shamir.py --quick              # sizes <= 1e3 only, ~30 s
    python benchmarks/bench_shamir.py --compare-python /path/to/venv/bin/python

Prints a header (the exact command, cores, versions), one markdown table and the goals.  Progress
goes to stderr, so ``python benchmarks/bench_shamir.py > results.md`` keeps just the report.

Rows (each at 3 and 5 players): share + reveal of 1, 1e3, 1e5 and 1e6 values; field multiply
of 1e3 and 1e5 values; fixed-point multiply of 1e3 and 1e5 values.  Columns: milliseconds for
cicada_async, Cicada and MPyC, and the ratios Cicada / cicada_async and MPyC / cicada_async.

Contenders
----------
Cicada and MPyC rows need the ``compare`` extra (``cicada-mpc``, ``mpyc``) in this interpreter,
or ``--compare-python PATH``: an interpreter that has them (their workers then run under it).
Rows with neither print "skipped (install the compare extra)".

Threshold: the honest-majority maximum, ``threshold = (players + 1) // 2`` shares to reveal
(2 at 3 players, 3 at 5), i.e. polynomials of degree ``threshold - 1``, which is MPyC's default
(``-T (m-1)//2``, passed explicitly).

* **share + reveal** -- player 0 shares ``n`` reals (uniform in [-1000, 1000] on the 2**-16 grid,
  fixed point with 16 fractional bits) and everyone reveals them; the time covers encoding,
  sharing, revealing and decoding.  cicada_async and Cicada: ``suite.share(src=0, ...)`` then
  ``suite.reveal(share)``.  MPyC: ``mpc.input(secfxp.array(x), senders=0)`` then
  ``await mpc.output(...)`` with ``secfxp = mpc.SecFxp(l=64, f=16)``.
* **field multiply** -- two operands already shared (untimed: integers below 2**31, no
  encoding); the time covers the elementwise product and its degree reduction (one round).
  cicada_async and Cicada: ``suite.field_multiply(a, b)``.  MPyC: ``c = a * b`` on secure arrays
  of ``mpc.SecFld(2**127 - 1)`` (the same field as cicada_async's default) followed by
  ``await mpc.gather(c)``, which returns once this party's share of ``c`` (after the reshare) is
  ready.
* **fixed-point multiply** -- two operands already shared (untimed: reals as above); the time
  covers product, degree reduction and truncation of 16 bits.  cicada_async: one round of degree
  reduction with probabilistic-truncation masks riding along, then one reveal (40-bit
  statistical security).  Cicada: ``suite.multiply`` (field product, then ``right_shift`` with
  masks made of random bits).  MPyC: ``a * b`` on ``SecFxp(l=64, f=16)`` arrays, made
  non-integral so MPyC really truncates (``np_multiply`` then ``np_trunc``, probabilistic, with
  ``-K40``: the same 40-bit statistical security), then ``await mpc.gather(c)``.

Fields: cicada_async 2**127 - 1 (two uint64 limbs in numpy); Cicada its default 64-bit prime
(numpy object arrays of Python ints); MPyC 2**127 - 1 for SecFld and a 122-bit prime for
SecFxp(l=64, f=16) with K=40 (numpy object arrays of Python ints; gmpy2 used when installed).
The MPyC program is ``_shamir_baselines.py`` (secure NumPy arrays rather than lists of secure
numbers: MPyC's fastest path, vectorized like ``mpc.vector_add``/``mpc.schur_prod`` but over
numpy).  Its parties are started as ``-M<m> -I<i>`` processes on a free port block.

Method
------
* Each *run* (one contender at one player count, every row in turn) is a fresh subprocess that
  starts its own players.  Runs are interleaved: a round runs every contender once at each
  player count, in an order that rotates between rounds, so load drift on a shared machine hits
  every contender alike.
* Timing is on rank 0 (MPyC party 0) with ``time.perf_counter``, inside the player function,
  after a barrier, around the awaited operations only.  Each row is warmed up first (untimed:
  three calls for rows of up to 1e3 values, one above).
* A cell is the median of every timed repetition of all rounds; a ratio is the median over
  rounds of the ratio of the two contenders' per-round medians (paired, so drift cancels).
  cicada_async times ``--reps`` repetitions per row and round (default 5).  Baselines: three
  when a repetition takes <= 0.5 s, else one per round without warm-up; repetitions above 3 s
  run in the first round only (cells with fewer than 3 repetitions say ``n=``).
* A baseline row is skipped when its time per repetition, extrapolated linearly from the
  largest smaller size measured (an overestimate when fixed costs matter), exceeds ``--limit``
  seconds (default 25; ``--quick``: 3); the cell says what was measured and extrapolated, and
  the ratio column the extrapolated ratio.  A few small *probe* sizes (not reported) feed this
  extrapolation.
* Every player is a process: with fewer cores than players, the players' CPU time is
  serialized, so figures then approach the total CPU time of all players divided by the cores.
* cicada_async's results are checked in every row (revealed values equal the inputs; field
  products exact; fixed-point products within ``threshold // 2 + 1.5`` units of 2**-16 of the
  exact product), so a fast but wrong result fails the run (exit status 1).  Baselines are
  checked alike and only reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from _common import WorkerError, command_line, core_count, free_port_block, package_version  # noqa: E402
from _shamir_baselines import (  # noqa: E402
    MPYC_SEC_PARAM,
    OP_TITLES,
    OPS,
    SKIPPED_COMPARE,
    Planner,
    check_close,
    check_equal,
    check_field_product,
    emit_result,
    field_inputs,
    fixed_inputs,
    median,
    parse_result,
    product_tolerance,
    seconds_text,
    size_text,
)

BASELINES = HERE / "_shamir_baselines.py"
CONTENDERS = ("cicada_async", "cicada", "mpyc")
TITLES = {"cicada_async": "cicada_async", "cicada": "Cicada", "mpyc": "MPyC"}

SIZES = {
    "share_reveal": (1, 1_000, 100_000, 1_000_000),
    "field_multiply": (1_000, 100_000),
    "multiply": (1_000, 100_000),
}
QUICK_SIZES = {"share_reveal": (1, 1_000), "field_multiply": (1_000,), "multiply": (1_000,)}
# Small sizes timed once, not reported, so that larger sizes can be extrapolated (and warmed up).
PROBES = {"cicada": {"multiply": (30,)}, "mpyc": {"multiply": (30,)}}

FAST = 0.5  # seconds: baseline repetitions up to this get --reps repetitions and a warm-up
REPEAT_LIMIT = 3.0  # seconds: slower baseline repetitions run in the first round only
GOAL_PLAYERS = 3
GOALS_MS = {("share_reveal", 100_000): 30.0, ("field_multiply", 100_000): 50.0, ("multiply", 100_000): 1000.0}
GOAL_RATIO = 50.0


# ---------------------------------------------------------------------------------------------
# cicada_async worker


async def _player(comm: Any, spec: dict[str, Any]) -> Any:
    from cicada_async.encoding import Identity
    from cicada_async.shamir import ShamirProtocolSuite

    rank = comm.rank
    threshold = int(spec["threshold"])
    seed = int(spec["seed"])
    suite = ShamirProtocolSuite(comm, threshold=threshold)
    planner = Planner(spec)
    for row in spec["rows"]:
        decision = planner.decide(row)
        if not decision["run"]:
            planner.skipped(row, decision)
            continue
        op, n = row["op"], int(row["size"])
        if op == "share_reveal":
            x = fixed_inputs(n, seed, 0)

            async def run(x: Any = x, n: int = n) -> Any:
                share = await suite.share(src=0, secret=x if rank == 0 else None, shape=(n,))
                return await suite.reveal(share)

            async def verify(out: Any, x: Any = x) -> dict[str, Any]:
                return check_equal(out, x)
        elif op == "field_multiply":
            xa, xb = field_inputs(n, seed, 0), field_inputs(n, seed, 1)
            a = await suite.share(src=0, secret=xa if rank == 0 else None, shape=(n,), encoding=Identity())
            b = await suite.share(src=0, secret=xb if rank == 0 else None, shape=(n,), encoding=Identity())

            async def run(a: Any = a, b: Any = b) -> Any:
                return await suite.field_multiply(a, b)

            async def verify(out: Any, xa: Any = xa, xb: Any = xb) -> dict[str, Any]:
                return check_field_product(await suite.reveal(out, encoding=Identity()), xa, xb)
        else:
            xa, xb = fixed_inputs(n, seed, 0), fixed_inputs(n, seed, 1)
            a = await suite.share(src=0, secret=xa if rank == 0 else None, shape=(n,))
            b = await suite.share(src=0, secret=xb if rank == 0 else None, shape=(n,))

            async def run(a: Any = a, b: Any = b) -> Any:
                return await suite.multiply(a, b)

            async def verify(out: Any, xa: Any = xa, xb: Any = xb) -> dict[str, Any]:
                return check_close(await suite.reveal(out), xa * xb, product_tolerance(threshold))
        for _ in range(decision["warmup"]):
            await run()
        times = []
        out = None
        for _ in range(decision["reps"]):
            await comm.barrier()
            start = time.perf_counter()
            out = await run()
            times.append(time.perf_counter() - start)
        check = await verify(out)
        times, check = await comm.broadcast(src=0, value=(times, check))
        planner.record(row, times, check)
    if rank != 0:
        return None
    loop = type(asyncio.get_running_loop())
    return {"rows": planner.results, "env": {"loop": f"{loop.__module__}.{loop.__qualname__}"}}


def cicada_async_worker(spec: dict[str, Any]) -> None:
    from cicada_async import AsyncSocketCommunicator

    results = AsyncSocketCommunicator.run(world_size=int(spec["players"]), fn=_player, args=(spec,),
                                          timeout=float(spec.get("timeout", 300)), startup_timeout=30)
    if not isinstance(results[0], dict):
        raise SystemExit(f"cicada_async rank 0 failed: {results[0]!r}; all: {results!r}")
    emit_result(results[0])


# ---------------------------------------------------------------------------------------------
# Starting workers


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_process_worker(command: list[str], timeout: float) -> Any:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise WorkerError(f"timed out after {timeout:g} s") from exc
    result = parse_result(completed.stdout)
    if result is None:
        raise WorkerError(f"exit status {completed.returncode}: {_tail(completed.stdout + completed.stderr)}")
    return result


def run_mpyc_worker(python: str, spec: dict[str, Any], timeout: float) -> Any:
    players = int(spec["players"])
    base = free_port_block(players)
    common = [python, str(BASELINES), "mpyc", json.dumps(spec), "-M", str(players),
              "-T", str(int(spec["threshold"]) - 1), "-K", str(MPYC_SEC_PARAM), "-B", str(base), "--no-log"]
    with tempfile.TemporaryDirectory(prefix="bench-shamir-") as directory:
        logs = [open(os.path.join(directory, f"party{i}.log"), "w+") for i in range(players)]
        processes = []
        try:
            for i in range(players):
                processes.append(subprocess.Popen([*common, "-I", str(i)], stdout=logs[i],
                                                  stderr=subprocess.STDOUT, text=True))
            deadline = time.monotonic() + timeout
            for process in processes:
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired as exc:
                    raise WorkerError(f"timed out after {timeout:g} s") from exc
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            outputs = []
            for log in logs:
                log.seek(0)
                outputs.append(log.read())
                log.close()
    result = parse_result(outputs[0])
    if result is None:
        codes = [process.returncode for process in processes]
        raise WorkerError(f"exit statuses {codes}: " + " | ".join(_tail(text, 6) for text in outputs if text.strip()))
    return result


def run_worker(contender: str, spec: dict[str, Any], compare_python: str | None) -> Any:
    timeout = float(spec["timeout"]) + 60
    if contender == "cicada_async":
        return run_process_worker([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                                  timeout)
    assert compare_python is not None
    if contender == "cicada":
        return run_process_worker([compare_python, str(BASELINES), "cicada", json.dumps(spec)], timeout)
    return run_mpyc_worker(compare_python, spec, timeout)


# ---------------------------------------------------------------------------------------------
# Environment


_PROBE = (
    "import importlib.metadata as m, importlib.util as u, json, platform, sys\n"
    "def v(name):\n"
    "    try:\n"
    "        return m.version(name)\n"
    "    except m.PackageNotFoundError:\n"
    "        return None\n"
    "print(json.dumps({'python': platform.python_version(), 'executable': sys.executable,\n"
    "    'cicada': v('cicada-mpc') if u.find_spec('cicada') else None,\n"
    "    'mpyc': v('mpyc') if u.find_spec('mpyc') else None,\n"
    "    'numpy': v('numpy'), 'gmpy2': v('gmpy2'), 'uvloop': v('uvloop')}))\n"
)


def probe_python(python: str) -> dict[str, Any] | None:
    try:
        completed = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if completed.returncode != 0:
        return None
    with contextlib.suppress(ValueError):
        return json.loads(completed.stdout.strip().splitlines()[-1])
    return None


# ---------------------------------------------------------------------------------------------
# Plan, rounds, aggregation


def threshold_for(players: int) -> int:
    return (players + 1) // 2


def rows_for(contender: str, sizes: dict[str, tuple[int, ...]], reps: int, rounds: int) -> list[dict[str, Any]]:
    slow_reps = max(1, math.ceil(3 / rounds))
    rows = []
    for op in OPS:
        probes = PROBES.get(contender, {}).get(op, ())
        for size in probes:
            rows.append({"op": op, "size": size, "reps": 1, "slow_reps": 1, "probe": True})
        for size in sizes[op]:
            rows.append({"op": op, "size": size, "reps": reps, "slow_reps": slow_reps, "probe": False})
    return rows


class Results:
    """Per (contender, op, size, players): the timed seconds of each round, skip notes, checks."""

    def __init__(self) -> None:
        self.samples: dict[tuple[str, str, int, int], dict[int, list[float]]] = {}
        self.notes: dict[tuple[str, str, int, int], str] = {}
        self.predicted: dict[tuple[str, str, int, int], float] = {}
        self.checks: dict[tuple[str, str, int, int], list[dict[str, Any]]] = {}
        self.first_round: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.env: dict[str, dict[str, Any]] = {}

    def add(self, contender: str, players: int, round_index: int, result: dict[str, Any]) -> None:
        self.env.setdefault(contender, result.get("env", {}))
        if round_index == 0:
            self.first_round[(contender, players)] = result["rows"]
        for row in result["rows"]:
            if row.get("probe"):
                continue
            key = (contender, row["op"], int(row["size"]), players)
            if row["skipped"]:
                self.notes[key] = row["skipped"]
                if row.get("predicted") is not None:
                    self.predicted[key] = float(row["predicted"])
                continue
            self.samples.setdefault(key, {})[round_index] = [float(t) for t in row["times"]]
            if row["check"] is not None:
                self.checks.setdefault(key, []).append(row["check"])

    def error(self, contender: str, players: int, rows: list[dict[str, Any]], message: str) -> None:
        for row in rows:
            key = (contender, row["op"], int(row["size"]), players)
            if key not in self.samples:
                self.notes.setdefault(key, f"error: {message.splitlines()[0][:120]}")

    def all_times(self, key: tuple[str, str, int, int]) -> list[float]:
        return [t for times in self.samples.get(key, {}).values() for t in times]

    def figure_ms(self, key: tuple[str, str, int, int]) -> float | None:
        times = self.all_times(key)
        return median(times) * 1e3 if times else None

    def ratio(self, numerator: tuple[str, str, int, int], denominator: tuple[str, str, int, int]) -> float | None:
        top, bottom = self.samples.get(numerator, {}), self.samples.get(denominator, {})
        ratios = [median(top[r]) / median(bottom[r]) for r in top if r in bottom and top[r] and bottom[r]]
        if ratios:
            return median(ratios)
        # Baseline measured in another round only (slow rows): compare the overall figures.
        a, b = self.figure_ms(numerator), self.figure_ms(denominator)
        return a / b if a is not None and b is not None else None

    def failed_checks(self, key: tuple[str, str, int, int]) -> list[str]:
        return [check["detail"] for check in self.checks.get(key, []) if not check.get("ok")]


def later_round_plan(first: list[dict[str, Any]], reps: int, rounds: int,
                     repeat_all: bool) -> tuple[list[dict[str, Any]], dict[str, list[list[float]]]]:
    """Rows to repeat after the first round, and the history that makes workers agree with it."""
    slow_reps = max(1, math.ceil(3 / rounds))
    history: dict[str, list[list[float]]] = {}
    rows = []
    for row in first:
        if row["skipped"] or not row["times"] or row.get("probe"):
            continue
        seconds = median(row["times"])
        history.setdefault(row["op"], []).append([row["size"], seconds])
        if repeat_all or seconds <= REPEAT_LIMIT:
            rows.append({"op": row["op"], "size": row["size"], "reps": reps, "slow_reps": slow_reps,
                         "probe": False})
    return rows, history


# ---------------------------------------------------------------------------------------------
# Report


def ms_text(ms: float) -> str:
    if ms >= 1000:
        return f"{ms:,.0f}"
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


def ratio_text(ratio: float) -> str:
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def cell(results: Results, key: tuple[str, str, int, int]) -> str:
    figure = results.figure_ms(key)
    failures = results.failed_checks(key)
    if figure is None:
        return results.notes.get(key, "not run")
    text = ms_text(figure)
    count = len(results.all_times(key))
    if count < 3:
        text += f" (n={count})"
    if failures:
        text += f" **WRONG: {failures[0]}**"
    return text


def ratio_cell(results: Results, contender: str, op: str, size: int, players: int) -> str:
    base = ("cicada_async", op, size, players)
    other = (contender, op, size, players)
    ratio = results.ratio(other, base)
    if ratio is not None:
        return ratio_text(ratio)
    base_ms = results.figure_ms(base)
    if other in results.predicted and base_ms:
        return f"~{ratio_text(results.predicted[other] * 1e3 / base_ms)} (extrapolated)"
    return "-"


def load_text() -> str:
    with contextlib.suppress(AttributeError, OSError):
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    return "?"


def report(results: Results, args: argparse.Namespace, sizes: dict[str, tuple[int, ...]], available: dict[str, bool],
           compare_info: dict[str, Any] | None, elapsed: float, load_before: str) -> tuple[list[str], bool]:
    lines = ["# Shamir protocol suites: cicada_async vs Cicada vs MPyC", ""]
    lines.append(f"- command: `{command_line()}`")
    lines.append(f"- machine: {platform.machine()} {platform.system()} {platform.release()}, cores: {core_count()}; "
                 f"load average (1, 5, 15 min) before: {load_before}, after: {load_text()}")
    lines.append(f"- python: {platform.python_implementation()} {platform.python_version()} ({sys.executable})")
    lines.append(f"- cicada_async {package_version('cicada_async')}, numpy {package_version('numpy')}, "
                 f"uvloop {package_version('uvloop')}; event loop: "
                 f"{results.env.get('cicada_async', {}).get('loop', '?')}")
    if compare_info is not None:
        where = "this interpreter" if compare_info["executable"] == sys.executable else \
            f"{compare_info['executable']} (python {compare_info['python']})"
        mpyc_env = results.env.get("mpyc", {})
        versions = {name: compare_info[name] or "not installed" for name in ("cicada", "mpyc", "gmpy2", "uvloop")}
        lines.append(f"- baselines under {where}: cicada-mpc {versions['cicada']}, mpyc {versions['mpyc']}, "
                     f"numpy {compare_info['numpy']}, gmpy2 {versions['gmpy2']}, uvloop {versions['uvloop']}"
                     + (f"; MPyC event loop: {mpyc_env['loop']}" if "loop" in mpyc_env else ""))
    else:
        lines.append("- baselines: not available (install the compare extra, or pass --compare-python)")
    lines.append(f"- threshold (shares to reveal): 2 at 3 players, 3 at 5 (MPyC -T 1 / -T 2); "
                 f"fixed point: 16 fractional bits; MPyC SecFxp(l=64, f=16), -K {MPYC_SEC_PARAM}")
    lines.append(f"- rounds: {args.rounds} (interleaved); cicada_async {args.reps} repetitions per row and round; "
                 f"baseline limit {args.limit:g} s per repetition; {'quick run' if args.quick else 'full run'}")
    lines.append("")
    header = ["operation", "values", "players", "cicada_async ms", "Cicada ms", "MPyC ms",
              "Cicada / cicada_async", "MPyC / cicada_async"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---", "--:", "--:", "--:", "--:", "--:", "--:", "--:"]) + "|")
    for op in OPS:
        for size in sizes[op]:
            for players in args.players:
                cells = [OP_TITLES[op], size_text(size), str(players)]
                for contender in CONTENDERS:
                    if contender != "cicada_async" and not available[contender]:
                        cells.append(SKIPPED_COMPARE)
                    else:
                        cells.append(cell(results, (contender, op, size, players)))
                for contender in ("cicada", "mpyc"):
                    cells.append(ratio_cell(results, contender, op, size, players) if available[contender] else "-")
                lines.append("| " + " | ".join(cells) + " |")
    lines.append("")

    # Goals
    lines.append(f"Goals (cicada_async, {GOAL_PLAYERS} players):")
    lines.append("")
    for (op, size), goal in GOALS_MS.items():
        figure = results.figure_ms(("cicada_async", op, size, GOAL_PLAYERS))
        label = f"{OP_TITLES[op]} {size_text(size)} <= {goal:g} ms"
        if figure is None:
            lines.append(f"- {label}: not measured" + (" (--quick)" if size not in sizes[op] else ""))
        else:
            lines.append(f"- {label}: {ms_text(figure)} ms -> {'MET' if figure <= goal else 'MISSED'}")
    if available["cicada"]:
        below, extrapolated, measured = [], [], 0
        for op in OPS:
            for size in sizes[op]:
                for players in args.players:
                    ratio = results.ratio(("cicada", op, size, players), ("cicada_async", op, size, players))
                    name = f"{OP_TITLES[op]} {size_text(size)} @{players}"
                    if ratio is None:
                        extrapolated.append(name)
                        continue
                    measured += 1
                    if ratio < GOAL_RATIO:
                        below.append(f"{name} ({ratio_text(ratio)})")
        status = "MET" if not below else "MISSED on " + ", ".join(below)
        lines.append(f"- >= {GOAL_RATIO:g}x Cicada on every row: {status} ({measured} rows measured"
                     + (f"; not measured, extrapolated only: {', '.join(extrapolated)}" if extrapolated else "") + ")")
    else:
        lines.append(f"- >= {GOAL_RATIO:g}x Cicada on every row: not measured ({SKIPPED_COMPARE})")
    lines.append("")

    # Notes
    wrong = False
    notes = []
    for key in sorted(results.checks):
        failures = results.failed_checks(key)
        if not failures:
            continue
        contender, op, size, players = key
        if contender == "cicada_async":
            wrong = True
        notes.append(f"- {TITLES[contender]} {OP_TITLES[op]} {size_text(size)} @{players}: WRONG result: "
                     f"{'; '.join(sorted(set(failures)))}")
    ulps = [check.get("ulp", 0.0) for (contender, op, _, _), checks in results.checks.items()
            if contender == "cicada_async" and op == "multiply" for check in checks]
    if ulps:
        notes.append(f"- cicada_async results checked on every row; fixed-point products off by at most "
                     f"{max(ulps):.2f} units of 2**-16")
    lines.append("Notes:")
    lines.append("")
    lines.extend(notes)
    lines.append("- ms: median of all timed repetitions (rank 0, after a barrier); `n=` marks cells with fewer "
                 "than 3; ratios: median over rounds of paired per-round medians")
    lines.append(f"- total run time: {elapsed:.0f} s")
    return lines, wrong


# ---------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="sizes <= 1e3 only, 2 rounds (~30 s)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3, quick 2)")
    parser.add_argument("--reps", type=int, default=None,
                        help="cicada_async's timed repetitions per row and round (default 5, quick 3)")
    parser.add_argument("--limit", type=float, default=None,
                        help="skip baseline rows predicted above this many seconds per repetition "
                             "(default 25, quick 3)")
    parser.add_argument("--players", type=int, nargs="+", default=[3, 5], help="player counts (default 3 5)")
    parser.add_argument("--compare-python", metavar="PATH",
                        help="interpreter with cicada-mpc and mpyc, for the Cicada and MPyC rows "
                             "(default: this interpreter, if it has them)")
    parser.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.reps = args.reps or (3 if args.quick else 5)
    args.limit = args.limit if args.limit is not None else (3.0 if args.quick else 25.0)
    if args.rounds < 1 or args.reps < 1:
        parser.error("--rounds and --reps must be >= 1")
    for players in args.players:
        if players < 3:
            parser.error("--players: at least 3 (multiplication needs 2*threshold-1 players)")
    return args


def progress(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        cicada_async_worker(json.loads(args.worker))
        return 0
    started = time.perf_counter()
    load_before = load_text()
    sizes = QUICK_SIZES if args.quick else SIZES

    compare_python = args.compare_python
    if compare_python is None and (importlib.util.find_spec("cicada") or importlib.util.find_spec("mpyc")):
        compare_python = sys.executable  # the compare extra is installed here
    compare_info = probe_python(compare_python) if compare_python is not None else None
    if args.compare_python is not None and compare_info is None:
        progress(f"warning: cannot run {args.compare_python}; baseline rows skipped")
    available = {"cicada_async": True,
                 "cicada": bool(compare_info and compare_info["cicada"]),
                 "mpyc": bool(compare_info and compare_info["mpyc"])}
    contenders = [c for c in CONTENDERS if available[c]]

    results = Results()
    for round_index in range(args.rounds):
        for players in args.players:
            rotation = round_index % len(contenders)
            order = contenders[rotation:] + contenders[:rotation]
            for contender in order:
                reps = args.reps if contender == "cicada_async" else 3
                if round_index == 0:
                    rows, history = rows_for(contender, sizes, reps, args.rounds), {}
                else:
                    first = results.first_round.get((contender, players))
                    if first is None:
                        continue  # the first round failed
                    rows, history = later_round_plan(first, reps, args.rounds, contender == "cicada_async")
                if not rows:
                    continue
                spec = {"players": players, "threshold": threshold_for(players), "seed": 1, "rows": rows,
                        "history": history, "timeout": 900 if contender != "cicada_async" else 300,
                        # cicada_async is the subject: every row gets every repetition.
                        "limit": args.limit if contender != "cicada_async" else math.inf,
                        "fast": FAST if contender != "cicada_async" else math.inf}
                progress(f"[round {round_index + 1}/{args.rounds}] {players} players: {TITLES[contender]} "
                         f"({len(rows)} rows) ...")
                begin = time.perf_counter()
                try:
                    result = run_worker(contender, spec, compare_python)
                except WorkerError as exc:
                    progress(f"    failed: {exc}")
                    results.error(contender, players, rows, str(exc))
                    continue
                results.add(contender, players, round_index, result)
                progress(f"    done in {seconds_text(time.perf_counter() - begin)}")

    lines, wrong = report(results, args, sizes, available, compare_info,
                         time.perf_counter() - started, load_before)
    print("\n".join(lines))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
