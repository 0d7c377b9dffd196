"""The communicator in one event loop: every pattern, deadlines, failures, bad peers."""

from __future__ import annotations

import asyncio
import logging
import struct
import time

import numpy
import pytest

from cicada_async import (
    CommunicatorError,
    NotRunning,
    PeerFailed,
    RemoteProtocolError,
    Revoked,
    Tag,
    Timeout,
)
from cicada_async._core.framing import Kind, encode_header, header
from cicada_async._transport import Limits
from cicada_async.testing import World

VALUES = [
    numpy.arange(6, dtype=numpy.int64).reshape(2, 3),
    numpy.linspace(-1, 1, 5, dtype=numpy.float32),
    numpy.array(3.5),
    numpy.zeros((0, 4), dtype=numpy.uint8),
    numpy.array([True, False]),
    numpy.arange(40000, dtype=numpy.float64),  # large enough to go zero-copy
]


def same(a, b) -> bool:
    if isinstance(a, numpy.ndarray):
        return isinstance(b, numpy.ndarray) and a.dtype == b.dtype and a.shape == b.shape and bool(
            numpy.array_equal(a, b))
    return a == b


def value_for(rank: int, index: int):
    base = VALUES[index % len(VALUES)]
    return base + rank if base.dtype != numpy.bool_ else base ^ bool(rank % 2)


@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 5])
async def test_every_collective(world_size):
    async with World(world_size) as world:
        async def player(comm):
            n, me = comm.world_size, comm.rank
            for index in range(len(VALUES)):
                gathered = await comm.allgather(value_for(me, index))
                assert all(same(gathered[r], value_for(r, index)) for r in range(n))
                for root in range(n):
                    got = await comm.broadcast(src=root, value=value_for(me, index) if me == root else None)
                    assert same(got, value_for(root, index))
                    got = await comm.gather(value=value_for(me, index), dst=root)
                    if me == root:
                        assert all(same(got[r], value_for(r, index)) for r in range(n))
                    else:
                        assert got is None
                    values = [value_for(r, index) for r in range(n)] if me == root else None
                    assert same(await comm.scatter(src=root, values=values), value_for(me, index))
                    senders = list(range(n))[::-2]
                    got = await comm.gatherv(src=senders, value=value_for(me, index), dst=root)
                    if me == root:
                        assert [same(g, value_for(s, index)) for g, s in zip(got, senders, strict=True)]
                        assert all(same(g, value_for(s, index)) for g, s in zip(got, senders, strict=True))
                    receivers = list(range(0, n, 2))
                    values = [value_for(r, index) for r in receivers] if me == root else None
                    got = await comm.scatterv(src=root, values=values, dst=receivers)
                    assert same(got, value_for(me, index)) if me in receivers else got is None
                await comm.barrier()
            return True

        assert await world.run(player) == [True] * world_size


@pytest.mark.both_loops
@pytest.mark.parametrize("family", ["socketpair", "tcp", "file"])
async def test_collectives_over_each_family(family):
    async with World(3, family=family) as world:
        async def player(comm):
            values = await comm.allgather({"rank": comm.rank, "data": numpy.full(3, comm.rank)})
            total = sum(v["data"] for v in values)
            root = await comm.broadcast(src=2, value=numpy.arange(100000.0) if comm.rank == 2 else None)
            await comm.barrier()
            return total.tolist(), float(root.sum())

        assert await world.run(player) == [([3, 3, 3], 4999950000.0)] * 3


async def test_tags_received_out_of_order_and_isend_irecv():
    async with World(2) as world:
        async def player(comm):
            if comm.rank == 0:
                for tag in range(5):
                    await comm.send(value=f"t{tag}", dst=1, tag=tag)
                tasks = [comm.isend(value=i, dst=1, tag=9) for i in range(3)]
                await asyncio.gather(*tasks)
                return None
            got = [await comm.recv(src=0, tag=tag) for tag in (4, 2, 0, 3, 1)]
            receives = [comm.irecv(src=0, tag=9) for _ in range(3)]
            return got, await asyncio.gather(*receives)

        _, (got, ordered) = await world.run(player)
        assert got == ["t4", "t2", "t0", "t3", "t1"]
        assert ordered == [0, 1, 2]


async def test_send_to_self_and_self_collectives():
    async with World(1) as world:
        comm = world.comms[0]
        await comm.send(value=[1, (2,)], dst=0, tag=3)
        assert await comm.recv(src=0, tag=3) == [1, (2,)]
        assert await comm.allgather(7) == [7]
        await comm.barrier()
        assert await comm.scatter(src=0, values=["x"]) == "x"


