"""Per-operation latency of small operations: cicada_async against MPyC and Sandia's Cicada.

    python benchmarks/bench_ops.py                         # 5 rounds of 3 repetitions, ~2 minutes
    python benchmarks/bench_ops.py --quick                 # 2 rounds of 2 repetitions, ~30 s
    python benchmarks/bench_ops.py --compare-python /path/to/venv/bin/python

Prints a header (the exact command, cores, versions, event loops), one markdown table and notes.
Progress goes to stderr, so ``python benchmarks/bench_ops.py > results.md`` keeps just the report.

3 players, every one a process on this host; threshold 2 (shares needed to reveal, i.e.
polynomials of degree 1; MPyC ``-T1``, its default at 3 parties).

Workloads
---------
* **sequential field multiply** -- ``--calls`` (1,000) scalar ``field_multiply`` calls, each
  awaited before the next, after a warm-up of 100.  Operands are shared once beforehand with
  shape ``()`` and the ``Identity`` encoding.  Figure: microseconds per call (per repetition the
  mean over the calls).  MPyC: ``z = x * y; await mpc.gather(z)`` on ``mpc.SecInt(64)`` (product
  and degree reduction, one round; no reveal).  Cicada: ``suite.field_multiply`` (blocking).
* **gathered field multiply** -- the same calls started at once,
  ``await asyncio.gather(*(suite.field_multiply(x, y) for _ in range(1000)))``, then the products
  revealed at once, ``await asyncio.gather(*(suite.reveal(z, encoding=Identity()) ...))``.
  Figures: ms for the multiplies, for the reveals and for both; the speed-up is
  (1,000 x sequential µs per call) / (multiply + reveal), both measured in the same worker run.
  MPyC: ``products = [x * y for _ in range(1000)]; await mpc.gather(products)`` then
  ``await mpc.output(products)``.  Cicada: not applicable (a blocking API, one call at a time).
* **share + reveal of one scalar** -- ``share(src=0, secret=numpy.array(1.5), shape=())`` then
  ``reveal(share)`` (fixed point, 16 fractional bits), 1,000 times in sequence; µs per pair.
  MPyC: ``await mpc.output(mpc.input(secint(98304), senders=0))`` (98304 = 1.5 * 2**16, the
  field element cicada_async shares for 1.5).  Cicada: ``share`` + ``reveal`` as cicada_async.

Every player checks its results: the revealed gathered products, every revealed share, and
per repetition of the sequential multiplies the sum of all products and the last one (revealed
after the timing).  A wrong result, or a cicada_async run that fails, makes the script exit
with status 1 and say why (on stderr and in the notes).

Method
------
* Each *run* (one contender, every workload in turn) is a fresh subprocess that starts its own
  players: cicada_async ``AsyncSocketCommunicator.run(world_size=3, ...)``, Cicada
  ``SocketCommunicator.run`` (both under ``--worker``), MPyC three processes ``-M3 -I<i>`` on a
  free port block, under the ``--compare-python`` interpreter (the baselines' code is in
  ``_shamir_baselines.py``).  Runs are interleaved: a round runs every contender once, in an
  order that rotates between rounds, so load drift hits every contender alike.
* Inside a run: warm-ups (100 sequential multiplies, one gather of 100 products and their
  reveals, 100 share + reveal pairs), then ``--reps`` repetitions of [sequential multiplies,
  gather, share + reveal], each timed on rank 0 (MPyC party 0) with ``time.perf_counter``
  after an all-to-all exchange that lines the players up (``allgather(None)``; MPyC
  ``mpc.transfer(None)``), so the speed-up's two halves come from the same run.
* A cell is the median over every repetition of every round, with half the inter-quartile range
  (``±``); a ratio is the median over rounds of the ratio of the two contenders' per-round
  medians (paired, so drift between rounds cancels).  Speed-ups are per run, then the median
  over rounds.
* Cicada is slow at some of these (tens of ms per share + reveal), so its calls per repetition
  are planned from 10 timed calls (after 2 untimed) so that a repetition takes at most
  ``--baseline-budget`` seconds (4; quick 0.8), rounded down to 1, 2 or 5 times a power of ten,
  with a warm-up of a quarter of them; such cells say how many calls they averaged.
* Event loops: cicada_async's launcher picks uvloop when it is installed (``CICADA_ASYNC_LOOP=
  asyncio`` forces asyncio's loop; the variable is passed through and shown in the command);
  MPyC uses uvloop when its interpreter has it.  The header reports what the players ran.
* 3 processes on 2 cores: players are not pinned, and two of them then share a core, so
  latency approaches the total CPU time the three players spend per operation divided by the
  cores (the notes give rank 0's CPU time per sequential multiply).
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
    SKIPPED_COMPARE,
    WorkerError,
    emit_result,
    format_number,
    header_lines,
    markdown_table,
    median,
    paired_ratio,
    run_worker,
    spread_text,
)
from _shamir_baselines import (  # noqa: E402
    OPS_LHS,
    OPS_MPYC_BITS,
    OPS_RHS,
    OPS_SECRET,
    ops_check_values,
    ops_cicada_worker,
    ops_mpyc_worker,
    ops_new_result,
)

SCRIPT = Path(__file__).resolve()
PLAYERS = 3
THRESHOLD = 2
CONTENDERS = ("cicada_async", "mpyc", "cicada")
TITLES = {"cicada_async": "cicada_async", "mpyc": "MPyC", "cicada": "Cicada"}
BASELINES = ("mpyc", "cicada")
WARMUP = 100
GATHER_WARMUP = 100
# metric: (label, unit, scale from seconds to the unit); "seq" and "share_reveal" are per call.
METRICS = {
    "seq": ("sequential field_multiply, each awaited", "µs per call", 1e6),
    "gather_multiply": ("gathered: {n} field_multiply at once", "ms", 1e3),
    "gather_reveal": ("gathered: then {n} reveals at once", "ms", 1e3),
    "gather_total": ("gathered: multiply + reveal", "ms", 1e3),
    "share_reveal": ("share + reveal of one scalar, in sequence", "µs per pair", 1e6),
}
GATHER_METRICS = ("gather_multiply", "gather_reveal", "gather_total")
# An MPyC party's flag: not "--worker", which MPyC's option parser takes for an abbreviation of
# its own "--workers" (it parses sys.argv when mpyc.runtime is imported).
MPYC_PARTY = "--mpyc-party"


# ---------------------------------------------------------------------------------------------
# cicada_async worker (public API only)


async def _player(comm: Any, spec: dict[str, Any]) -> dict[str, Any]:
    import asyncio
    import functools

    import numpy

    import cicada_async.encoding
    from cicada_async.shamir import ShamirProtocolSuite

    rank = comm.rank
    identity = cicada_async.encoding.Identity()
    suite = ShamirProtocolSuite(comm, threshold=int(spec["threshold"]))
    calls, gathered, warmup = int(spec["calls"]), int(spec["gather"]), int(spec["warmup"])
    loop = type(asyncio.get_running_loop())
    result = ops_new_result(rank, f"{loop.__module__}.{loop.__qualname__}")
    result["calls"] = {"seq": calls, "share_reveal": calls}
    lhs = await suite.share(src=0, secret=numpy.array(OPS_LHS) if rank == 0 else None, shape=(), encoding=identity)
    rhs = await suite.share(src=0, secret=numpy.array(OPS_RHS) if rank == 0 else None, shape=(), encoding=identity)
    secret = numpy.array(OPS_SECRET)
    product = OPS_LHS * OPS_RHS

    async def share_reveal() -> Any:
        share = await suite.share(src=0, secret=secret if rank == 0 else None, shape=())
        return await suite.reveal(share)

    async def gather(count: int) -> tuple[list[Any], float, float, float]:
        start = time.perf_counter()
        products = await asyncio.gather(*(suite.field_multiply(lhs, rhs) for _ in range(count)))
        middle = time.perf_counter()
        values = await asyncio.gather(*(suite.reveal(z, encoding=identity) for z in products))
        end = time.perf_counter()
        return values, middle - start, end - middle, end - start

    def revealed_ints(values: list[Any]) -> list[int]:
        return [int(value) for value in values]

    # Warm-up
    for _ in range(warmup):
        await suite.field_multiply(lhs, rhs)
    values, *_ = await gather(int(spec["gather_warmup"]))
    result["errors"] += ops_check_values(revealed_ints(values), product, "warm-up gather")
    for _ in range(warmup):
        await share_reveal()

    for _ in range(int(spec["reps"])):
        await comm.allgather(None)  # everyone starts together
        start, cpu = time.perf_counter(), time.process_time()
        products = [await suite.field_multiply(lhs, rhs) for _ in range(calls)]
        result["seq"].append((time.perf_counter() - start) / calls)
        result["seq_cpu"].append((time.process_time() - cpu) / calls)
        total = functools.reduce(suite.field_add, products)
        revealed = revealed_ints([await suite.reveal(total, encoding=identity),
                                  await suite.reveal(products[-1], encoding=identity)])
        result["errors"] += ops_check_values(revealed[:1], calls * product, "sum of sequential products")
        result["errors"] += ops_check_values(revealed[1:], product, "last sequential product")

        await comm.allgather(None)
        values, multiply_seconds, reveal_seconds, total_seconds = await gather(gathered)
        result["gather_multiply"].append(multiply_seconds)
        result["gather_reveal"].append(reveal_seconds)
        result["gather_total"].append(total_seconds)
        result["errors"] += ops_check_values(revealed_ints(values), product, "gathered products")

        await comm.allgather(None)
        start = time.perf_counter()
        values = [await share_reveal() for _ in range(calls)]
        result["share_reveal"].append((time.perf_counter() - start) / calls)
        result["errors"] += ops_check_values([float(value) for value in values], OPS_SECRET, "share + reveal")
    return result


def cicada_async_worker(spec: dict[str, Any]) -> list[Any]:
    from cicada_async import AsyncSocketCommunicator

    return AsyncSocketCommunicator.run(world_size=int(spec["players"]), fn=_player, args=(spec,),
                                       timeout=float(spec["timeout"]), startup_timeout=30)


def worker_main(spec: dict[str, Any]) -> int:
    """``--worker``: run one contender's players and print their results for the parent."""
    contender = spec["contender"]
    if contender == "cicada_async":
        results = cicada_async_worker(spec)
    elif contender == "cicada":
        results = ops_cicada_worker(spec)
    elif contender == "mpyc":
        results = ops_mpyc_worker(spec)  # this party only
    else:
        raise SystemExit(f"unknown contender {contender!r}")
    failed = [f"player {rank}: {result!r}" for rank, result in enumerate(results) if not isinstance(result, dict)]
    if failed:
        raise SystemExit(f"{TITLES[contender]} players failed: " + "; ".join(failed))
    emit_result(results)
    return 0


