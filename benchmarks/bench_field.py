"""Micro-benchmark of the default field (MersenneField, p = 2**127 - 1) and FixedPoint.

    python benchmarks/bench_field.py             # 1e3, 1e5 and 1e6 elements, ~15 s
    python benchmarks/bench_field.py --quick     # fewer repetitions, ~5 s

Prints a markdown table of milliseconds per operation: the best of several repetitions timed
with time.perf_counter (the minimum is the least noisy estimate on a shared machine), after one
warm-up call.  The last column compares the 1e5-element figure with its target.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cicada_async.arithmetic import MersenneField
from cicada_async.encoding import FixedPoint

SIZES = (1_000, 100_000, 1_000_000)
TARGET_SIZE = 100_000
# Targets in ms for 1e5 elements (None: no target).
TARGETS = {
    "add": 1.0,
    "multiply": 6.0,
    "uniform": 4.0,
    "polynomial_shares (degree 1, 3 points)": 6.0,
    "recombine (3 shares)": 12.0,
    "sum": 3.0,
    "dot (vectors)": None,
    "FixedPoint encode": None,
    "FixedPoint decode": None,
}


def best_ms(function: Callable[[], object], repeat: int, budget: float) -> float:
    """Best time of ``repeat`` calls (fewer when they exceed ``budget`` seconds; at least 3)."""
    function()  # warm-up: scratch buffers, page faults of the first allocations
    best = float("inf")
    spent = 0.0
    for i in range(repeat):
        start = time.perf_counter()
        function()
        elapsed = time.perf_counter() - start
        best = min(best, elapsed)
        spent += elapsed
        if i >= 2 and spent > budget:
            break
    return best * 1e3


def workloads(n: int) -> dict[str, Callable[[], object]]:
    field = MersenneField()
    rng = np.random.default_rng(n)
    a = field.uniform(n, generator=rng)
    b = field.uniform(n, generator=rng)
    xs = [1, 2, 3]
    shares = field.polynomial_shares(a, 1, xs)
    coefficients = field.lagrange_coefficients(xs)
    encoding = FixedPoint()
    reals = rng.normal(scale=1000.0, size=n)
    encoded = encoding.encode(reals, field)
    return {
        "add": lambda: field.add(a, b),
        "multiply": lambda: field.multiply(a, b),
        "uniform": lambda: field.uniform(n),
        "polynomial_shares (degree 1, 3 points)": lambda: field.polynomial_shares(a, 1, xs),
        "recombine (3 shares)": lambda: field.recombine(shares, coefficients),
        "sum": lambda: field.sum(a),
        "dot (vectors)": lambda: field.dot(a, b),
        "FixedPoint encode": lambda: encoding.encode(reals, field),
        "FixedPoint decode": lambda: encoding.decode(encoded, field),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="array sizes")
    args = parser.parse_args()
    repeat, budget = (5, 0.1) if args.quick else (20, 0.5)

    print(
        f"MersenneField (p = 2**127 - 1): ms per operation, best of up to {repeat} runs. "
        f"Python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} cores, "
        f"{platform.machine()}."
    )
    print()
    sizes = args.sizes
    header = ["operation", *(f"{n:.0e}".replace("e+0", "e") for n in sizes)]
    if TARGET_SIZE in sizes:
        header.append("target at 1e5")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    results: dict[str, list[float]] = {name: [] for name in TARGETS}
    for n in sizes:
        for name, function in workloads(n).items():
            results[name].append(best_ms(function, repeat, budget))
            print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    for name, times in results.items():
        row = [name, *(f"{t:.3f}" for t in times)]
        if TARGET_SIZE in sizes:
            target = TARGETS[name]
            measured = times[sizes.index(TARGET_SIZE)]
            verdict = "met" if target is not None and measured < target else "MISSED"
            row.append("-" if target is None else f"< {target:g} ({verdict})")
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