async def test_deadline_message_and_type():
    async with World(4) as world:
        comm = world.comms[0]
        start = time.monotonic()
        with comm.override(timeout=0.2), pytest.raises(Timeout) as info:
            await comm.gatherv(src=[3], value=None, dst=0)
        elapsed = time.monotonic() - start
        assert 0.19 <= elapsed < 1.0
        assert "Tag GATHERV from player 3 timed-out after 0.2s" in str(info.value)
        assert str(info.value).startswith("Comm world player 0")
        assert isinstance(info.value, TimeoutError) and isinstance(info.value, CommunicatorError)
        assert comm.timeout == 5  # override restored
        comm.timeout = 1
        with pytest.raises(Timeout, match="Tag 7 from player 1 timed-out after 1s"):
            await comm.recv(src=1, tag=7)


async def test_a_timeout_does_not_fail_the_peer():
    async with World(2, timeout=0.1) as world:
        a, b = world.comms
        with pytest.raises(Timeout):
            await a.recv(src=1, tag=0)
        await b.send(value="late", dst=0, tag=0)
        assert await a.recv(src=1, tag=0) == "late"


@pytest.mark.both_loops
async def test_callers_own_timeout_and_cancellation_pass_through_and_lose_nothing():
    async with World(2) as world:
        a, b = world.comms
        with pytest.raises(TimeoutError) as info:
            async with asyncio.timeout(0.05):
                await a.recv(src=1, tag=0)
        assert not isinstance(info.value, Timeout)
        task = asyncio.ensure_future(a.recv(src=1, tag=0))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await b.send(value="one", dst=0, tag=0)
        await b.send(value="two", dst=0, tag=0)
        assert await a.recv(src=1, tag=0) == "one"
        assert await a.recv(src=1, tag=0) == "two"


async def test_cancelled_after_the_message_was_handed_over_puts_it_back():
    async with World(2) as world:
        a, b = world.comms
        task = asyncio.ensure_future(a.recv(src=1, tag=0))
        await asyncio.sleep(0)  # the receive is now waiting
        world.stall(0)
        await b.send(value="kept", dst=0, tag=0)
        await asyncio.sleep(0.01)  # the frame has reached player 0's socket, unread
        # In one step, with no chance for the task to run in between: the frame is handed
        # to the waiting receive, then the receiver's caller cancels it.
        world.link(0, 1).read_available()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        world.resume(0)
        assert await a.recv(src=1, tag=0) == "kept"


async def test_killed_peer_is_detected_at_once_after_its_earlier_messages():
    async with World(3, timeout=5) as world:
        a = world.comms[0]
        await world.comms[2].send(value="before", dst=0, tag=1)
        await asyncio.sleep(0.01)
        world.kill(2)
        start = time.monotonic()
        assert await a.recv(src=2, tag=1) == "before"
        with pytest.raises(PeerFailed) as info:
            await a.recv(src=2, tag=1)
        assert info.value.rank == 2
        assert "player 2" in str(info.value)
        # Collectives needing the dead player fail at once too, long before the deadline.
        with pytest.raises(PeerFailed):
            await a.gatherv(src=[0, 2], value=1, dst=0)
        assert time.monotonic() - start < 0.5
        # Sends to the dead player never raise; the root of a scatter finishes.
        await a.send(value=1, dst=2, tag=0)
        assert await a.scatter(src=0, values=[0, 1, 2]) == 0
        assert a.stats["total"]["dropped"]["messages"] >= 2


async def test_pending_receive_fails_when_peer_dies():
    async with World(2, timeout=5) as world:
        a = world.comms[0]
        task = asyncio.ensure_future(a.recv(src=1, tag=0))
        await asyncio.sleep(0.01)
        world.kill(1)
        with pytest.raises(PeerFailed):
            await asyncio.wait_for(task, 1)


