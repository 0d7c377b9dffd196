"""TLS against plaintext, side by side: ping-pong, 8 MB one way, and start-up of a 4-player world.

Every run is a fresh subprocess with fresh player processes; the plaintext and TLS runs of one
workload alternate, and each ratio is the median over rounds of (TLS / plaintext) in the same
round.  TLS is TLS 1.3 with the self-signed ECDSA P-256 credentials `cicada-async credentials`
writes (mutual authentication and the rank check included).

    python benchmarks/bench_tls.py [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit_result, format_number, header_lines, markdown_table, run_worker

SCRIPT = os.path.abspath(__file__)


def _credentials(directory: str, players: int) -> tuple[list[str], list[str]] | None:
    from cicada_async import tls

    for rank in range(players):
        if not os.path.exists(os.path.join(directory, f"player-{rank}.pem")):
            tls.write_credentials(rank, directory)
    return ([os.path.join(directory, f"player-{rank}.pem") for rank in range(players)],
            [os.path.join(directory, f"player-{rank}.cert") for rank in range(players)])


def worker(kind: str, use_tls: bool, directory: str, seconds: float) -> list[float]:
    import numpy

    from cicada_async import AsyncSocketCommunicator

    players = 4 if kind == "startup" else 2
    identities, trusted = _credentials(directory, players) if use_tls else (None, None)

    if kind == "startup":
        async def fn(comm):
            await comm.barrier()
            return time.monotonic()

        start = time.monotonic()
        results = AsyncSocketCommunicator.run(world_size=players, fn=fn, identities=identities, trusted=trusted,
                                              startup_timeout=30)
        return [max(results) - start]

    async def fn(comm):
        value = 1 if kind == "pingpong" else numpy.ones(1 << 20)
        block = []

        async def once():
            if kind == "pingpong":
                if comm.rank == 0:
                    await comm.send(value=value, dst=1, tag=0)
                    await comm.recv(src=1, tag=0)
                else:
                    await comm.send(value=await comm.recv(src=0, tag=0), dst=0, tag=0)
            elif comm.rank == 0:
                await comm.send(value=value, dst=1, tag=1)
            else:
                await comm.recv(src=0, tag=1)

        for _ in range(20):
            await once()
        await comm.barrier()
        iterations = 0
        start = time.perf_counter()
        while True:  # rank 0 decides when the block ends; rank 1 follows its count
            await once()
            iterations += 1
            if iterations % 20 == 0:
                done = await comm.broadcast(src=0, value=time.perf_counter() - start > seconds)
                if done:
                    break
        elapsed = time.perf_counter() - start
        await comm.barrier()
        if kind == "pingpong":
            block.append(elapsed / iterations * 1e6)  # µs per round trip
        else:
            block.append(iterations * 8.388608 / elapsed)  # MB/s
        return block

    results = AsyncSocketCommunicator.run(world_size=players, fn=fn, identities=identities, trusted=trusted,
                                          timeout=30)
    return results[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    if options.worker:
        spec = json.loads(options.worker)
        emit_result(worker(**spec))
        return
    rounds = 2 if options.quick else options.rounds
    seconds = 0.3 if options.quick else 1.0
    # The players' private keys live here only while the benchmark runs: removed on any exit.
    with tempfile.TemporaryDirectory(prefix="cicada-bench-tls-") as directory:
        compare(directory, rounds=rounds, seconds=seconds)


def compare(directory: str, *, rounds: int, seconds: float) -> None:
    """Run every workload ``rounds`` times in plaintext and over TLS (credentials in ``directory``)."""
    _credentials(directory, 4)
    print("\n".join(header_lines("cicada_async TLS against plaintext", {
        "method": f"{rounds} rounds; in each, a plaintext run then a TLS run (fresh processes each); "
                  "ratio = median over rounds of TLS / plaintext",
        "TLS": "TLS 1.3 (OpenSSL via the ssl module), self-signed ECDSA P-256, mutual authentication + rank check",
    })))
    print()
    rows = []
    workloads = [("pingpong", "ping-pong, int, 2 players", "µs/round trip", False),
                 ("bulk", "8 MB float64 one way, 2 players", "MB/s", True),
                 ("startup", "start-up of a 4-player world (run() until a first barrier)", "ms", False)]
    for kind, label, unit, higher_is_better in workloads:
        plain, secure, ratios = [], [], []
        for _ in range(rounds):
            a = statistics.median(run_worker(sys.executable, SCRIPT, dict(kind=kind, use_tls=False,
                                                                            directory=directory, seconds=seconds)))
            b = statistics.median(run_worker(sys.executable, SCRIPT, dict(kind=kind, use_tls=True,
                                                                            directory=directory, seconds=seconds)))
            plain.append(a)
            secure.append(b)
            ratios.append(b / a)
        scale = 1000.0 if kind == "startup" else 1.0
        ratio = statistics.median(ratios)
        verdict = (f"TLS is {1 / ratio:.2f}x slower" if higher_is_better and ratio < 1
                   else f"TLS takes {ratio:.2f}x" if not higher_is_better else f"TLS at {ratio:.2f}x")
        rows.append([label, f"{format_number(statistics.median(plain) * scale)} {unit}",
                     f"{format_number(statistics.median(secure) * scale)} {unit}", verdict])
        print(f"  {label}: {rows[-1][1:]}", file=sys.stderr)
    print(markdown_table(["workload", "plaintext", "TLS", "TLS / plaintext (paired)"], rows))


if __name__ == "__main__":
    main()