# ---------------------------------------------------------------------------------------------
# Starting workers


def parse_marked(text: str) -> Any:
    for line in reversed(text.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    return None


def tail(text: str, lines: int = 6) -> str:
    return " / ".join(text.strip().splitlines()[-lines:]) or "(no output)"


def run_mpyc(python: str, spec: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
    """Start the MPyC parties as ``-M<m> -I<i>`` processes; every party's result, by party."""
    from bench_shamir import free_port_block

    players = int(spec["players"])
    try:
        base = free_port_block(players)
    except RuntimeError as exc:
        raise WorkerError(str(exc)) from exc
    command = [python, str(SCRIPT), MPYC_PARTY, json.dumps(spec), "-M", str(players),
               "-T", str(int(spec["threshold"]) - 1), "-B", str(base), "--no-log"]
    with tempfile.TemporaryDirectory(prefix="bench-ops-") as directory:
        logs = [open(os.path.join(directory, f"party{i}.log"), "w+") for i in range(players)]
        processes: list[subprocess.Popen[str]] = []
        try:
            for i in range(players):
                processes.append(subprocess.Popen([*command, "-I", str(i)], stdout=logs[i],
                                                  stderr=subprocess.STDOUT, text=True))
            deadline = time.monotonic() + timeout
            for process in processes:
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired as exc:
                    raise WorkerError(f"MPyC parties timed out after {timeout:g} s") from exc
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
    results = []
    for i, (process, output) in enumerate(zip(processes, outputs, strict=True)):
        party = parse_marked(output)
        if not party:
            raise WorkerError(f"MPyC party {i} exited with {process.returncode}: {tail(output)}")
        results.extend(party)
    return results


def run_contender(contender: str, spec: dict[str, Any], compare_python: str | None) -> list[dict[str, Any]]:
    timeout = float(spec["timeout"]) + 30
    if contender == "cicada_async":
        return run_worker(sys.executable, str(SCRIPT), spec, timeout=timeout)
    assert compare_python is not None
    if contender == "cicada":
        return run_worker(compare_python, str(SCRIPT), spec, timeout=timeout)
    return run_mpyc(compare_python, spec, timeout)


# ---------------------------------------------------------------------------------------------
# Results


class Results:
    """Rank 0's figures per contender and round, every player's errors, failures."""

    def __init__(self, rounds: int, gathered: int) -> None:
        self.count = rounds
        self.gathered = gathered  # products per gather
        self.rounds: dict[str, dict[int, dict[str, Any]]] = {c: {} for c in CONTENDERS}
        self.errors: list[str] = []  # wrong results, any contender
        self.failures: dict[str, list[str]] = {c: [] for c in CONTENDERS}

    def add(self, contender: str, round_index: int, players: list[dict[str, Any]]) -> None:
        for player in players:
            for error in player["errors"]:
                self.errors.append(f"{TITLES[contender]} player {player['rank']} (round {round_index + 1}): {error}")
        self.rounds[contender][round_index] = next(p for p in players if p["rank"] == 0)

    def per_round(self, contender: str, metric: str) -> list[list[float]]:
        """Per round: rank 0's repetitions (an empty list for a round that failed)."""
        runs = self.rounds[contender]
        return [runs[r][metric] if r in runs else [] for r in range(self.count)]

    def values(self, contender: str, metric: str) -> list[float]:
        return [value for run in self.rounds[contender].values() for value in run[metric]]

    def speedups(self, contender: str) -> list[float]:
        out = []
        for run in self.rounds[contender].values():
            if run["seq"] and run["gather_total"]:
                out.append(self.gathered * median(run["seq"]) / median(run["gather_total"]))
        return out

    def calls(self, contender: str, name: str) -> list[int]:
        return sorted({int(run["calls"][name]) for run in self.rounds[contender].values()})

    def env(self, contender: str) -> dict[str, Any]:
        return next(iter(self.rounds[contender].values()), {}).get("env", {})


def figure_cell(results: Results, contender: str, metric: str, scale: float, calls: int) -> str:
    values = results.values(contender, metric)
    if not values:
        failures = results.failures[contender]
        return "error (see notes)" if failures else "not run"
    text = format_number(median(values) * scale) + (f" {spread_text(values)}" if len(values) >= 3 else "")
    name = {"seq": "seq", "share_reveal": "share_reveal"}.get(metric)
    if name is not None:
        counts = results.calls(contender, name)
        if counts and counts != [calls]:
            text += f" ({'/'.join(str(c) for c in counts)} calls per rep.)"
    return text


def ratio_cell(results: Results, contender: str, metric: str) -> str:
    ratio = paired_ratio(results.per_round(contender, metric), results.per_round("cicada_async", metric))
    if ratio is None:
        return "-"
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.0f}x"


# ---------------------------------------------------------------------------------------------
# Report


def load_text() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except (AttributeError, OSError):
        return "?"


def probe_compare(python: str) -> dict[str, Any] | None:
    from bench_shamir import probe_python

    return probe_python(python)


def report(results: Results, args: argparse.Namespace, available: dict[str, bool],
           compare_info: dict[str, Any] | None, elapsed: float, load_before: str) -> list[str]:
    loop = results.env("cicada_async").get("loop", "?")
    loop_choice = os.environ.get("CICADA_ASYNC_LOOP") or "unset: uvloop when installed"
    extra = {
        "load average (1, 5, 15 min)": f"before {load_before}, after {load_text()}",
        "cicada_async event loop": f"{loop} (CICADA_ASYNC_LOOP {loop_choice})",
    }
    if compare_info is not None:
        versions = {name: compare_info.get(name) or "not installed" for name in ("mpyc", "gmpy2", "cicada", "uvloop")}
        extra["baselines"] = (f"{compare_info['executable']} (python {compare_info['python']}): "
                              f"mpyc {versions['mpyc']}, gmpy2 {versions['gmpy2']}, cicada-mpc {versions['cicada']}, "
                              f"numpy {compare_info.get('numpy')}, uvloop {versions['uvloop']}")
        if available["mpyc"]:
            extra["MPyC event loop"] = results.env("mpyc").get("loop", "?")
    else:
        extra["baselines"] = "not available (install the compare extra, or pass --compare-python)"
    extra["players"] = (f"{PLAYERS} processes on this host, threshold {THRESHOLD} (degree {THRESHOLD - 1}; "
                        f"MPyC -T{THRESHOLD - 1}, SecInt({OPS_MPYC_BITS})), not pinned")
    extra["method"] = (f"{args.rounds} interleaved rounds x {args.reps} repetitions of {args.calls:,} calls "
                       f"(gather: {args.calls:,} at once), after {WARMUP} warm-up calls; rank 0 timings; "
                       f"{'quick run' if args.quick else 'full run'}")
    lines = header_lines("Per-operation latency: cicada_async vs MPyC vs Cicada", extra)
    lines.append("")

    headers = ["operation", "unit", "cicada_async", "MPyC", "Cicada", "MPyC / cicada_async",
               "Cicada / cicada_async"]
    rows = []
    for metric, (label, unit, scale) in METRICS.items():
        row = [label.format(n=f"{args.calls:,}"), unit]
        for contender in CONTENDERS:
            if not available[contender]:
                row.append(SKIPPED_COMPARE)
            elif contender == "cicada" and metric in GATHER_METRICS:
                row.append("n/a (blocking API)")
            else:
                row.append(figure_cell(results, contender, metric, scale, args.calls))
        for contender in BASELINES:
            usable = available[contender] and not (contender == "cicada" and metric in GATHER_METRICS)
            row.append(ratio_cell(results, contender, metric) if usable else "-")
        rows.append(row)
        if metric == "gather_total":
            row = [f"gathered speed-up: {args.calls:,} x sequential / (multiply + reveal)", "x"]
            for contender in CONTENDERS:
                speedups = results.speedups(contender)
                if not available[contender]:
                    row.append(SKIPPED_COMPARE)
                elif contender == "cicada":
                    row.append("n/a (blocking API)")
                else:
                    row.append(f"{median(speedups):.1f}" if speedups else "-")
            rows.append([*row, "-", "-"])
    lines.append(markdown_table_aligned(headers, rows))
    lines.append("")

    lines.append("Notes:")
    lines.append("")
    cpu = []
    for contender in CONTENDERS:
        values = results.values(contender, "seq_cpu")
        if values:
            cpu.append(f"{TITLES[contender]} {format_number(median(values) * 1e6)} µs")
    if cpu:
        lines.append("- rank 0's CPU time (whole process) per sequential field_multiply: " + ", ".join(cpu))
    for contender in BASELINES:
        for name, what in (("seq", "sequential multiplies"), ("share_reveal", "share + reveal pairs")):
            counts = results.calls(contender, name)
            if available[contender] and counts and counts != [args.calls]:
                lines.append(f"- {TITLES[contender]}: {'/'.join(str(c) for c in counts)} {what} per repetition "
                             f"instead of {args.calls:,} (planned to fit {args.baseline_budget:g} s), "
                             "per-call mean over those")
    if available["mpyc"]:
        lines.append(f"- MPyC's gathered reveal is one `mpc.output` of the list: each party sends one message holding "
                     f"all {args.calls:,} shares (to its {THRESHOLD - 1} successor(s), enough to interpolate), where "
                     f"cicada_async runs {args.calls:,} reveals (one allgather each)")
    for contender in CONTENDERS:
        for failure in results.failures[contender]:
            lines.append(f"- {TITLES[contender]} run failed: {failure}")
    if results.errors:
        lines.extend(f"- **WRONG result**: {error}" for error in results.errors[:20])
    else:
        lines.append("- every player's results checked: all right")
    lines.append("- cells: median over all repetitions of all rounds, ± half the inter-quartile range; ratios: "
                 "median over rounds of paired per-round medians (> 1: the baseline is slower)")
    lines.append(f"- total run time: {elapsed:.0f} s")
    return lines


def markdown_table_aligned(headers: list[str], rows: list[list[str]]) -> str:
    """``_common.markdown_table`` with the figure columns right-aligned."""
    table = markdown_table(headers, rows).splitlines()
    cells = table[1].strip("|").split("|")
    table[1] = "|" + "|".join(cell if i < 2 else cell[:-1] + ":" for i, cell in enumerate(cells)) + "|"
    return "\n".join(table)


# ---------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 repetitions (~30 s)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5, quick 2)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per run (default 3, quick 2)")
    parser.add_argument("--calls", type=int, default=1000, help="calls per repetition (default 1000)")
    parser.add_argument("--baseline-budget", type=float, default=None,
                        help="seconds per repetition a slow baseline (Cicada) may take; fewer calls beyond "
                             "(default 4, quick 0.8)")
    parser.add_argument("--compare-python", metavar="PATH",
                        help="interpreter with mpyc and cicada-mpc, for the MPyC and Cicada columns "
                             "(default: this interpreter, if it has them)")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.reps = args.reps or (2 if args.quick else 3)
    if args.baseline_budget is None:
        args.baseline_budget = 0.8 if args.quick else 4.0
    if args.rounds < 1 or args.reps < 1 or args.calls < 1:
        parser.error("--rounds, --reps and --calls must be >= 1")
    return args


def progress(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--worker"], [MPYC_PARTY]):
        # Checked before argparse: MPyC parties also get MPyC's own options (-M3 -I0 ...).
        return worker_main(json.loads(argv[1]))
    args = parse_args(argv)
    started = time.perf_counter()
    load_before = load_text()

    compare_python = args.compare_python
    if compare_python is None:
        import importlib.util

        if importlib.util.find_spec("cicada") or importlib.util.find_spec("mpyc"):
            compare_python = sys.executable  # the compare extra is installed here
    compare_info = probe_compare(compare_python) if compare_python is not None else None
    if args.compare_python is not None and compare_info is None:
        progress(f"warning: cannot run {args.compare_python}; baseline columns skipped")
    available = {"cicada_async": True,
                 "mpyc": bool(compare_info and compare_info.get("mpyc")),
                 "cicada": bool(compare_info and compare_info.get("cicada"))}
    contenders = [c for c in CONTENDERS if available[c]]

    results = Results(args.rounds, args.calls)
    for round_index in range(args.rounds):
        rotation = round_index % len(contenders)
        for contender in contenders[rotation:] + contenders[:rotation]:
            spec = {"contender": contender, "players": PLAYERS, "threshold": THRESHOLD, "calls": args.calls,
                    "gather": args.calls, "warmup": WARMUP, "gather_warmup": GATHER_WARMUP, "reps": args.reps,
                    "timeout": 60}
            if contender == "cicada":
                spec["budget"] = args.baseline_budget
            progress(f"[round {round_index + 1}/{args.rounds}] {TITLES[contender]} ...")
            begin = time.perf_counter()
            try:
                players = run_contender(contender, spec, compare_python)
            except WorkerError as exc:
                progress(f"    failed: {exc}")
                results.failures[contender].append(f"round {round_index + 1}: {exc}")
                continue
            results.add(contender, round_index, players)
            progress(f"    done in {time.perf_counter() - begin:.1f} s")

    print("\n".join(report(results, args, available, compare_info, time.perf_counter() - started, load_before)))
    status = 0
    if results.errors:
        progress("error: WRONG results:\n  " + "\n  ".join(results.errors))
        status = 1
    if results.failures["cicada_async"]:
        progress("error: cicada_async runs failed:\n  " + "\n  ".join(results.failures["cicada_async"]))
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