async def test_argument_errors_before_anything_is_sent():
    async with World(2) as world:
        a = world.comms[0]
        with pytest.raises(ValueError, match="dst"):
            await a.send(value=1, dst=2, tag=0)
        with pytest.raises(ValueError, match="reserved"):
            await a.send(value=1, dst=1, tag=-100)
        with pytest.raises(ValueError):
            await a.recv(src=-1, tag=0)
        with pytest.raises(ValueError):
            await a.recv(src=1, tag="x")
        with pytest.raises(TypeError, match="cannot travel"):
            await a.send(value=object(), dst=1, tag=0)
        with pytest.raises(TypeError):
            await a.allgather({1: 2})
        with pytest.raises(ValueError, match="values"):
            await a.scatter(src=0, values=[1])
        with pytest.raises(ValueError, match="repeat"):
            await a.gatherv(src=[1, 1], value=1, dst=0)
        with pytest.raises(TypeError):
            await a.scatter(src=0, values=[1, object()])
        with pytest.raises(ValueError, match="timeout"):
            a.timeout = 0
        assert a.stats["total"]["sent"]["messages"] == 0


@pytest.mark.parametrize("tag", [-1, Tag.ALLGATHER, Tag.LOGSYNC, -(2**31), 2**31, 2**40])
async def test_reserved_and_oversized_tags_are_refused(tag):
    """Negative tags are the library's (a user's send(tag=-1) used to shift every later
    allgather on the receiver by one); tags travel as 32-bit integers."""
    async with World(2) as world:
        a, b = world.comms
        what = "reserved" if tag < 0 else "32 bits"
        with pytest.raises(ValueError, match=what):
            await a.send(value=1, dst=1, tag=tag)
        with pytest.raises(ValueError, match=what):
            await b.recv(src=0, tag=tag)
        with pytest.raises(ValueError, match=what):
            a.isend(value=1, dst=1, tag=tag)
        with pytest.raises(ValueError, match=what):
            b.irecv(src=0, tag=tag)
        assert a.stats["total"]["sent"]["messages"] == 0
        assert await asyncio.gather(a.allgather("a"), b.allgather("b")) == [["a", "b"]] * 2
        await a.send(value="largest", dst=1, tag=2**31 - 1)
        assert await b.recv(src=0, tag=2**31 - 1) == "largest"


async def test_stats_count_messages_and_bytes():
    async with World(2) as world:
        async def player(comm):
            await comm.allgather(numpy.zeros(100))
            if comm.rank == 0:
                await comm.send(value=b"x" * 10, dst=1, tag=3)
            else:
                await comm.recv(src=0, tag=3)
            return comm.stats

        s0, s1 = await world.run(player)
        assert s0["tag"]["ALLGATHER"]["sent"]["messages"] == 1
        assert s0["tag"]["ALLGATHER"]["sent"]["bytes"] >= 800
        assert s0["tag"][3]["sent"] == s1["tag"][3]["received"]
        assert s0["player"][1]["sent"]["messages"] == 2
        assert s1["total"]["received"]["messages"] == 2


async def test_free_is_idempotent_and_tells_peers():
    async with World(2) as world:
        a, b = world.comms
        pending = asyncio.ensure_future(b.recv(src=0, tag=0))
        await asyncio.sleep(0)
        await a.free()
        await a.free()
        assert a.freed
        with pytest.raises(NotRunning):
            await a.send(value=1, dst=1, tag=0)
        with pytest.raises(NotRunning):
            await a.barrier()
        start = time.monotonic()
        with pytest.raises(PeerFailed, match="freed"):
            await pending
        assert time.monotonic() - start < 0.5
        waiting = asyncio.ensure_future(b.recv(src=0, tag=1))
        await b.free()
        with pytest.raises(NotRunning):
            await waiting
        # No communicator uses the link any more: it closes.
        await asyncio.wait_for(world.link(0, 1).lost, 2)
        await asyncio.wait_for(world.link(1, 0).lost, 2)


async def test_async_with_frees():
    async with World(2) as world:
        async with world.comms[0] as comm:
            assert not comm.freed
        assert world.comms[0].freed


async def test_split_makes_communicators_over_the_same_links():
    async with World(5) as world:
        async def player(comm):
            name = "even" if comm.rank % 2 == 0 else ("odd" if comm.rank != 3 else None)
            sub = await comm.split(name=name)
            if sub is None:
                return None
            values = await sub.allgather(comm.rank)
            assert sub.endpoint is comm.endpoint
            return sub.name, sub.rank, sub.world_size, values

        results = await world.run(player)
        assert results == [("even", 0, 3, [0, 2, 4]), ("odd", 0, 1, [1]), ("even", 1, 3, [0, 2, 4]), None,
                           ("even", 2, 3, [0, 2, 4])]


