"""Connection set-up in one loop: listen / direct / rendezvous / connect, and what can go wrong."""

from __future__ import annotations

import asyncio
import errno
import os
import pathlib
import socket
import tempfile
import time

import numpy
import pytest

from cicada_async import AsyncSocketCommunicator, CommunicatorError, RemoteProtocolError, Timeout, TokenMismatch
from cicada_async._core.framing import Kind, encode_header
from cicada_async.communicator.connect import Limits, Timer, direct, listen, parse_address, rendezvous


async def start_listeners(n, family="tcp", directory=None):
    listeners = []
    for rank in range(n):
        address = f"file://{directory}/p{rank}.sock" if family == "file" else "tcp://127.0.0.1"
        listeners.append(await listen(address=address, rank=rank))
    return listeners


def close_all(listeners, endpoints=()):
    for listener in listeners:
        listener.close()
    for endpoint in endpoints:
        if not isinstance(endpoint, BaseException):
            endpoint.abort()


def test_parse_address():
    assert parse_address("tcp://127.0.0.1:80") == ("tcp", ("127.0.0.1", 80))
    assert parse_address("tcp://localhost") == ("tcp", ("localhost", 0))
    assert parse_address("file:///tmp/x.sock") == ("file", "/tmp/x.sock")
    for bad in ["udp://x:1", "tcp://", "tcp://h:notaport", "file://", 5]:
        with pytest.raises(ValueError):
            parse_address(bad)


def test_timer():
    timer = Timer(0.05)
    assert 0 < timer.remaining <= 0.05 and not timer.expired
    time.sleep(0.06)
    assert timer.expired and timer.remaining == 0
    with pytest.raises(ValueError):
        Timer(0)


@pytest.mark.both_loops
@pytest.mark.parametrize("family", ["tcp", "file"])
async def test_direct(family):
    with tempfile.TemporaryDirectory() as directory:
        listeners = await start_listeners(4, family, directory)
        addresses = [listener.address for listener in listeners]
        endpoints = await asyncio.gather(*(
            direct(listener=listener, addresses=addresses, rank=rank, token="tok")
            for rank, listener in enumerate(listeners)))
        try:
            comms = [AsyncSocketCommunicator(endpoint=e, timeout=2) for e in endpoints]
            assert len({comm.comm_id for comm in comms}) == 1
            results = await asyncio.gather(*(comm.allgather(comm.rank) for comm in comms))
            assert results == [[0, 1, 2, 3]] * 4
        finally:
            close_all(listeners, endpoints)


@pytest.mark.both_loops
async def test_rendezvous_in_any_start_order():
    listeners = await start_listeners(5)
    root = listeners[0].address
    order = [3, 1, 4, 0, 2]

    async def join(rank):
        await asyncio.sleep(0.02 * order.index(rank))
        return await rendezvous(listener=listeners[rank], root_address=root, world_size=5, rank=rank,
                                token=7, timer=Timer(5))

    endpoints = await asyncio.gather(*(join(rank) for rank in range(5)))
    try:
        comms = [AsyncSocketCommunicator(endpoint=e) for e in endpoints]
        results = await asyncio.gather(*(comm.allgather(comm.rank * 2) for comm in comms))
        assert results == [[0, 2, 4, 6, 8]] * 5
    finally:
        close_all(listeners, endpoints)


async def test_rendezvous_token_mismatch_is_reported_to_everyone():
    listeners = await start_listeners(3)
    root = listeners[0].address
    tokens = ["a", "a", "b"]
    results = await asyncio.gather(*(
        rendezvous(listener=listeners[rank], root_address=root, world_size=3, rank=rank,
                   token=tokens[rank], timer=Timer(3))
        for rank in range(3)), return_exceptions=True)
    close_all(listeners, results)
    assert all(isinstance(result, TokenMismatch) for result in results), results
    assert "player(s) [2]" in str(results[0])


