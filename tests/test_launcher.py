"""AsyncSocketCommunicator.run with real processes, sockets and signals."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy
import pytest

from cicada_async import AsyncSocketCommunicator, CommunicatorError, Failed, PeerFailed, Terminated
from cicada_async.communicator import launcher
from cicada_async.communicator.connect import Limits

pytestmark = pytest.mark.processes


async def ranks_and_sum(comm):
    values = await comm.allgather(comm.rank)
    return comm.rank, comm.world_size, sum(values)


@pytest.mark.parametrize("world_size", [2, 3, 4, 10])
def test_startup_repeated(world_size):
    for _ in range(3 if world_size < 10 else 1):
        results = AsyncSocketCommunicator.run(world_size=world_size, fn=ranks_and_sum, startup_timeout=20)
        total = world_size * (world_size - 1) // 2
        assert results == [(rank, world_size, total) for rank in range(world_size)]


def test_unix_sockets_and_arguments():
    async def fn(comm, offset, *, scale):
        return (await comm.allgather(comm.rank + offset))[-1] * scale

    assert AsyncSocketCommunicator.run(world_size=3, fn=fn, family="file", args=(10,),
                                       kwargs={"scale": 2}) == [24] * 3


def test_failed_and_terminated_are_reported(caplog):
    async def fn(comm):
        if comm.rank == 1:
            raise ValueError("bad player")
        if comm.rank == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return "ok"

    caplog.set_level(logging.INFO)
    start = time.monotonic()
    results = AsyncSocketCommunicator.run(world_size=4, fn=fn, show_traceback=True)
    assert time.monotonic() - start < 10
    assert results[0] == "ok" and results[3] == "ok"
    assert isinstance(results[1], Failed)
    assert isinstance(results[1].exception, ValueError) and "bad player" in results[1].traceback
    assert results[2] == Terminated(-signal.SIGKILL)
    assert repr(results[2]) == "Terminated(exitcode=-9)"
    messages = [record.getMessage() for record in caplog.records]
    assert "Comm world player 2 failed: Terminated(exitcode=-9)" in messages
    assert "Comm world player 1 failed: ValueError('bad player')" in messages
    assert any("traceback" in message for message in messages)


def test_a_killed_peer_is_detected_well_under_the_deadline():
    async def fn(comm):
        if comm.rank == 1:
            await comm.barrier()
            os.kill(os.getpid(), signal.SIGKILL)
        await comm.barrier()
        start = time.monotonic()
        try:
            await comm.recv(src=1, tag=0)
        except PeerFailed as error:
            return type(error).__name__, time.monotonic() - start
        return "no error", None

    results = AsyncSocketCommunicator.run(world_size=3, fn=fn, timeout=10)
    assert results[1] == Terminated(-9)
    for name, elapsed in (results[0], results[2]):
        assert name == "PeerFailed" and elapsed < 1.0


def test_a_player_dying_before_it_connects_never_hangs_run(monkeypatch):
    real_listen = launcher.listen

    async def dying_listen(**options):
        if options["rank"] == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return await real_listen(**options)

    monkeypatch.setattr(launcher, "listen", dying_listen)  # inherited by the forked players
    start = time.monotonic()
    results = AsyncSocketCommunicator.run(world_size=4, fn=ranks_and_sum, startup_timeout=30)
    assert time.monotonic() - start < 10  # far below startup_timeout: the others are told
    assert results[2] == Terminated(-9)
    for rank in (0, 1, 3):
        assert isinstance(results[rank], Failed)
        assert isinstance(results[rank].exception, CommunicatorError)
        assert "player 2" in str(results[rank].exception)


def test_a_player_dying_while_linking_never_hangs_run(monkeypatch):
    real_direct = launcher.direct

    async def dying_direct(**options):
        if options["rank"] == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return await real_direct(**options)

    monkeypatch.setattr(launcher, "direct", dying_direct)
    start = time.monotonic()
    results = AsyncSocketCommunicator.run(world_size=3, fn=ranks_and_sum, startup_timeout=30)
    assert time.monotonic() - start < 10
    assert results[1] == Terminated(-9)
    assert all(isinstance(results[rank], Failed) for rank in (0, 2))


def test_messages_sent_just_before_returning_are_delivered():
    async def fn(comm):
        if comm.rank == 0:
            await comm.send(value=numpy.arange(2_000_000, dtype=numpy.float64), dst=1, tag=0)
            for i in range(100):
                await comm.send(value=i, dst=1, tag=1)
            return "sent"
        array = await comm.recv(src=0, tag=0)
        received = [await comm.recv(src=0, tag=1) for _ in range(100)]
        return float(array[-1]), received == list(range(100))

    assert AsyncSocketCommunicator.run(world_size=2, fn=fn) == ["sent", (1999999.0, True)]


def test_unpicklable_result_is_a_failure():
    async def fn(comm):
        return (lambda: 0) if comm.rank == 0 else comm.rank

    results = AsyncSocketCommunicator.run(world_size=2, fn=fn)
    assert isinstance(results[0], Failed) and "pickle" in str(results[0].exception)
    assert results[1] == 1


def test_run_from_inside_a_running_event_loop():
    async def outer():
        return AsyncSocketCommunicator.run(world_size=2, fn=ranks_and_sum)

    assert asyncio.run(outer()) == [(0, 2, 1), (1, 2, 1)]


def test_spawn_start_method():
    results = AsyncSocketCommunicator.run(world_size=2, fn=_module_level_fn, start_method="spawn",
                                          startup_timeout=30)
    assert results == [0, 1]


async def _module_level_fn(comm):
    return (await comm.allgather(comm.rank))[comm.rank]


def test_guardless_script(tmp_path):
    script = tmp_path / "noguard.py"
    script.write_text(textwrap.dedent("""
        from cicada_async import AsyncSocketCommunicator

        async def main(comm):
            return sum(await comm.allgather(comm.rank))

        print("RESULTS", AsyncSocketCommunicator.run(world_size=3, fn=main))
    """))
    output = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert output.returncode == 0, output.stderr
    assert "RESULTS [3, 3, 3]" in output.stdout
    assert output.stdout.count("RESULTS") == 1


def test_bad_arguments():
    with pytest.raises(ValueError):
        AsyncSocketCommunicator.run(world_size=0, fn=ranks_and_sum)
    with pytest.raises(ValueError):
        AsyncSocketCommunicator.run(world_size=2, fn=ranks_and_sum, family="udp")
    with pytest.raises(ValueError):
        AsyncSocketCommunicator.run(world_size=2, fn=None)


def test_loop_selection(monkeypatch):
    monkeypatch.setenv("CICADA_ASYNC_LOOP", "asyncio")
    assert launcher.loop_factory() is asyncio.new_event_loop

    async def which(comm):
        return type(asyncio.get_running_loop()).__module__

    assert AsyncSocketCommunicator.run(world_size=1, fn=which) == ["asyncio.unix_events"]
    monkeypatch.setenv("CICADA_ASYNC_LOOP", "uvloop")
    pytest.importorskip("uvloop")
    assert AsyncSocketCommunicator.run(world_size=1, fn=which) == ["uvloop"]


async def _limits_seen(comm):
    """Rank 0 sends one frame larger than the players' max_frame_size; rank 1 reports it."""
    # Rank 1 says when its world is formed: a frame that overtakes the end of its set-up is
    # checked against the pre-handshake cap (16 KiB), not max_frame_size.
    if comm.rank == 0:
        await comm.recv(src=1, tag=1)
        await comm.send(value=bytes(10_000), dst=1, tag=0)
        return comm.endpoint.limits, None
    await comm.send(value="go", dst=0, tag=1)
    try:
        await comm.recv(src=0, tag=0)
    except CommunicatorError as error:
        return comm.endpoint.limits, type(error).__name__
    return comm.endpoint.limits, "received"


def test_run_passes_limits_to_every_player():
    limits = Limits(max_frame_size=4096, max_queued_bytes=1 << 20, max_pending_connections=8, hello_timeout=2.0)
    results = AsyncSocketCommunicator.run(world_size=2, fn=_limits_seen, limits=limits)
    assert [seen for seen, _ in results] == [limits, limits]
    assert results[1][1] == "RemoteProtocolError"  # the oversized frame was refused
    assert AsyncSocketCommunicator.run(world_size=2, fn=_limits_seen)[1] == (Limits(), "received")