async def test_revoke_basic_ordering():
    async with World(3, timeout=2) as world:
        a, b, c = world.comms
        await b.send(value="before", dst=0, tag=0)
        await b.revoke()
        await b.revoke()  # idempotent
        assert b.revoked
        with pytest.raises(Revoked):
            await b.send(value=1, dst=0, tag=0)
        # a still gets what b sent before its marker, then Revoked from b.
        assert await a.recv(src=1, tag=0) == "before"
        with pytest.raises(Revoked):
            await a.recv(src=1, tag=0)
        assert a.revoked and c.revoked  # forwarded
        with pytest.raises(Revoked):
            await c.allgather(1)


async def test_revoke_logs_a_warning(caplog):
    caplog.set_level(logging.WARNING)
    async with World(3) as world:
        await world.comms[0].revoke()
        await asyncio.sleep(0.05)
    messages = [r.getMessage() for r in caplog.records]
    assert "Comm world player 0 revoked by player 0" in messages
    assert {"Comm world player 2 revoked by player 0",
            "Comm world player 2 revoked by player 1"}.intersection(messages)


@pytest.mark.both_loops
async def test_large_arrays_and_the_senders_buffer_is_safe_to_reuse():
    async with World(2) as world:
        a, b = world.comms
        world.stall(1)  # the receiver does not read: the sender's data stays queued
        array = numpy.arange(4 << 20, dtype=numpy.uint8)
        original = array.copy()
        send = asyncio.ensure_future(a.send(value=array, dst=1, tag=0))
        await asyncio.sleep(0.05)
        assert not send.done()  # waits while the OS has not taken the whole array
        world.resume(1)
        await asyncio.wait_for(send, 5)
        array[:] = 0  # the caller may reuse its buffer once send returned
        received = await b.recv(src=0, tag=0)
        numpy.testing.assert_array_equal(received, original)


async def test_send_to_a_stalled_reader_times_out_with_a_clear_error():
    async with World(2, timeout=0.2) as world:
        a = world.comms[0]
        world.stall(1)
        with pytest.raises(Timeout, match="not reading"):
            await a.send(value=numpy.zeros(8 << 20, dtype=numpy.uint8), dst=1, tag=0)


async def test_many_concurrent_messages_keep_order_per_tag():
    async with World(3) as world:
        async def player(comm):
            if comm.rank != 0:
                for i in range(500):
                    await comm.send(value=(comm.rank, i, numpy.full(50, i)), dst=0, tag=comm.rank)
                return None
            out = {1: [], 2: []}
            for i in range(500):
                for src in (2, 1):
                    rank, index, arr = await comm.recv(src=src, tag=src)
                    assert (rank, index) == (src, i) and arr[0] == i
                    out[src].append(index)
            return out

        result = await world.run(player)
        assert result[0] == {1: list(range(500)), 2: list(range(500))}


# -- bad peers ------------------------------------------------------------------------
async def _expect_protocol_error(world, garbage: bytes, match: str):
    a = world.comms[0]
    waiting = asyncio.ensure_future(a.recv(src=1, tag=0))
    await asyncio.sleep(0.01)
    world.link(1, 0).transport.write(garbage)
    with pytest.raises(RemoteProtocolError, match=match) as info:
        await asyncio.wait_for(waiting, 2)
    assert info.value.rank == 1
    assert "player 1" in str(info.value)
    # The player stays up: it still talks to the others.
    await world.comms[2].send(value="still here", dst=0, tag=0)
    return await a.recv(src=2, tag=0)


@pytest.mark.parametrize(
    "garbage, match",
    [
        (b"GET / HTTP/1.1\r\n\r\n" + b"\x00" * 20, "magic"),
        (encode_header(99, 0, 1, 0), "kind"),
        (encode_header(Kind.DATA, 0, 1, 2**40), "exceeds"),
        (encode_header(Kind.HELLO, 1, 0, 0), "unexpected HELLO"),
    ],
)
async def test_garbage_from_a_peer_fails_that_peer_only(garbage, match, caplog):
    caplog.set_level(logging.ERROR)
    async with World(3, family="tcp") as world:
        assert await _expect_protocol_error(world, garbage, match) == "still here"


async def test_invalid_payload_and_unknown_communicator_are_handled():
    async with World(3) as world:
        comm_id = world.comms[0].comm_id
        bad_payload = b"\x63"
        assert await _expect_protocol_error(
            world, encode_header(Kind.DATA, 0, comm_id, len(bad_payload)) + bad_payload, "invalid value"
        ) == "still here"