async def test_direct_token_mismatch():
    listeners = await start_listeners(2)
    addresses = [listener.address for listener in listeners]
    results = await asyncio.gather(*(
        direct(listener=listener, addresses=addresses, rank=rank, token=rank, timer=Timer(3))
        for rank, listener in enumerate(listeners)), return_exceptions=True)
    close_all(listeners, results)
    assert all(isinstance(result, TokenMismatch) for result in results), results


async def test_name_mismatch_is_an_error():
    listeners = await start_listeners(2)
    addresses = [listener.address for listener in listeners]
    results = await asyncio.gather(*(
        direct(listener=listener, addresses=addresses, rank=rank, name=["a", "b"][rank], timer=Timer(3))
        for rank, listener in enumerate(listeners)), return_exceptions=True)
    close_all(listeners, results)
    assert all(isinstance(result, CommunicatorError) for result in results), results
    assert any("communicator" in str(result) for result in results)


async def test_missing_player_times_out_at_the_startup_deadline():
    listeners = await start_listeners(3)
    addresses = [listener.address for listener in listeners]
    start = time.monotonic()
    results = await asyncio.gather(*(
        direct(listener=listeners[rank], addresses=addresses, rank=rank, timer=Timer(0.5))
        for rank in (0, 1)), return_exceptions=True)
    elapsed = time.monotonic() - start
    close_all(listeners, results)
    assert all(isinstance(result, Timeout) for result in results), results
    assert "player(s) [2]" in str(results[0])
    assert 0.4 < elapsed < 2


async def test_unreachable_root_times_out():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    listener = await listen(address="tcp://127.0.0.1", rank=1)
    start = time.monotonic()
    with pytest.raises(Timeout, match=r"startup timed-out after 0\.3s"):
        await rendezvous(listener=listener, root_address=f"tcp://127.0.0.1:{port}", world_size=2, rank=1,
                         timer=Timer(0.3))
    assert time.monotonic() - start < 1.5
    listener.close()


@pytest.mark.parametrize("garbage", [
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 200,  # a TLS client hello
    encode_header(Kind.HELLO, 1, 0, 1 << 30),  # a 1 GiB hello
    encode_header(Kind.HELLO, 1, 0, 3) + b"\x63\x00\x00",  # malformed JOIN
    b"",  # connects and stays silent
])
async def test_strangers_on_the_listener_do_not_break_set_up(garbage):
    listeners = await start_listeners(3)
    addresses = [listener.address for listener in listeners]
    host, port = parse_address(addresses[0])[1]
    _, writer = await asyncio.open_connection(host, port)
    writer.write(garbage)
    await writer.drain()
    endpoints = await asyncio.gather(*(
        direct(listener=listener, addresses=addresses, rank=rank, timer=Timer(3))
        for rank, listener in enumerate(listeners)))
    try:
        comms = [AsyncSocketCommunicator(endpoint=e) for e in endpoints]
        assert await asyncio.gather(*(comm.allgather(comm.rank) for comm in comms)) == [[0, 1, 2]] * 3
    finally:
        close_all(listeners, endpoints)
        writer.close()


async def test_stale_unix_socket_file_is_replaced():
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "p.sock")
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(path)
        stale.close()
        listener = await listen(address=f"file://{path}")
        assert listener.address == f"file://{path}"
        listener.close()
        assert not pathlib.Path(path).exists()  # noqa: ASYNC240 - a test, nothing else runs


