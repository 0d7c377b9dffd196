"""Helpers for ``bench_shamir.py``, and its Cicada and MPyC workers.

Only the standard library is imported at module level: ``bench_shamir.py`` imports the helpers
under the interpreter that has ``cicada_async``, and this file also runs as a worker under the
interpreter given by ``--compare-python`` (one with Cicada and MPyC, which need not have
``cicada_async``).  Workers are started by ``bench_shamir.py``; by hand they look like::

    python benchmarks/_shamir_baselines.py cicada '<spec json>'
    python benchmarks/_shamir_baselines.py mpyc '<spec json>' -M3 -T1 -K40 --no-log

The second form is an ordinary MPyC program: with ``-M3`` and no ``-I`` it spawns the other two
parties itself (MPyC's usual local mode); ``bench_shamir.py`` instead starts every party itself
(``-M3 -I i -B <free port>``) so that it can kill them all if a run hangs.

A *spec* is a JSON object::

    {"players": 3, "threshold": 2, "seed": 1, "limit": 25.0, "fast": 0.5,
     "rows": [{"op": "multiply", "size": 1000, "reps": 3, "slow_reps": 1, "probe": false}, ...],
     "history": {"multiply": [[30, 0.62]], ...}}

Every worker runs the rows in order in one world and reports, for each row, the seconds of each
timed repetition measured on rank 0 (after a barrier, around the operations only), whether the
result was correct, or why the row was skipped.  Decisions (skip, how many repetitions) are
taken by :class:`Planner` from rank 0's figures, broadcast to every player, so all players agree.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from typing import Any

RESULT_MARKER = "BENCH-SHAMIR-RESULT "
SKIPPED_COMPARE = "skipped (install the compare extra)"

OPS = ("share_reveal", "field_multiply", "multiply")
OP_TITLES = {
    "share_reveal": "share + reveal",
    "field_multiply": "field multiply",
    "multiply": "fixed-point multiply",
}
PRECISION = 16  # fractional bits of every fixed-point encoding compared here
MPYC_BIT_LENGTH = 64  # SecFxp(l=64, f=16)
MPYC_SEC_PARAM = 40  # -K40: the same 40-bit statistical security as cicada_async's truncation
MERSENNE_127 = 2**127 - 1
MIN_BASE = 10  # smallest size extrapolated from
SMALL_SIZE = 1000  # rows up to this many values get SMALL_WARMUPS warm-up calls
SMALL_WARMUPS = 3


# ---------------------------------------------------------------------------------------------
# Statistics and planning (shared by every contender)


def median(values: list[float]) -> float:
    return statistics.median(values)


def predict(history: dict[str, list[list[float]]], op: str, size: int) -> tuple[float, int, float] | None:
    """Seconds per repetition of ``op`` at ``size`` values, extrapolated linearly from the largest
    size measured so far that is not larger; returns (predicted, base size, base seconds).

    Linear extrapolation overestimates when a fixed cost dominates, so sizes below
    ``MIN_BASE`` (latency-bound) are not extrapolated from, only reused for the same size."""
    points = [(int(s), float(t)) for s, t in history.get(op, [])
              if int(s) == size or MIN_BASE <= int(s) <= size]
    if not points:
        return None
    base_size, base_seconds = max(points)
    return base_seconds * size / max(base_size, 1), base_size, base_seconds


def skip_note(base_size: int, base_seconds: float, predicted: float) -> str:
    return (f"skipped (too slow: ~{seconds_text(base_seconds)} measured at {size_text(base_size)} values, "
            f"~{seconds_text(predicted)} per repetition extrapolated)")


def seconds_text(seconds: float) -> str:
    if seconds >= 10:
        return f"{seconds:.0f} s"
    if seconds >= 1:
        return f"{seconds:.1f} s"
    return f"{seconds:.2f} s"


def size_text(size: int) -> str:
    if size >= 1000 and math.log10(size).is_integer():
        return f"1e{int(math.log10(size))}"
    return str(size)


class Planner:
    """Runs a spec's rows: decides, from what was measured so far (rank 0's figures), whether to
    skip a row (predicted above ``limit`` seconds per repetition) and how many repetitions to
    time (``reps`` after warm-up calls when predicted at most ``fast`` seconds, else
    ``slow_reps`` without warm-up; probes: one repetition).  Warm-up: ``SMALL_WARMUPS`` calls
    for rows of at most ``SMALL_SIZE`` values (latency-bound, so they need the caches, the
    allocator and the connections warm), else one."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.limit = float(spec["limit"])
        self.fast = float(spec["fast"])
        self.history: dict[str, list[list[float]]] = {
            op: [list(point) for point in points] for op, points in spec.get("history", {}).items()}
        self.results: list[dict[str, Any]] = []

    def decide(self, row: dict[str, Any]) -> dict[str, Any]:
        guess = predict(self.history, row["op"], row["size"])
        predicted = None if guess is None else guess[0]
        if guess is not None and predicted > self.limit:
            return {"run": False, "predicted": predicted, "note": skip_note(guess[1], guess[2], predicted)}
        if row.get("probe"):
            return {"run": True, "reps": 1, "warmup": 0, "predicted": predicted}
        if predicted is None or predicted <= self.fast:
            warmup = SMALL_WARMUPS if row["size"] <= SMALL_SIZE else 1
            return {"run": True, "reps": int(row["reps"]), "warmup": warmup, "predicted": predicted}
        return {"run": True, "reps": int(row.get("slow_reps", 1)), "warmup": 0, "predicted": predicted}

    def skipped(self, row: dict[str, Any], decision: dict[str, Any]) -> None:
        self.results.append({**row, "times": [], "skipped": decision["note"],
                             "predicted": decision["predicted"], "check": None})

    def record(self, row: dict[str, Any], times: list[float], check: dict[str, Any]) -> None:
        """``times`` and ``check`` must be rank 0's (broadcast), so every player agrees."""
        self.history.setdefault(row["op"], []).append([row["size"], median(times)])
        self.results.append({**row, "times": times, "skipped": None, "check": check})