async def test_truncated_frame_then_close_is_a_failure():
    async with World(2, family="tcp") as world:
        a = world.comms[0]
        waiting = asyncio.ensure_future(a.recv(src=1, tag=0))
        await asyncio.sleep(0.01)
        link = world.link(1, 0)
        link.transport.write(encode_header(Kind.DATA, 0, a.comm_id, 100) + b"abc")
        link.transport.close()
        with pytest.raises(PeerFailed, match="middle of a frame"):
            await asyncio.wait_for(waiting, 2)


async def test_mailbox_limit_fails_a_flooding_peer():
    limits = Limits(max_queued_bytes=100_000)
    async with World(2, limits=limits) as world:
        a, b = world.comms
        for _ in range(5):
            await b.send(value=numpy.zeros(4000), dst=0, tag=5)  # nobody receives tag 5
        with pytest.raises(RemoteProtocolError, match="limit"):
            await a.recv(src=1, tag=6)


async def test_frames_for_a_communicator_not_created_yet_are_held():
    async with World(2) as world:
        a, b = world.comms
        # b makes a split communicator and uses it before a has created its copy.
        task = asyncio.ensure_future(a.split(name="sub"))
        sub_b = await b.split(name="sub")
        await sub_b.send(value="early", dst=0, tag=0)
        sub_a = await task
        assert await sub_a.recv(src=1, tag=0) == "early"


def test_errors_are_picklable():
    import pickle

    for error in [PeerFailed("x", rank=3), RemoteProtocolError("y", rank=1), Timeout("z"), Revoked("r")]:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert getattr(copy, "rank", None) == getattr(error, "rank", None)


def test_header_layout_is_stable():
    assert encode_header(Kind.DATA, -6, 5, 3) == struct.pack("<BBHiQQQ", 0xCA, 1, 0, -6, 5, 0, 3)
    assert header(Kind.DATA, 2, -6, 5, 2**64 - 1, 3) == struct.pack("<BBHiQQQ", 0xCA, 1, 2, -6, 5, 2**64 - 1, 3)


@pytest.mark.both_loops
async def test_a_failed_write_does_not_lose_what_a_dead_peer_sent_before():
    """The loop tears a transport down when a write fails, without reading what is queued;
    the link must still deliver the dead peer's last messages (found by a stress run)."""
    async with World(2, family="tcp") as world:
        a, b = world.comms
        world.stall(0)  # player 0 is not reading for a while
        await b.send(value="last words", dst=0, tag=0)
        world.stall(1)
        await a.send(value=b"x" * 1000, dst=1, tag=0)  # unread by player 1: its death resets the link
        await asyncio.sleep(0.05)
        world.kill(1)
        await asyncio.sleep(0.05)
        for _ in range(3):  # writes to the dead peer fail; the loop drops player 0's transport
            await a.send(value=b"y" * 1000, dst=1, tag=0)
            await asyncio.sleep(0.02)
        assert world.link(0, 1).closed
        assert await a.recv(src=1, tag=0) == "last words"
        with pytest.raises(PeerFailed):
            await a.recv(src=1, tag=0)


@pytest.mark.both_loops
async def test_leaving_a_peer_out_still_delivers_what_reached_this_host_before():
    """Excluding a peer (e.g. on another member's word that it died) must not discard its
    frames that are already in our socket buffer, unread."""
    async with World(3, family="tcp") as world:
        a, b = world.comms[0], world.comms[1]
        world.stall(0)  # player 0 is busy: nothing is read from its sockets for now
        await b.send(value="before", dst=0, tag=4)
        await asyncio.sleep(0.05)
        world.kill(1)
        await asyncio.sleep(0.05)
        a.endpoint.exclude(1)  # what a shrink decision does to a peer left out
        world.resume(0)
        assert await a.recv(src=1, tag=4) == "before"
        with pytest.raises(PeerFailed):
            await a.recv(src=1, tag=4)


async def test_collectives_at_16_players():
    async with World(16) as world:
        async def player(comm):
            values = await comm.allgather(comm.rank)
            root = await comm.broadcast(src=15, value="hi" if comm.rank == 15 else None)
            gathered = await comm.gather(value=comm.rank * 2, dst=7)
            mine = await comm.scatter(src=3, values=list(range(100, 116)) if comm.rank == 3 else None)
            await comm.barrier()
            return values, root, gathered, mine

        results = await world.run(player)
        for rank, (values, root, gathered, mine) in enumerate(results):
            assert values == list(range(16)) and root == "hi" and mine == 100 + rank
            assert gathered == ([2 * r for r in range(16)] if rank == 7 else None)