async def test_a_live_unix_socket_is_not_taken_over():
    """A second listener on the path of a live one fails with EADDRINUSE; the first keeps
    its socket file and still accepts connections (it used to be unlinked silently)."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "p.sock")
        first = await listen(address=f"file://{path}", limits=Limits(hello_timeout=0.2))
        try:
            with pytest.raises(OSError, match="another process is listening") as caught:
                await listen(address=f"file://{path}")
            assert caught.value.errno == errno.EADDRINUSE
            reader, writer = await asyncio.open_unix_connection(path)
            assert await asyncio.wait_for(reader.read(), 5) == b""  # accepted, then dropped unheard
            writer.close()
            assert first.dropped == 1  # this one (the probe closed its own connection)
        finally:
            await first.aclose()


async def test_connect_reads_the_environment(monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("CICADA_WORLD_SIZE", "3")
    monkeypatch.setenv("CICADA_ROOT_ADDRESS", f"tcp://127.0.0.1:{port}")
    monkeypatch.setenv("CICADA_TOKEN", "shared")

    async def player(rank):
        return await AsyncSocketCommunicator.connect(rank=rank, timeout=3)

    comms = await asyncio.gather(*(player(rank) for rank in range(3)))
    try:
        assert [c.rank for c in comms] == [0, 1, 2]
        assert await asyncio.gather(*(c.allgather(c.rank) for c in comms)) == [[0, 1, 2]] * 3
        assert comms[0].timeout == 3
    finally:
        for comm in comms:
            comm.endpoint.abort()


async def test_connect_passes_limits():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    limits = Limits(max_frame_size=4096, max_queued_bytes=1 << 20)

    async def player(rank):
        return await AsyncSocketCommunicator.connect(world_size=2, rank=rank, root_address=f"tcp://127.0.0.1:{port}",
                                                     token="shared", timeout=3, limits=limits)

    comms = await asyncio.gather(*(player(rank) for rank in range(2)))
    try:
        assert [comm.endpoint.limits for comm in comms] == [limits, limits]
        await comms[0].send(value=bytes(10_000), dst=1, tag=0)  # over max_frame_size
        with pytest.raises(RemoteProtocolError):
            await comms[1].recv(src=0, tag=0)
    finally:
        for comm in comms:
            comm.endpoint.abort()


async def test_connect_argument_errors(monkeypatch):
    monkeypatch.delenv("CICADA_WORLD_SIZE", raising=False)
    with pytest.raises(ValueError, match="CICADA_WORLD_SIZE"):
        await AsyncSocketCommunicator.connect(rank=0, root_address="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="rank"):
        await AsyncSocketCommunicator.connect(world_size=2, rank=2, root_address="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="root_address"):
        await AsyncSocketCommunicator.connect(world_size=2, rank=0)


async def test_a_peer_that_finished_set_up_first_may_send_large_frames_at_once():
    """Player 0 completes its world and sends a large array to player 1 at once, while player 1
    is still waiting for player 2 (whose connection to it a slow proxy holds back): the frame
    must not be refused by the small pre-authentication frame limit of player 1's link."""
    listeners = [await listen(address="tcp://127.0.0.1", rank=rank) for rank in range(3)]
    addresses = [listener.address for listener in listeners]
    host, port = addresses[1].removeprefix("tcp://").rsplit(":", 1)

    forwarding = set()

    async def slow_forward(reader, writer):
        forwarding.add(asyncio.current_task())
        await asyncio.sleep(0.5)  # player 2's link to player 1 opens late
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))

        async def pipe(source, sink):
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    proxy = await asyncio.start_server(slow_forward, "127.0.0.1", 0)
    proxied = list(addresses)
    proxied[1] = f"tcp://127.0.0.1:{proxy.sockets[0].getsockname()[1]}"
    big = numpy.arange(200_000, dtype=numpy.float64)  # 1.6 MB: far over a JOIN's 16 KiB

    received = asyncio.Event()

    async def player(rank):
        endpoint = await direct(listener=listeners[rank], addresses=proxied if rank == 2 else addresses, rank=rank,
                                timer=Timer(10))
        comm = AsyncSocketCommunicator(endpoint=endpoint, name="world", timeout=5)
        try:
            if rank == 0:
                await comm.send(value=big, dst=1, tag=3)
            if rank == 1:
                value = await comm.recv(src=0, tag=3)
                received.set()
                return value
            await asyncio.wait_for(received.wait(), 10)
        finally:
            await comm.free()

    try:
        results = await asyncio.wait_for(asyncio.gather(*(player(rank) for rank in range(3))), 30)
    finally:
        proxy.close()
        for task in forwarding:
            task.cancel()
        await asyncio.gather(*forwarding, return_exceptions=True)
        for listener in listeners:
            listener.close()
    numpy.testing.assert_array_equal(results[1], big)
