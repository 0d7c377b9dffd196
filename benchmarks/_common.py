"""Helpers shared by the benchmark scripts in this folder.

Only the standard library is imported at module level, so a worker started under another
interpreter (e.g. a venv that has Cicada but not ``cicada_async``) can import this module too.

Conventions used by every script:

* The parent process never measures anything itself.  Each *run* of one contender on one
  workload is a fresh subprocess (``python <script> --worker <json spec>``) that starts its own
  player processes, warms up, then times several blocks of many iterations with
  :func:`time.perf_counter` inside the player function, and reports one figure per block.
* Contenders are interleaved: round 1 runs every contender once, round 2 again, and so on, so
  that load drift on a shared machine affects every contender alike.
* A figure is the median over all blocks of all rounds; a ratio is the median over rounds of
  the ratio of the two contenders' per-round medians (paired, so drift between rounds cancels).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

RESULT_MARKER = "BENCH-RESULT "
SKIPPED_COMPARE = "skipped (install the compare extra)"


# ---------------------------------------------------------------------------------------------
# Statistics


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """First and third quartiles (inclusive method, so it works from two values up)."""
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def spread_text(values: Sequence[float]) -> str:
    """Half the inter-quartile range relative to the median, e.g. ``±3%``."""
    if not values:
        return ""
    mid = median(values)
    low, high = quartiles(values)
    if mid == 0:
        return ""
    return f"±{(high - low) / 2 / abs(mid) * 100:.0f}%"


def paired_ratio(numerator: Sequence[Sequence[float]],
                 denominator: Sequence[Sequence[float]]) -> float | None:
    """Median over rounds of median(numerator round) / median(denominator round).

    Each argument is a list of rounds, each round a list of block figures.  Rounds where
    either side is missing (an error) are left out.
    """
    ratios = [median(a) / median(b) for a, b in zip(numerator, denominator, strict=False) if a and b]
    return median(ratios) if ratios else None


# ---------------------------------------------------------------------------------------------
# Environment description


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def core_count() -> str:
    total = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = total
    return f"{total}" if usable == total else f"{total} ({usable} usable by this process)"


def command_line() -> str:
    """The exact command that started this script, as a shell would need it."""
    prefix = ""
    loop = os.environ.get("CICADA_ASYNC_LOOP")
    if loop is not None:
        prefix = f"CICADA_ASYNC_LOOP={shlex.quote(loop)} "
    return prefix + shlex.join([sys.executable, *sys.argv])


def header_lines(title: str, extra: Mapping[str, str] | None = None) -> list[str]:
    lines = [
        f"# {title}",
        "",
        f"- command: `{command_line()}`",
        f"- machine: {platform.machine()} {platform.system()} {platform.release()}, cores: {core_count()}",
        f"- python: {platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        f"- uvloop: {package_version('uvloop')}, numpy: {package_version('numpy')}, "
        f"cicada_async: {package_version('cicada_async')}",
    ]
    lines.extend(f"- {key}: {value}" for key, value in (extra or {}).items())
    return lines


def probe(python: str, code: str, timeout: float = 60) -> str | None:
    """Run ``python -c code``; its stripped stdout, or None if it failed."""
    try:
        completed = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=timeout,
                                   check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if completed.returncode != 0:
        return None
    return completed.stdout.strip()


# ---------------------------------------------------------------------------------------------
# Workers


class WorkerError(RuntimeError):
    pass


def emit_result(result: Any) -> None:
    """Called by a worker: hand its result to the parent on stdout."""
    sys.stdout.write(RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()


def run_worker(python: str, script: str, spec: Mapping[str, Any], env: Mapping[str, str] | None = None,
               timeout: float = 180) -> Any:
    """Start ``python script --worker <spec>`` and return what it passed to :func:`emit_result`."""
    command = [python, script, "--worker", json.dumps(spec)]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False,
                                   env=dict(env) if env is not None else None)
    except subprocess.TimeoutExpired as exc:
        raise WorkerError(f"worker timed out after {timeout:g}s: {shlex.join(command)}") from exc
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    tail = (completed.stderr.strip().splitlines() or ["(no output)"])[-1]
    raise WorkerError(f"worker exited with {completed.returncode}: {tail}")


def free_port_block(count: int) -> int:
    """A base port b such that b .. b+count-1 were free a moment ago (for MPyC's -B)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            base = first.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            held = []
            for port in range(base, base + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("", port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise WorkerError("no free block of ports for MPyC")


# ---------------------------------------------------------------------------------------------
# Output


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(row) for row in rows)
    return "\n".join(out)


def format_number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