def emit_result(result: Any) -> None:
    sys.stdout.write(RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()


def parse_result(stdout: str) -> Any:
    for line in stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    return None


# ---------------------------------------------------------------------------------------------
# Inputs and checks (numpy is imported lazily: it is present in every interpreter used)


def fixed_inputs(size: int, seed: int, which: int) -> Any:
    """Reals in [-1000, 1000] on the 2**-16 grid, so every encoding represents them exactly."""
    import numpy

    generator = numpy.random.default_rng([seed, size, which])
    return numpy.round(generator.uniform(-1000.0, 1000.0, size) * 2.0**PRECISION) / 2.0**PRECISION


def field_inputs(size: int, seed: int, which: int) -> Any:
    """Integers in [0, 2**31): their products fit int64 and every field used here."""
    import numpy

    generator = numpy.random.default_rng([seed, size, 10 + which])
    return generator.integers(0, 2**31, size, dtype=numpy.int64)


def check_equal(revealed: Any, expected: Any) -> dict[str, Any]:
    import numpy

    revealed = numpy.asarray(revealed, dtype=float)
    if revealed.shape != expected.shape:
        return {"ok": False, "detail": f"shape {revealed.shape} != {expected.shape}"}
    wrong = int(numpy.count_nonzero(revealed != expected))
    return {"ok": wrong == 0, "detail": f"{wrong} of {expected.size} values differ" if wrong else "exact"}


def check_field_product(revealed: Any, lhs: Any, rhs: Any) -> dict[str, Any]:
    import numpy

    got = [int(v) for v in numpy.asarray(revealed, dtype=object).reshape(-1)]
    want = [int(a) * int(b) for a, b in zip(lhs.tolist(), rhs.tolist(), strict=True)]
    wrong = sum(1 for a, b in zip(got, want, strict=True) if a != b)
    return {"ok": wrong == 0 and len(got) == len(want),
            "detail": f"{wrong} of {len(want)} products differ" if wrong else "exact"}


def check_close(revealed: Any, expected: Any, tolerance: float) -> dict[str, Any]:
    import numpy

    error = float(numpy.max(numpy.abs(numpy.asarray(revealed, dtype=float) - expected))) if expected.size else 0.0
    ulps = error * 2.0**PRECISION
    return {"ok": error <= tolerance, "detail": f"max error {ulps:.2f} ulp (tolerance {tolerance * 2**PRECISION:.1f})",
            "ulp": ulps}


def product_tolerance(threshold: int) -> float:
    """cicada_async's bound (threshold // 2 + 1 ulp off the rounded product) plus the rounding."""
    return (threshold // 2 + 1.5) * 2.0**-PRECISION


# ---------------------------------------------------------------------------------------------
# Cicada (synchronous) worker


def _cicada_player(communicator: Any, spec: dict[str, Any]) -> Any:
    from cicada.encoding import Identity
    from cicada.shamir import ShamirProtocolSuite

    rank = communicator.rank
    threshold = int(spec["threshold"])
    seed = int(spec["seed"])
    suite = ShamirProtocolSuite(communicator, threshold=threshold)
    planner = Planner(spec)
    for row in spec["rows"]:
        decision = planner.decide(row)
        if not decision["run"]:
            planner.skipped(row, decision)
            continue
        op, n = row["op"], int(row["size"])
        if op == "share_reveal":
            x = fixed_inputs(n, seed, 0)

            def run(x: Any = x, n: int = n) -> Any:
                share = suite.share(src=0, secret=x if rank == 0 else None, shape=(n,))
                return suite.reveal(share)

            def verify(out: Any, x: Any = x) -> dict[str, Any]:
                return check_equal(out, x)
        elif op == "field_multiply":
            xa, xb = field_inputs(n, seed, 0), field_inputs(n, seed, 1)
            a = suite.share(src=0, secret=xa if rank == 0 else None, shape=(n,), encoding=Identity())
            b = suite.share(src=0, secret=xb if rank == 0 else None, shape=(n,), encoding=Identity())

            def run(a: Any = a, b: Any = b) -> Any:
                return suite.field_multiply(a, b)

            def verify(out: Any, xa: Any = xa, xb: Any = xb) -> dict[str, Any]:
                return check_field_product(suite.reveal(out, encoding=Identity()), xa, xb)
        else:
            xa, xb = fixed_inputs(n, seed, 0), fixed_inputs(n, seed, 1)
            a = suite.share(src=0, secret=xa if rank == 0 else None, shape=(n,))
            b = suite.share(src=0, secret=xb if rank == 0 else None, shape=(n,))

            def run(a: Any = a, b: Any = b) -> Any:
                return suite.multiply(a, b)

            def verify(out: Any, xa: Any = xa, xb: Any = xb) -> dict[str, Any]:
                return check_close(suite.reveal(out), xa * xb, product_tolerance(threshold))
        for _ in range(decision["warmup"]):
            run()
        times = []
        out = None
        for _ in range(decision["reps"]):
            communicator.barrier()
            start = time.perf_counter()
            out = run()
            times.append(time.perf_counter() - start)
        check = verify(out)
        times, check = communicator.broadcast(src=0, value=(times, check))
        planner.record(row, times, check)
    return {"rows": planner.results} if rank == 0 else None


def cicada_worker(spec: dict[str, Any]) -> None:
    from cicada.communicator import SocketCommunicator

    results = SocketCommunicator.run(world_size=int(spec["players"]), fn=_cicada_player, args=(spec,),
                                     timeout=float(spec.get("timeout", 600)))
    result = results[0]
    if not isinstance(result, dict):
        raise SystemExit(f"Cicada rank 0 failed: {result!r}; all: {results!r}")
    result["env"] = {"loop": "blocking sockets (Cicada)"}
    emit_result(result)


# ---------------------------------------------------------------------------------------------
# MPyC worker: an MPyC program (run with -M<players>)


def mpyc_worker(spec: dict[str, Any]) -> None:
    import numpy
    from mpyc.runtime import mpc

    seed = int(spec["seed"])
    threshold = int(spec["threshold"])
    secfxp = mpc.SecFxp(l=MPYC_BIT_LENGTH, f=PRECISION)
    secfld = mpc.SecFld(MERSENNE_127)
    pid = mpc.pid

    async def barrier() -> None:
        await mpc.barrier()  # local: lets pending work finish
        await mpc.transfer(None)  # an all-to-all exchange: every party has arrived

    def fixed_input(x: Any, n: int) -> Any:
        value = x if pid == 0 else None
        return mpc.input(secfxp.array(value, shape=(n,), integral=False), senders=0)

    def field_input(x: Any, n: int) -> Any:
        return mpc.input(secfld.array(x if pid == 0 else None, shape=(n,)), senders=0)

    async def main() -> None:
        await mpc.start()
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
                    return await mpc.output(fixed_input(x, n))

                async def verify(out: Any, x: Any = x) -> dict[str, Any]:
                    return check_equal(out, x)
            elif op == "field_multiply":
                xa, xb = field_inputs(n, seed, 0), field_inputs(n, seed, 1)
                a, b = field_input(xa, n), field_input(xb, n)
                await mpc.gather(a, b)

                async def run(a: Any = a, b: Any = b) -> Any:
                    c = a * b  # elementwise product and degree reduction (a reshare)
                    await mpc.gather(c)  # this party's share of the product is ready
                    return c

                async def verify(out: Any, xa: Any = xa, xb: Any = xb) -> dict[str, Any]:
                    revealed = await mpc.output(out)
                    return check_field_product(numpy.asarray(revealed.value, dtype=object), xa, xb)
            else:
                xa, xb = fixed_inputs(n, seed, 0), fixed_inputs(n, seed, 1)
                a, b = fixed_input(xa, n), fixed_input(xb, n)
                await mpc.gather(a, b)

                async def run(a: Any = a, b: Any = b) -> Any:
                    c = a * b  # product, degree reduction, then probabilistic truncation
                    await mpc.gather(c)
                    return c

                async def verify(out: Any, xa: Any = xa, xb: Any = xb) -> dict[str, Any]:
                    return check_close(await mpc.output(out), xa * xb, product_tolerance(threshold))
            for _ in range(decision["warmup"]):
                await run()
            times = []
            out = None
            for _ in range(decision["reps"]):
                await barrier()
                start = time.perf_counter()
                out = await run()
                times.append(time.perf_counter() - start)
            check = await verify(out)
            times, check = await mpc.transfer((times, check), senders=0)
            planner.record(row, times, check)
        await mpc.shutdown()
        if pid == 0:
            loop = type(mpc._loop)
            emit_result({"rows": planner.results, "env": {
                "loop": f"{loop.__module__}.{loop.__qualname__}", "threshold_degree": mpc.threshold,
                "fxp_prime_bits": secfxp.field.order.bit_length(), "sec_param": mpc.options.sec_param}})

    mpc.run(main())


# ---------------------------------------------------------------------------------------------
# Per-operation latency (bench_ops.py): Cicada and MPyC workers for scalar operations
#
# bench_ops.py runs these under the --compare-python interpreter as
#     python benchmarks/bench_ops.py --worker '{"contender": "cicada", ...}'
#     python benchmarks/bench_ops.py --mpyc-party '{"contender": "mpyc", ...}' -M3 -I<i> -T1 -B<port> --no-log
# (one process per MPyC party); each returns a list of per-player results (MPyC: its own party's
# only), which bench_ops.py prints for the parent.  Every player checks its own results and lists
# what was wrong under "errors".

OPS_LHS, OPS_RHS = 40503, 52433  # scalar operands of every field multiply: 1,000 products fit 64 bits
OPS_SECRET = 1.5  # shared and revealed by cicada_async and Cicada (fixed point, 16 fractional bits)
OPS_MPYC_SECRET = 98304  # MPyC shares a secint: 1.5 * 2**16, the field element cicada_async's encoding shares
OPS_MPYC_BITS = 64  # mpc.SecInt(64)
OPS_PROBE_UNTIMED, OPS_PROBE_CALLS = 2, 10  # calls run, then timed, to plan a baseline's calls (Cicada)
OPS_MIN_CALLS = 10


def ops_round_down(count: float) -> int:
    """The largest 1, 2 or 5 times a power of ten that is at most ``count`` (at least 1)."""
    if count < 1:
        return 1
    power = 10 ** math.floor(math.log10(count))
    return max(step * power for step in (1, 2, 5) if step * power <= count)


def ops_plan(estimate: float, spec: dict[str, Any]) -> dict[str, int]:
    """Calls per repetition and warm-up calls, given seconds per call measured on rank 0.

    ``spec["calls"]`` and ``spec["warmup"]``, unless ``spec["budget"]`` (seconds per repetition)
    is given and too small: then fewer calls (a round number, at least ``OPS_MIN_CALLS``) and a
    warm-up of a quarter of them, so that a slow baseline still gets several repetitions."""
    calls, warmup = int(spec["calls"]), int(spec["warmup"])
    budget = spec.get("budget")
    if budget is not None and estimate * calls > float(budget):
        calls = max(OPS_MIN_CALLS, min(calls, ops_round_down(float(budget) / max(estimate, 1e-9))))
        warmup = min(warmup, calls // 4)
    return {"calls": calls, "warmup": max(0, warmup - OPS_PROBE_UNTIMED - OPS_PROBE_CALLS)}


def ops_check_values(values: list[Any], expected: Any, what: str) -> list[str]:
    """Error messages (empty when right) for revealed ``values`` that should all equal ``expected``."""
    wrong = [value for value in values if value != expected]
    if not wrong:
        return []
    return [f"{what}: {len(wrong)} of {len(values)} values wrong (expected {expected!r}, got e.g. {wrong[0]!r})"]


def ops_new_result(rank: int, loop: str) -> dict[str, Any]:
    return {"rank": rank, "env": {"loop": loop}, "errors": [], "calls": {},
            "seq": [], "seq_cpu": [], "gather_multiply": [], "gather_reveal": [], "gather_total": [],
            "share_reveal": []}


def _ops_cicada_player(communicator: Any, spec: dict[str, Any]) -> Any:
    import functools

    import numpy
    from cicada.encoding import Identity
    from cicada.shamir import ShamirProtocolSuite

    rank = communicator.rank
    suite = ShamirProtocolSuite(communicator, threshold=int(spec["threshold"]))
    identity = Identity()
    lhs = suite.share(src=0, secret=numpy.array(OPS_LHS) if rank == 0 else None, shape=(), encoding=identity)
    rhs = suite.share(src=0, secret=numpy.array(OPS_RHS) if rank == 0 else None, shape=(), encoding=identity)
    secret = numpy.array(OPS_SECRET)
    result = ops_new_result(rank, "blocking sockets and reader threads (Cicada)")

    def multiply() -> Any:
        return suite.field_multiply(lhs, rhs)

    def share_reveal() -> Any:
        return suite.reveal(suite.share(src=0, secret=secret if rank == 0 else None, shape=()))

    workloads = {"seq": multiply, "share_reveal": share_reveal}
    for name, call in workloads.items():
        for _ in range(OPS_PROBE_UNTIMED):
            call()
        start = time.perf_counter()
        for _ in range(OPS_PROBE_CALLS):
            call()
        estimate = communicator.broadcast(src=0, value=(time.perf_counter() - start) / OPS_PROBE_CALLS)
        plan = ops_plan(estimate, spec)
        result["calls"][name] = plan["calls"]
        for _ in range(plan["warmup"]):
            call()
    for _ in range(int(spec["reps"])):
        count = result["calls"]["seq"]
        communicator.allgather(None)  # everyone starts together (not barrier(), see bench_comm.py)
        start, cpu = time.perf_counter(), time.process_time()
        products = [multiply() for _ in range(count)]
        result["seq"].append((time.perf_counter() - start) / count)
        result["seq_cpu"].append((time.process_time() - cpu) / count)
        total = functools.reduce(suite.field_add, products)
        revealed = [int(value) for value in (suite.reveal(total, encoding=identity),
                                             suite.reveal(products[-1], encoding=identity))]
        result["errors"] += ops_check_values(revealed[:1], count * OPS_LHS * OPS_RHS, "sum of sequential products")
        result["errors"] += ops_check_values(revealed[1:], OPS_LHS * OPS_RHS, "last sequential product")

        count = result["calls"]["share_reveal"]
        communicator.allgather(None)
        start = time.perf_counter()
        values = [share_reveal() for _ in range(count)]
        result["share_reveal"].append((time.perf_counter() - start) / count)
        result["errors"] += ops_check_values([float(value) for value in values], OPS_SECRET, "share + reveal")
    return result


def ops_cicada_worker(spec: dict[str, Any]) -> list[Any]:
    from cicada.communicator import SocketCommunicator

    return SocketCommunicator.run(world_size=int(spec["players"]), fn=_ops_cicada_player, args=(spec,),
                                  timeout=float(spec.get("timeout", 120)))


def ops_mpyc_worker(spec: dict[str, Any]) -> list[Any]:
    """One MPyC party (started with -M<players> -I<i>); returns [its result]."""
    from mpyc.runtime import mpc

    secint = mpc.SecInt(OPS_MPYC_BITS)
    pid = mpc.pid
    calls, gathered = int(spec["calls"]), int(spec["gather"])
    product = OPS_LHS * OPS_RHS

    async def sync() -> None:
        await mpc.barrier()  # local: lets pending work finish
        await mpc.transfer(None)  # an all-to-all exchange: every party has arrived

    def share(value: int) -> Any:
        return mpc.input(secint(value if pid == 0 else None), senders=0)

    async def share_reveal() -> Any:
        return await mpc.output(share(OPS_MPYC_SECRET))

    async def main() -> dict[str, Any]:
        await mpc.start()
        loop = type(mpc._loop)
        result = ops_new_result(pid, f"{loop.__module__}.{loop.__qualname__}")
        result["calls"] = {"seq": calls, "share_reveal": calls}
        lhs, rhs = share(OPS_LHS), share(OPS_RHS)
        await mpc.gather(lhs, rhs)

        async def multiply() -> Any:
            z = lhs * rhs  # local product, then degree reduction (a reshare): one round
            await mpc.gather(z)  # this party's share of the product is ready
            return z

        for _ in range(int(spec["warmup"])):
            await multiply()
        warm = [lhs * rhs for _ in range(int(spec["gather_warmup"]))]
        await mpc.gather(warm)
        result["errors"] += ops_check_values(list(await mpc.output(warm)), product, "warm-up gather")
        for _ in range(int(spec["warmup"])):
            await share_reveal()
        for _ in range(int(spec["reps"])):
            await sync()
            start, cpu = time.perf_counter(), time.process_time()
            products = [await multiply() for _ in range(calls)]
            result["seq"].append((time.perf_counter() - start) / calls)
            result["seq_cpu"].append((time.process_time() - cpu) / calls)
            revealed = await mpc.output([mpc.sum(products), products[-1]])
            result["errors"] += ops_check_values(revealed[:1], calls * product, "sum of sequential products")
            result["errors"] += ops_check_values(revealed[1:], product, "last sequential product")

            await sync()
            start = time.perf_counter()
            products = [lhs * rhs for _ in range(gathered)]
            await mpc.gather(products)
            middle = time.perf_counter()
            values = await mpc.output(products)
            end = time.perf_counter()
            result["gather_multiply"].append(middle - start)
            result["gather_reveal"].append(end - middle)
            result["gather_total"].append(end - start)
            result["errors"] += ops_check_values(list(values), product, "gathered products")

            await sync()
            start = time.perf_counter()
            values = [await share_reveal() for _ in range(calls)]
            result["share_reveal"].append((time.perf_counter() - start) / calls)
            result["errors"] += ops_check_values(values, OPS_MPYC_SECRET, "share + reveal")
        await mpc.shutdown()
        return result

    return [mpc.run(main())]


def main() -> None:
    mode, spec = sys.argv[1], json.loads(sys.argv[2])
    if mode == "cicada":
        cicada_worker(spec)
    elif mode == "mpyc":
        mpyc_worker(spec)
    else:
        raise SystemExit(f"unknown worker mode {mode!r}")


if __name__ == "__main__":
    main()
