"""Strangers during set-up: nothing that has not proved the token may abort, delay or
exhaust a forming world (SPEC "Strangers and hostile peers").  Every test plays the stranger
with raw sockets, sending frames built as a real peer would, and then forms the honest world
beside it."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import tracemalloc

import pytest

from cicada_async import AsyncSocketCommunicator, Timeout, TokenMismatch
from cicada_async._core import handshake
from cicada_async._core.framing import HEADER_SIZE, FrameDecoder, Kind, encode_header
from cicada_async._core.handshake import HelloType
from cicada_async.communicator._links import open_and_join
from cicada_async.communicator.connect import Limits, Timer, direct, listen, parse_address, rendezvous

WORLD = 3


async def listeners_for(n, limits=None):
    return [await listen(address="tcp://127.0.0.1", rank=rank, limits=limits) for rank in range(n)]


def close_all(listeners, endpoints=()):
    for listener in listeners:
        listener.close()
    for endpoint in endpoints:
        if not isinstance(endpoint, BaseException):
            endpoint.abort()


async def check_world(endpoints):
    comms = [AsyncSocketCommunicator(endpoint=e, timeout=3) for e in endpoints]
    assert await asyncio.gather(*(comm.allgather(comm.rank) for comm in comms)) == [list(range(len(comms)))] * len(
        comms)


async def stranger(address, data=b""):
    host, port = parse_address(address)[1]
    reader, writer = await asyncio.open_connection(host, port)
    if data:
        writer.write(data)
        await writer.drain()
    return reader, writer


def join_frame(**changes):
    fields = dict(name="world", world_size=WORLD, rank=1, to=0, token=handshake.token_digest("secret"),
                  address="tcp://127.0.0.1:9")
    fields.update({k: v for k, v in changes.items() if k != "protocol"})
    message = handshake.join_message(**fields)
    if "protocol" in changes:
        message["protocol"] = changes["protocol"]
    return handshake.hello_frame(HelloType.JOIN, message)


async def answer_of(reader):
    """The hello frame a stranger got back: (type, message), or None if the link just closed."""
    decoder = FrameDecoder(max_payload=handshake.MAX_HELLO)
    async with asyncio.timeout(5):
        while True:
            data = await reader.read(65536)
            if not data:
                return None
            frames = decoder.feed(data)
            if frames:
                return frames[0].tag, handshake.parse_hello(frames[0])


STRANGE_JOINS = {
    "wrong world size": dict(world_size=WORLD + 1),
    "wrong name": dict(name="other"),
    "wrong protocol version": dict(protocol=handshake.PROTOCOL_VERSION + 1),
    "guessed token, claiming rank 1": dict(token=handshake.token_digest("guess")),
    "rank out of range": dict(rank=WORLD + 5),
    "malformed": None,
}


@pytest.mark.parametrize("case", list(STRANGE_JOINS))
async def test_a_strangers_join_first_does_not_stop_a_rendezvous(case):
    listeners = await listeners_for(WORLD)
    root = listeners[0].address
    changes = STRANGE_JOINS[case]
    frame = encode_header(Kind.HELLO, HelloType.JOIN, 0, 3) + b"\x63\x00\x00" if changes is None \
        else join_frame(**changes)
    reader, writer = await stranger(root, frame)
    await asyncio.sleep(0.05)  # the stranger's JOIN is handled before anyone honest arrives
    start = time.monotonic()
    endpoints = await asyncio.gather(*(
        rendezvous(listener=listeners[rank], root_address=root, world_size=WORLD, rank=rank, token="secret",
                   timer=Timer(5)) for rank in range(WORLD)))
    elapsed = time.monotonic() - start
    try:
        await check_world(endpoints)
        assert elapsed < 2, f"the world took {elapsed:.2f}s to form beside the stranger"
        answer = await answer_of(reader)
        if changes is None:
            assert answer is None  # malformed: dropped without an answer
        else:
            assert answer is not None and answer[0] == HelloType.REJECT, answer
        assert len(listeners[0].refusals) == 1
        assert "127.0.0.1" in listeners[0].refusals[0].text  # says where it came from
    finally:
        writer.close()
        close_all(listeners, endpoints)


@pytest.mark.parametrize("case", ["wrong world size", "guessed token, claiming rank 1"])
async def test_a_strangers_join_does_not_stop_direct_set_up(case):
    listeners = await listeners_for(WORLD)
    addresses = [listener.address for listener in listeners]
    # Player 1 accepts from player 2: the stranger claims to be player 2 with a wrong value.
    reader, writer = await stranger(addresses[1], join_frame(**STRANGE_JOINS[case], rank=2, to=1))
    await asyncio.sleep(0.05)
    endpoints = await asyncio.gather(*(
        direct(listener=listener, addresses=addresses, rank=rank, token="secret", timer=Timer(5))
        for rank, listener in enumerate(listeners)))
    try:
        await check_world(endpoints)
        answer = await answer_of(reader)
        assert answer is not None and answer[0] == HelloType.REJECT
    finally:
        writer.close()
        close_all(listeners, endpoints)


async def test_a_misconfigured_player_still_gets_a_clear_token_error_and_the_others_learn_why():
    listeners = await listeners_for(WORLD)
    root = listeners[0].address
    tokens = ["a", "a", "b"]
    start = time.monotonic()
    results = await asyncio.gather(*(
        rendezvous(listener=listeners[rank], root_address=root, world_size=WORLD, rank=rank, token=tokens[rank],
                   timer=Timer(1.5)) for rank in range(WORLD)), return_exceptions=True)
    elapsed = time.monotonic() - start
    close_all(listeners, results)
    assert all(isinstance(result, TokenMismatch) for result in results), results
    assert "player 2 gave a different token" in str(results[0])
    assert "gave up" in str(results[1])  # player 1 heard rank 0's verdict
    assert elapsed < 2


async def test_rank_0_that_gives_up_tells_the_waiting_players_why():
    listeners = await listeners_for(WORLD)
    root = listeners[0].address
    results = await asyncio.gather(*(
        rendezvous(listener=listeners[rank], root_address=root, world_size=WORLD, rank=rank, timer=Timer(1))
        for rank in (0, 1)), return_exceptions=True)
    close_all(listeners, results)
    assert all(isinstance(result, Timeout) for result in results), results
    assert "player(s) [2]" in str(results[0])
    assert "gave up" in str(results[1]) and "player(s) [2]" in str(results[1]), results[1]


async def test_an_address_taken_by_another_program_is_named_in_the_startup_error():
    listeners = await listeners_for(2)
    squatter_hits = []

    async def squatter(reader, writer):  # accepts, reads, never answers
        squatter_hits.append(1)
        await reader.read()
        writer.close()

    server = await asyncio.start_server(squatter, "127.0.0.1", 0)
    squatted = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    addresses = [listeners[0].address, squatted, listeners[1].address]
    try:
        with pytest.raises(Timeout) as caught:
            await direct(listener=listeners[1], addresses=addresses, rank=2, timer=Timer(0.5))
    finally:
        server.close()
        close_all(listeners)
    assert squatter_hits
    assert f"connected to {squatted} but no answer to our JOIN" in str(caught.value)


async def test_a_join_dropped_before_its_answer_is_sent_again():
    """An honest player whose connection the listener dropped (a flood pushed it over the
    pending cap) connects again."""
    accepted = []

    async def flaky(reader, writer):
        accepted.append(1)
        await reader.readexactly(HEADER_SIZE)
        if len(accepted) < 3:
            writer.transport.abort()  # dropped unheard, twice
            return
        writer.write(handshake.hello_frame(HelloType.ACCEPT, handshake.accept_message(rank=0)))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(flaky, "127.0.0.1", 0)
    address = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        message = handshake.join_message(name="world", world_size=2, rank=1, to=0, token=b"t")
        deadline = asyncio.get_running_loop().time() + 3
        link, _ = await open_and_join(address, message, label="test", tls=None, deadline=deadline, expect=0,
                                      world_size=2, with_addresses=False, prefix="test")
        link.abort()
    finally:
        server.close()
    assert len(accepted) == 3


def open_descriptors():
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None


async def test_a_flood_of_idle_and_half_sent_connections_is_capped_and_the_world_still_forms():
    limits = Limits(max_pending_connections=16)
    listeners = await listeners_for(WORLD, limits)
    root = listeners[0].address
    fds_before = open_descriptors()
    tracemalloc.start()
    try:
        snapshot_before = tracemalloc.get_traced_memory()[0]
        half_hello = encode_header(Kind.HELLO, HelloType.JOIN, 0, handshake.MAX_JOIN) + b"\x0a" * 8000
        flood = [await stranger(root, half_hello if i % 2 else b"") for i in range(200)]
        await asyncio.sleep(0.2)  # the listener has accepted (and dropped) them
        held = tracemalloc.get_traced_memory()[0] - snapshot_before
        fds_during = open_descriptors()
        endpoints = await asyncio.gather(*(
            rendezvous(listener=listeners[rank], root_address=root, world_size=WORLD, rank=rank, timer=Timer(5))
            for rank in range(WORLD)))
        await check_world(endpoints)
    finally:
        tracemalloc.stop()
    try:
        assert listeners[0].dropped >= 200 - 16
        assert held < 8 << 20, f"{held} bytes held for 200 strangers' connections"
        if fds_before is not None:
            # Our 200 client ends are ours to count; the listener holds at most the cap (x2: a spare each).
            assert fds_during - fds_before <= 200 + 2 * 16 + 8, (fds_before, fds_during)
    finally:
        for _, writer in flood:
            writer.close()
        close_all(listeners, endpoints)


async def test_an_oversized_or_many_item_join_is_refused_at_once():
    listeners = await listeners_for(WORLD)
    root = listeners[0].address
    big = encode_header(Kind.HELLO, HelloType.JOIN, 0, 1 << 20)  # a 1 MiB JOIN announced
    items = handshake.hello_frame(HelloType.JOIN, {"x": list(range(1000))})  # small, but 1,000 values
    strangers = [await stranger(root, big), await stranger(root, items)]
    for reader, _ in strangers:
        assert await answer_of(reader) is None  # dropped
    endpoints = await asyncio.gather(*(
        rendezvous(listener=listeners[rank], root_address=root, world_size=WORLD, rank=rank, timer=Timer(5))
        for rank in range(WORLD)))
    try:
        await check_world(endpoints)
    finally:
        for _, writer in strangers:
            writer.close()
        close_all(listeners, endpoints)


async def test_a_silent_connection_is_dropped_after_the_hello_timeout():
    listener = await listen(address="tcp://127.0.0.1", rank=0, limits=Limits(hello_timeout=0.2))
    reader, writer = await stranger(listener.address)
    start = time.monotonic()
    try:
        async with asyncio.timeout(3):
            assert await reader.read() == b""
        assert 0.15 < time.monotonic() - start < 2
        assert listener.dropped == 1
    finally:
        writer.close()
        listener.close()


async def test_a_flood_of_oversized_joins_is_recorded_but_logged_sparingly(caplog):
    """100 strangers each announce a 1 MiB JOIN: each is refused at its header and counted
    among the listener's refusals, but only the first ten are logged (a stranger cannot flood
    the log either), and the world forms."""
    listeners = await listeners_for(WORLD)
    root = listeners[0].address
    big = encode_header(Kind.HELLO, HelloType.JOIN, 0, 1 << 20)
    with caplog.at_level("DEBUG", logger="cicada_async"):
        strangers = [await stranger(root, big) for _ in range(100)]
        for reader, _ in strangers:
            assert await answer_of(reader) is None  # dropped
        endpoints = await asyncio.gather(*(
            rendezvous(listener=listeners[rank], root_address=root, world_size=WORLD, rank=rank, timer=Timer(5))
            for rank in range(WORLD)))
    try:
        await check_world(endpoints)
        oversized = [r for r in listeners[0].refusals if "exceeds the limit" in r.text]
        assert len(oversized) == 100 and "127.0.0.1" in oversized[0].text
        warnings = [r for r in caplog.records if r.levelname == "WARNING" and "exceeds the limit" in r.getMessage()]
        assert len(warnings) == 10, [r.getMessage() for r in warnings]
    finally:
        for _, writer in strangers:
            writer.close()
        close_all(listeners, endpoints)


async def test_a_burst_of_connections_over_the_cap_is_closed_not_leaked():
    """120 connections land in one burst (opened while the loop is busy), so the loop accepts
    them all before any is connected: those dropped to make room were aborted before their
    transport existed, and used to stay open for good (no timer, no owner)."""
    listener = await listen(address="tcp://127.0.0.1", rank=0, limits=Limits(max_pending_connections=16))
    host, port = parse_address(listener.address)[1]
    fds_before = open_descriptors()
    burst = [socket.create_connection((host, port), timeout=5) for _ in range(120)]  # blocking: one burst
    try:
        for _ in range(50):  # the loop accepts in batches; wait (bounded) until all are handled
            await asyncio.sleep(0.02)
            if listener.dropped >= 120 - 16:
                break
        await asyncio.sleep(0.1)  # the aborted transports close on the loop's next turns
        assert listener.dropped == 120 - 16
        if fds_before is not None:
            # Our 120 client ends, and at most two descriptors for each pending connection.
            held = open_descriptors() - fds_before - 120
            assert held <= 2 * 16 + 4, f"the listener holds {held} descriptors for 16 pending connections"
    finally:
        for sock in burst:
            sock.close()
        await listener.aclose()
