"""Helpers for testing programs and the library itself: N players in one event loop.

:func:`create_world` links ``world_size`` players inside the running loop, over Unix socket
pairs (fast) or over real TCP loopback connections with the full handshake; the players are
ordinary :class:`~cicada_async.AsyncSocketCommunicator` objects, so everything above the
socket is the production code.  :class:`World` adds fault injection: :meth:`World.kill`
drops every link of a player at once (as if its process had been SIGKILLed),
:meth:`World.cut` drops one link, and :meth:`World.stall` / :meth:`World.resume` stop and
restart a player's reading (as SIGSTOP / SIGCONT do to its links).

Example::

    async def test_sum():
        async with World(3) as world:
            results = await world.run(lambda comm: comm.allgather(comm.rank))
        assert results == [[0, 1, 2]] * 3
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ._transport import Endpoint, Limits, Link
from .communicator.connect import Timer, direct, listen
from .communicator.socket import AsyncSocketCommunicator
from .operations import spawn_with_own_root

__all__ = ["World", "create_world"]


async def _pair(loop: asyncio.AbstractEventLoop, limits: Limits) -> tuple[Link, Link]:
    left, right = socket.socketpair()
    links = []
    for sock in (left, right):
        sock.setblocking(False)
        _, link = await loop.create_unix_connection(
            lambda: Link(max_payload=limits.max_frame_size, label="memory"), sock=sock
        )
        links.append(link)
    return links[0], links[1]


async def create_world(world_size: int, *, name: str = "world", timeout: float = 5,
                       family: str = "socketpair",
                       limits: Limits | None = None) -> list[AsyncSocketCommunicator]:
    """Create ``world_size`` linked players in the running event loop; return their communicators.

    ``family`` is ``"socketpair"`` (Unix socket pairs, no handshake), ``"tcp"`` or
    ``"file"`` (real listening sockets and the full handshake of :func:`direct`).
    """
    limits = limits or Limits()
    loop = asyncio.get_running_loop()
    if family == "socketpair":
        links: dict[int, dict[int, Link]] = {rank: {} for rank in range(world_size)}
        for low in range(world_size):
            for high in range(low + 1, world_size):
                links[low][high], links[high][low] = await _pair(loop, limits)
        session = os.urandom(16)
        endpoints = [Endpoint(rank=rank, world_size=world_size, links=links[rank], session=session,
                              limits=limits) for rank in range(world_size)]
    elif family in ("tcp", "file"):
        import tempfile

        directory = tempfile.mkdtemp(prefix="cicada-test-") if family == "file" else None
        listeners = []
        for rank in range(world_size):
            address = f"file://{directory}/p{rank}.sock" if directory else "tcp://127.0.0.1"
            listeners.append(await listen(address=address, rank=rank, name=name, limits=limits))
        addresses = [listener.address for listener in listeners]
        try:
            endpoints = list(await asyncio.gather(*(
                direct(listener=listener, addresses=addresses, rank=rank, name=name, timer=Timer(10),
                       limits=limits)
                for rank, listener in enumerate(listeners)
            )))
        finally:
            for listener in listeners:
                listener.close()
            if directory is not None:
                os.rmdir(directory)
    else:
        raise ValueError(f"family must be 'socketpair', 'tcp' or 'file', got {family!r}")
    return [AsyncSocketCommunicator(endpoint=endpoint, name=name, timeout=timeout) for endpoint in endpoints]


class World:
    """``world_size`` players in the running loop, with fault injection.

    Use as ``async with World(n) as world:``; ``world.comms[r]`` is player r's world
    communicator.  Leaving the block closes every link.
    """

    def __init__(self, world_size: int, *, name: str = "world", timeout: float = 5,
                 family: str = "socketpair", limits: Limits | None = None) -> None:
        self.world_size = world_size
        self._options = dict(name=name, timeout=timeout, family=family, limits=limits)
        self.comms: list[AsyncSocketCommunicator] = []
        self.killed: set[int] = set()
        self._tasks: dict[int, asyncio.Task[Any]] = {}
        self._runs = 0  # run() calls: each gives every player a root scope named after it
        self._jitter: dict[Link, asyncio.TimerHandle] = {}
        self._jittering = False

    async def __aenter__(self) -> World:
        self.comms = await create_world(self.world_size, **self._options)  # type: ignore[arg-type]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.calm()
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for comm in self.comms:
            comm.endpoint.abort()
        await asyncio.sleep(0)

    @property
    def endpoints(self) -> list[Endpoint]:
        """Each player's endpoint (its links), by world rank."""
        return [comm.endpoint for comm in self.comms]

    def link(self, rank: int, peer: int) -> Link:
        """Player ``rank``'s link to player ``peer``."""
        return self.endpoints[rank].links[peer]

    async def run(self, fn: Callable[[AsyncSocketCommunicator], Coroutine[Any, Any, Any]],
                  ranks: Sequence[int] | None = None, *, return_exceptions: bool = False) -> list[Any]:
        """Run ``fn(comm)`` on every player (or ``ranks``) concurrently; return the results.

        Each player's ``fn`` is called, and runs, with a root scope of its own (see
        :mod:`cicada_async.operations`), as if it were alone in its process.  A player killed
        with :meth:`kill` while running gets ``None`` as its result.
        """
        if ranks is None:
            ranks = [rank for rank in range(self.world_size) if rank not in self.killed]
        # Each player numbers its operations from a root scope of its own, as in a process of its own.
        self._runs += 1
        label = ("cicada_async.testing.World.run", self._runs)
        tasks: dict[int, asyncio.Task[Any]] = {rank: spawn_with_own_root(label, fn, self.comms[rank]) for rank in ranks}
        self._tasks.update(tasks)
        try:
            results = await asyncio.gather(*tasks.values(), return_exceptions=True)
        finally:
            for rank in tasks:
                self._tasks.pop(rank, None)
        output = []
        for rank, result in zip(tasks, results, strict=True):
            if isinstance(result, asyncio.CancelledError) and rank in self.killed:
                result = None
            elif isinstance(result, BaseException) and not return_exceptions:
                raise result
            output.append(result)
        return output

    def kill(self, rank: int) -> None:
        """Kill player ``rank``: its task is cancelled and every link it has drops at once.

        Frames it had written are on their way first, as a process's writes are in the
        kernel once it dies.
        """
        self.killed.add(rank)
        task = self._tasks.get(rank)
        if task is not None:
            task.cancel()
        self.endpoints[rank].abort()

    def cut(self, rank: int, peer: int) -> None:
        """Drop the link between ``rank`` and ``peer`` (both see it close)."""
        self.link(rank, peer).abort()

    def stall(self, rank: int) -> None:
        """Stop player ``rank`` reading from its links, as if its process were stopped."""
        for link in self.endpoints[rank].links.values():
            if link.transport is not None and not link.closed:
                link.transport.pause_reading()

    def resume(self, rank: int) -> None:
        """Undo :meth:`stall`."""
        for link in self.endpoints[rank].links.values():
            if link.transport is not None and not link.closed:
                link.transport.resume_reading()

    def jitter(self, *, seed: int, delay: float = 0.002) -> None:
        """From now on, every link stops reading for random spells of up to ``delay`` seconds,
        and reads again for random spells, driven by a random generator seeded with ``seed``.

        Frames on one link keep their order (as on a real stream), but frames from different
        peers, and the operations they belong to, reach each player in orders that differ
        between players and between seeds: the schedules concurrency bugs need.  Stops with
        :meth:`calm` or when the world closes.  Not to be combined with :meth:`stall`.
        """
        rng = random.Random(seed)
        loop = asyncio.get_running_loop()
        self._jittering = True

        def toggle(link: Link, reading: bool) -> None:
            if not self._jittering or link.closed or link.transport is None:
                return
            if reading:
                link.transport.resume_reading()
            else:
                link.transport.pause_reading()
            self._jitter[link] = loop.call_later(rng.uniform(0, delay), toggle, link, not reading)

        for endpoint in self.endpoints:
            for link in endpoint.links.values():
                self._jitter[link] = loop.call_later(rng.uniform(0, delay), toggle, link, False)

    def calm(self) -> None:
        """Stop :meth:`jitter`: every link reads again."""
        if not self._jittering:
            return
        self._jittering = False
        for handle in self._jitter.values():
            handle.cancel()
        self._jitter.clear()
        for rank in range(self.world_size):
            if rank not in self.killed:
                self.resume(rank)
