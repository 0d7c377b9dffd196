"""Authenticated but hostile peers: what a peer sends costs what it decodes to, and decoding
never stalls the event loop (SPEC "Strangers and hostile peers").  The attacker is player 1
of an in-process world, using only the public ``send``; the victim is player 0."""

from __future__ import annotations

import asyncio
import time

import pytest

from cicada_async import RemoteProtocolError, Timeout
from cicada_async._core.codec import encode
from cicada_async._core.framing import Kind, header
from cicada_async.communicator.connect import Limits
from cicada_async.testing import World

HOSTILE_TAG = 7
ITEMS = 500_000  # empty dicts: 5 bytes each on the wire, ~64 decoded
STALL_LIMIT = 0.1  # the loop only buffers bytes it does not decode: a few ms


class Ticker:
    """The longest time the loop went without running a 1 ms ticker: the worst stall.  The
    gap up to the exit counts too (a stall that ends by waking the measured code would
    otherwise be missed: the code runs, and exits, before the ticker's next turn)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._last = time.perf_counter()
        self._task = asyncio.get_running_loop().create_task(self._tick())

    def _note(self) -> None:
        now = time.perf_counter()
        self.worst = max(self.worst, now - self._last)
        self._last = now

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.001)
            self._note()

    def __enter__(self) -> Ticker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._note()
        self._task.cancel()


async def flood(comm, count: int, items: int = ITEMS) -> None:
    value = [{}] * items
    for _ in range(count):
        await comm.send(value=value, dst=0, tag=HOSTILE_TAG)


def write_raw_frames(world: World, count: int, items: int = ITEMS) -> None:
    """Player 1 writes ``count`` DATA frames of ``items`` empty dicts to player 0, encoded
    beforehand (so the in-process attacker's encoding does not count as the victim's stall)."""
    encoded = encode([{}] * items)
    frame_header = header(int(Kind.DATA), 0, HOSTILE_TAG, world.comms[0].comm_id, 0x5EED, encoded.nbytes)
    link = world.link(1, 0)
    for _ in range(count):
        link.write(frame_header, encoded.parts, encoded.nbytes)


async def arriving_while_measured(world: World, count: int, *, raw: bool = True, items: int = ITEMS) -> Ticker:
    """Stall the victim, write the frames (raw, or with the attacker's ``send``), then let
    them in with the ticker running."""
    world.stall(0)
    if raw:
        write_raw_frames(world, count, items)
    else:  # the attacker encodes, writes, and may wait for the victim to read (a task)
        sending = asyncio.get_running_loop().create_task(flood(world.comms[1], count, items))
        world.sending = sending  # type: ignore[attr-defined]  # kept alive until the test ends
    await asyncio.sleep(0.05)
    ticker = Ticker()
    await asyncio.sleep(0.005)  # the ticker is ticking before the frames come in
    world.resume(0)
    return ticker


async def test_hostile_frames_on_an_unreceived_tag_neither_stall_the_loop_nor_break_a_deadline():
    async with World(3, limits=Limits(max_queued_bytes=64 << 20)) as world:
        victim, attacker = world.comms[0], world.comms[1]
        # 4 x 2.5 MB on the wire, ~4 x 32 MB if decoded: held as bytes, decoded by nobody.
        with await arriving_while_measured(world, 4) as ticker:
            start = time.perf_counter()
            with pytest.raises(Timeout):
                await _recv_with_deadline(victim)
            elapsed = time.perf_counter() - start
        assert elapsed < 1.3, f"a 1 s receive deadline fired after {elapsed:.2f}s"
        assert ticker.worst < STALL_LIMIT, f"the loop stalled for {ticker.worst * 1e3:.0f} ms"
        # The victim is up and still talks to the attacker, whose frames are all still there.
        await attacker.send(value="hello", dst=0, tag=1)
        assert await victim.recv(src=1, tag=1) == "hello"


async def _recv_with_deadline(victim):
    victim.timeout = 1.0
    return await victim.recv(src=2, tag=1)


async def test_a_received_hostile_value_is_decoded_off_the_loop_and_comes_out_right():
    async with World(2, limits=Limits(max_queued_bytes=1 << 30)) as world:
        victim, _attacker = world.comms
        with await arriving_while_measured(world, 1, raw=False, items=2 * ITEMS) as ticker:
            start = time.perf_counter()
            value = await victim.recv(src=1, tag=HOSTILE_TAG)
            elapsed = time.perf_counter() - start
        assert len(value) == 2 * ITEMS and value[0] == {} and value[-1] == {}
        await world.sending
        # Decoded on the loop, the stall was all of the receive (0.46 of 0.46 s); off the loop
        # what remains are the garbage collector's passes over the new objects (they hold the
        # GIL): 10-40 ms quiet.  A ratio, so that a busy machine slows both alike.
        assert ticker.worst < 0.4 * elapsed, (f"the loop stalled for {ticker.worst * 1e3:.0f} ms "
                                              f"of a {elapsed * 1e3:.0f} ms receive")


async def test_a_value_that_decodes_past_the_peers_budget_is_refused_naming_the_peer():
    async with World(2, limits=Limits(max_queued_bytes=16 << 20)) as world:
        victim, attacker = world.comms
        await flood(attacker, 1)  # 2.5 MB on the wire fits; 500,000 values (~32 MB) do not
        with pytest.raises(RemoteProtocolError, match="player 1") as caught:
            await victim.recv(src=1, tag=HOSTILE_TAG)
        assert caught.value.rank == 1
        await attacker.send(value=[1, 2, 3], dst=0, tag=1)  # the victim is up and still talks
        assert await victim.recv(src=1, tag=1) == [1, 2, 3]


async def test_small_frames_of_many_values_count_what_they_decode_to():
    """16 KiB frames of 16,000 values each: 1 MiB decoded apiece, so a 4 MiB cap holds
    three of them, not 250."""
    async with World(2, limits=Limits(max_queued_bytes=4 << 20)) as world:
        victim, attacker = world.comms
        for _ in range(8):
            await attacker.send(value=[None] * 16_000, dst=0, tag=HOSTILE_TAG)
        victim.timeout = 2.0
        with pytest.raises(RemoteProtocolError, match="over the limit") as caught:
            await victim.recv(src=1, tag=1)
        assert caught.value.rank == 1


async def test_a_slow_decode_ends_at_the_receive_deadline():
    async with World(2, limits=Limits(max_queued_bytes=1 << 30)) as world:
        victim, attacker = world.comms
        await flood(attacker, 1, items=4_000_000)  # seconds of decoding here
        victim.timeout = 0.2
        start = time.perf_counter()
        with pytest.raises(Timeout, match="decoding a value from player 1"):
            await victim.recv(src=1, tag=HOSTILE_TAG)
        assert time.perf_counter() - start < 1.0
