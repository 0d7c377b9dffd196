"""One player's links to the rest of its world, and the routing of their frames.

An :class:`Endpoint` holds one player's links to every other player of a world and the
communicators built over them.  Frames name their communicator, so any number of
communicators (the world, and those made by ``shrink`` and ``split``) share the links.
Frames for a communicator this player has not created yet (a faster peer already uses the
result of a ``shrink``) are held, within the per-peer byte limit, until it exists.

Communicators are reached through the small :class:`FrameSink` interface, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .._core.framing import DEFAULT_MAX_FRAME, Frame, Kind
from .._core.mailbox import DEFAULT_MAX_QUEUED_BYTES
from ..errors import RemoteProtocolError
from .link import Link

log = logging.getLogger(__name__)

__all__ = ["Endpoint", "FrameSink", "Limits"]


@dataclass(frozen=True)
class Limits:
    """Bounds on what a peer can make this player hold in memory.

    Attributes
    ----------
    max_frame_size:
        Largest frame payload accepted from a peer (default 1 GiB).
    max_queued_bytes:
        Most bytes from one peer that may wait in a communicator's mailbox, unreceived
        (default 2 GiB), counting what messages decode to, not only their bytes on the wire.
        A peer over either limit is failed with ``RemoteProtocolError``.
    max_pending_connections:
        During set-up, most connections a listener holds that have not been accepted
        into the world yet (default 64); beyond it the oldest is dropped.
    hello_timeout:
        During set-up, seconds a new connection may take to send its JOIN (default 10).
    """

    max_frame_size: int = DEFAULT_MAX_FRAME
    max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES
    max_pending_connections: int = 64
    hello_timeout: float = 10.0


class FrameSink(Protocol):
    """What an endpoint needs of a communicator: its id, its peers, and three callbacks.

    ``peers`` are world ranks.  The callbacks run in the link's reader; they may raise
    :class:`~cicada_async.errors.RemoteProtocolError` (the peer's link is then dropped).
    """

    @property
    def comm_id(self) -> int: ...

    @property
    def peers(self) -> Sequence[int]: ...

    def on_frame(self, peer: int, frame: Frame) -> None:
        """A DATA, BATCH or CONTROL frame from world player ``peer`` for this communicator."""

    def on_peer_lost(self, peer: int, error: BaseException | None, goodbye: bool) -> None:
        """``peer``'s link ended (``goodbye``: it closed cleanly)."""

    def on_peer_excluded(self, peer: int) -> None:
        """A shrink left ``peer`` out: it is ignored from now on."""


class Endpoint:
    """One player's links to the other players of a world, shared by its communicators.

    Parameters
    ----------
    rank:
        This player's rank in the world.
    world_size:
        Number of players in the world.
    links:
        The established link to every other player, by world rank.
    session:
        Bytes identifying this world; equal on every player (derived during set-up).
    limits:
        Memory bounds applied to every peer.
    """

    def __init__(self, *, rank: int, world_size: int, links: dict[int, Link], session: bytes,
                 limits: Limits | None = None, linger: float = 5.0) -> None:
        self.rank = rank
        self.world_size = world_size
        self.links = dict(links)
        self.session = session
        self.limits = limits or Limits()
        self.linger = linger
        self.closed = False
        self._comms: dict[int, FrameSink] = {}
        self._refs: dict[int, int] = dict.fromkeys(self.links, 0)
        self._held: dict[int, list[tuple[int, Frame]]] = {}
        self._held_bytes: dict[int, int] = dict.fromkeys(self.links, 0)
        self._retired: dict[int, Callable[[int, Frame], None] | None] = {}
        for peer, link in self.links.items():
            link.peer = peer
            link.promote(self.limits.max_frame_size)
        for link in self.links.values():
            link.set_handler(self._on_frame, self._on_lost)

    def __repr__(self) -> str:
        return f"<Endpoint rank={self.rank} world_size={self.world_size} comms={len(self._comms)}>"

    # -- communicators ---------------------------------------------------------------
    def register(self, comm: FrameSink) -> None:
        """Route frames for ``comm``'s id to it; hand over frames that arrived early."""
        comm_id = comm.comm_id
        if comm_id in self._comms or comm_id in self._retired:
            raise RuntimeError(f"communicator id {comm_id:#x} is already in use")
        self._comms[comm_id] = comm
        for peer in comm.peers:
            self._refs[peer] += 1
        held = self._held.pop(comm_id, [])
        # Everything held has arrived, so it is delivered, even from a peer ignored meanwhile.
        # Data first: replaying a control frame (an agreement message) may leave a peer out,
        # which must not drop data that peer sent before (each peer sends no data after its
        # own control markers, so its order is kept).
        for peer, frame in sorted(held, key=lambda item: item[1].kind != Kind.DATA):
            self._held_bytes[peer] -= len(frame.payload)
            try:
                comm.on_frame(peer, frame)
            except RemoteProtocolError as exc:
                self.links[peer].protocol_error(exc)
        for peer in comm.peers:
            link = self.links[peer]
            if link.closed or link.peer_done:
                comm.on_peer_lost(peer, link.error, link.peer_goodbye)

    def retire(self, comm: FrameSink,
               tombstone: Callable[[int, Frame], None] | None = None) -> None:
        """Stop routing to ``comm``; close links no communicator uses any more.

        Frames that still arrive for it are dropped, or given to ``tombstone`` (used to keep
        answering agreement requests about a decision the communicator took).
        """
        comm_id = comm.comm_id
        if self._comms.pop(comm_id, None) is None:
            return
        self._retired[comm_id] = tombstone
        for peer in comm.peers:
            self._refs[peer] -= 1
            if self._refs[peer] == 0:
                self.links[peer].goodbye(self.linger)

    def exclude(self, peer: int) -> None:
        """Ignore ``peer`` from now on, on every communicator (a shrink left it out).

        Frames it sent that have already reached this host are read and delivered first:
        being left out ends delivery from a peer, it never loses what the peer sent before.
        """
        link = self.links[peer]
        if link.ignoring or link.excluding:
            return
        link.excluding = True
        link.read_available()
        link.ignore()
        for comm in list(self._comms.values()):
            comm.on_peer_excluded(peer)

    async def settle(self, rounds: int = 20) -> None:
        """Let the loop read input that has already arrived on the links, before acting on a
        timeout.  Returns once no link has unread input (or after ``rounds`` turns)."""
        poller = select.poll()
        registered = False
        for link in self.links.values():
            fd = link.fileno()
            if fd >= 0:
                poller.register(fd, select.POLLIN)
                registered = True
        if not registered:
            return
        for _ in range(rounds):
            try:
                if not poller.poll(0):
                    return
            except OSError:
                return
            await asyncio.sleep(0)

    def communicators(self) -> list[FrameSink]:
        """The communicators currently using these links."""
        return list(self._comms.values())

    # -- link callbacks --------------------------------------------------------------
    def _on_frame(self, link: Link, frame: Frame) -> None:
        peer = link.peer
        assert peer is not None
        kind = frame.kind
        if kind == Kind.DATA or kind == Kind.CONTROL or kind == Kind.BATCH:
            comm = self._comms.get(frame.comm)
            if comm is not None:
                comm.on_frame(peer, frame)
                return
            if frame.comm in self._retired:
                tombstone = self._retired[frame.comm]
                if tombstone is not None and kind == Kind.CONTROL:
                    tombstone(peer, frame)
                return
            self._hold(peer, frame)
        elif kind == Kind.GOODBYE:
            for comm in list(self._comms.values()):
                comm.on_peer_lost(peer, None, True)
            link.close_after_peer()
        else:
            raise RemoteProtocolError(f"unexpected {Kind(kind).name} frame after set-up")

    def _hold(self, peer: int, frame: Frame) -> None:
        held = self._held_bytes[peer] + len(frame.payload)
        if held > self.limits.max_queued_bytes:
            raise RemoteProtocolError(
                f"player {peer} sent {held} bytes for unknown communicators, over the limit"
            )
        self._held_bytes[peer] = held
        self._held.setdefault(frame.comm, []).append((peer, frame))

    def _on_lost(self, link: Link, error: BaseException | None) -> None:
        peer = link.peer
        assert peer is not None
        if error is not None and not isinstance(error, RemoteProtocolError):
            log.info("Player %s: link to player %s lost: %r", self.rank, peer, error)
        for comm in list(self._comms.values()):
            comm.on_peer_lost(peer, error, link.peer_goodbye)

    # -- shutdown --------------------------------------------------------------------
    async def aclose(self, timeout: float) -> None:
        """Flush every link (bounded by ``timeout``), say goodbye, and wait for them to close."""
        if self.closed:
            return
        self.closed = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        links = [link for link in self.links.values() if not link.closed]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await asyncio.gather(*(link.drain() for link in links))
        for link in links:
            link.goodbye(max(0.0, deadline - loop.time()))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await asyncio.gather(*(link.lost for link in links))
        for link in links:
            link.abort()

    def abort(self) -> None:
        """Close every link at once."""
        self.closed = True
        for link in self.links.values():
            link.abort()
