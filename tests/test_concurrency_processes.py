"""Concurrent operations with real player processes, real sockets and a real SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal

import numpy
import pytest

import cicada_async
from cicada_async import AsyncSocketCommunicator, ConcurrencyError, PeerFailed, Revoked, Terminated
from cicada_async.shamir import ShamirProtocolSuite

pytestmark = pytest.mark.processes


async def shares_of(protocol: ShamirProtocolSuite, count: int) -> tuple[list, list]:
    comm = protocol.communicator
    xs = await asyncio.gather(*(protocol.share(src=0, secret=numpy.array(float(i)) if comm.rank == 0 else None,
                                               shape=()) for i in range(count)))
    ys = await asyncio.gather(*(protocol.share(src=1, secret=numpy.array(2.0) if comm.rank == 1 else None,
                                               shape=()) for i in range(count)))
    return list(xs), list(ys)


def test_the_issue_programs_compute_the_right_values():
    """The programs of the issue: 50 multiply-then-reveal coroutines gathered (decorated, and
    undecorated: a ConcurrencyError, not a wrong value), and 500 multiplications gathered."""

    async def main(comm):
        protocol = ShamirProtocolSuite(comm, threshold=2)
        xs, ys = await shares_of(protocol, 50)

        async def undecorated(i):
            return await protocol.reveal(await protocol.multiply(xs[i], ys[i]))

        refused = await asyncio.gather(*(undecorated(i) for i in range(50)), return_exceptions=True)

        @cicada_async.operation
        async def one(i):
            return await protocol.reveal(await protocol.multiply(xs[i], ys[i]))

        first = await asyncio.gather(*(one(i) for i in range(50)))
        products = await asyncio.gather(*(protocol.multiply(x, y) for x, y in zip(xs * 10, ys * 10, strict=True)))
        second = await asyncio.gather(*(protocol.reveal(z) for z in products))
        wrong = sum(abs(float(v) - 2 * i) > 1e-3 for i, v in enumerate(first))
        wrong += sum(abs(float(v) - 2 * (i % 50)) > 1e-3 for i, v in enumerate(second))
        return wrong, all(isinstance(r, ConcurrencyError) for r in refused)

    assert AsyncSocketCommunicator.run(world_size=3, fn=main) == [(0, True)] * 3


def test_survivors_of_a_sigkill_in_the_middle_of_a_gather_shrink_and_go_on_concurrently():
    async def main(comm):
        protocol = ShamirProtocolSuite(comm, threshold=2)
        xs, ys = await shares_of(protocol, 40)
        if comm.rank == 3:
            asyncio.get_running_loop().call_later(0.003, os.kill, os.getpid(), signal.SIGKILL)
        outcomes = await asyncio.gather(*(protocol.multiply(x, y) for x, y in zip(xs, ys, strict=True)),
                                        return_exceptions=True)
        if any(isinstance(outcome, PeerFailed | Revoked) for outcome in outcomes):
            await comm.revoke()
        new, oldranks = await comm.shrink(name="survivors")
        after = ShamirProtocolSuite(new, threshold=2, indices=protocol.indices[oldranks])
        products = await asyncio.gather(*(after.multiply(x, y) for x, y in zip(xs, ys, strict=True)))
        revealed = await asyncio.gather(*(after.reveal(z) for z in products))
        await asyncio.sleep(3600) if comm.rank == 3 else None  # (killed before it gets here)
        return oldranks, [round(float(v), 3) for v in revealed]

    results = AsyncSocketCommunicator.run(world_size=4, fn=main, timeout=2)
    assert results[3] == Terminated(exitcode=-signal.SIGKILL)
    for rank in range(3):
        assert results[rank] == ([0, 1, 2], [2.0 * i for i in range(40)])
