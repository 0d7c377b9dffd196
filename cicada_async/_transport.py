"""Per-peer links over asyncio transports, and the endpoint that routes their frames.

A :class:`Link` is the asyncio protocol of one stream (TCP, Unix socket or TLS) to one
other player.  Its reader is the event loop's read callback: bytes go straight into the
:class:`~cicada_async._core.framing.FrameDecoder` (large payloads land in their final
buffer) and every complete frame is handed, in arrival order, to the link's handler.  Errors
from the OS, the TLS layer and the peer's bytes are turned into library errors here, and
only here.

An :class:`Endpoint` holds one player's links to every other player of a world and the
communicators built over them.  Frames name their communicator, so any number of
communicators (the world, and those made by ``shrink`` and ``split``) share the links.
Frames for a communicator this player has not created yet (a faster peer already uses the
result of a ``shrink``) are held, within the per-peer byte limit, until it exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._core.framing import DEFAULT_MAX_FRAME, HEADER_SIZE, Frame, FrameDecoder, Kind, encode_header
from ._core.mailbox import DEFAULT_MAX_QUEUED_BYTES
from .errors import RemoteProtocolError

if TYPE_CHECKING:
    from .communicator.socket import AsyncSocketCommunicator

log = logging.getLogger(__name__)

__all__ = ["Endpoint", "Limits", "Link"]

# Writes buffered beyond this make a send wait for the link to drain (bounded memory).
SOFT_WRITE_LIMIT = 4 << 20
_SMALL_WRITE = 16 * 1024


@dataclass(frozen=True)
class Limits:
    """Bounds on what a peer can make this player hold in memory.

    Attributes
    ----------
    max_frame_size:
        Largest frame payload accepted from a peer (default 1 GiB).
    max_queued_bytes:
        Most bytes from one peer that may wait in a communicator's mailbox, unreceived
        (default 2 GiB).  A peer over either limit is failed with ``RemoteProtocolError``.
    """

    max_frame_size: int = DEFAULT_MAX_FRAME
    max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES


def _goodbye_frame() -> bytes:
    return encode_header(Kind.GOODBYE, 0, 0, 0)


_TLS_CHUNK = 1 << 20  # plaintext encrypted per step when sending a large frame


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # a handshake failure nobody awaited is still not "unretrieved"


class _TLSSession:
    """TLS records over in-memory BIOs: ciphertext to and from the link's raw transport.

    Running TLS inside the link (rather than in the event loop's SSL transport) behaves the
    same on asyncio and uvloop, lets the link see every handshake failure, and decrypts
    straight into the frame decoder's buffer.
    """

    __slots__ = ("done", "incoming", "outgoing", "pending", "ssl", "view")

    def __init__(self, context: ssl.SSLContext, server_side: bool, server_hostname: str | None) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.ssl = context.wrap_bio(self.incoming, self.outgoing, server_side=server_side,
                                    server_hostname=server_hostname)
        self.done = False  # handshake complete
        self.view = memoryview(bytearray(256 * 1024))  # ciphertext from the socket lands here
        self.pending: list[bytes] = []  # plaintext written before the handshake completed


class Link(asyncio.BufferedProtocol):
    """One stream to one peer: frames in (to ``handler``), frames out (:meth:`write`).

    Frames that arrive before a handler is installed are kept and replayed by
    :meth:`set_handler`, so nothing is lost between the handshake and the endpoint taking
    the link over.
    """

    def __init__(self, *, max_payload: int, label: str = "", tls: ssl.SSLContext | None = None,
                 server_side: bool = False, server_hostname: str | None = None) -> None:
        self.decoder = FrameDecoder(max_payload=max_payload)
        self._tls_settings = (tls, server_side, server_hostname) if tls is not None else None
        self._session: _TLSSession | None = None
        self.transport: asyncio.Transport | None = None
        self.peer: int | None = None
        self.label = label
        self.error: BaseException | None = None
        loop = asyncio.get_running_loop()
        self.connected = loop.create_future()
        self.lost = loop.create_future()
        self.handshake = loop.create_future()  # done once TLS (if any) is established
        self.handshake.add_done_callback(_retrieve)
        self.closed = False  # the transport is gone
        self.peer_goodbye = False  # the peer closed cleanly (sent GOODBYE)
        self.peer_done = False  # the peer sends nothing more (GOODBYE or EOF)
        self.said_goodbye = False  # we sent goodbye: we send nothing more
        self.ignoring = False  # frames are read and thrown away (excluded peer)
        self.excluding = False  # being left out: frames already here are still read
        self.bytes_sent = 0
        self.bytes_received = 0
        self.frames_dropped = 0
        self.on_hello: Callable[[Link, Frame], None] | None = None
        self._handler: Callable[[Link, Frame], None] | None = None
        self._lost_handler: Callable[[Link, BaseException | None], None] | None = None
        self._backlog: list[Frame] = []
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._linger: asyncio.TimerHandle | None = None
        self._scratch: memoryview | None = None
        self._spare: socket.socket | None = None  # a second descriptor, to read what is left

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Link {self.label} peer={self.peer} {state}>"

    # -- wiring ------------------------------------------------------------------------
    def set_handler(self, handler: Callable[[Link, Frame], None],
                    lost_handler: Callable[[Link, BaseException | None], None]) -> None:
        """Install the frame and loss handlers; replay frames that were waiting."""
        self._handler = handler
        self._lost_handler = lost_handler
        self.on_hello = None
        backlog, self._backlog = self._backlog, []
        for frame in backlog:
            if self.ignoring:
                break
            self._dispatch(frame)
        if self.closed:
            lost_handler(self, self.error)

    # -- asyncio protocol callbacks --------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if sock is not None:
            # The event loop closes a transport at once when a *write* fails (the peer died),
            # without reading what is still queued; this descriptor lets us read it then.
            with contextlib.suppress(OSError, ValueError, AttributeError):
                self._spare = socket.socket(fileno=os.dup(sock.fileno()))
        # Pause at the first byte left unsent, resume once everything is out: see drain().
        # (asyncio's own TLS transports would pause at size >= high; ours are plain sockets.)
        is_tls = transport.get_extra_info("sslcontext") is not None
        transport.set_write_buffer_limits(high=1 if is_tls else 0, low=0)
        if not self.connected.done():
            self.connected.set_result(None)
        if self._tls_settings is not None:
            self._session = _TLSSession(*self._tls_settings)
            self._tls_step()
        elif not self.handshake.done():
            self.handshake.set_result(None)

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        """The TLS session's SSL object (peer certificate etc.), or None for a plain link."""
        if self._session is not None:
            return self._session.ssl
        return self.transport.get_extra_info("ssl_object") if self.transport is not None else None

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.ignoring:
            if self._scratch is None:
                self._scratch = memoryview(bytearray(64 * 1024))
            return self._scratch
        if self._session is not None:
            return self._session.view
        return self.decoder.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.bytes_received += nbytes
        if self.ignoring:
            return
        session = self._session
        if session is not None:
            session.incoming.write(session.view[:nbytes])
            if not session.done:
                self._tls_step()
                if not session.done:
                    return
            self._decrypt()
            return
        self._decode(nbytes)

    def _decode(self, nbytes: int) -> bool:
        """Account ``nbytes`` of plaintext in the decoder's buffer; dispatch the frames.

        Returns False once the link stopped taking frames (the peer broke the protocol, or
        is being ignored).
        """
        try:
            frames = self.decoder.buffer_updated(nbytes)
        except RemoteProtocolError as exc:
            self.protocol_error(exc)
            return False
        for frame in frames:
            if self.ignoring:
                return False
            self._dispatch(frame)
        return not self.ignoring

    # -- TLS ---------------------------------------------------------------------------
    def _flush_tls(self) -> None:
        session = self._session
        if session is not None and session.outgoing.pending and self.transport is not None:
            if not self.transport.is_closing():
                self.transport.write(session.outgoing.read())

    def _tls_step(self) -> None:
        """Advance the TLS handshake with whatever ciphertext has arrived."""
        session = self._session
        assert session is not None
        try:
            session.ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush_tls()
            return
        except (ssl.SSLError, OSError) as exc:
            self._flush_tls()  # the alert telling the peer why
            self.error = exc
            self.ignoring = True
            if not self.handshake.done():
                self.handshake.set_exception(exc)
            if self.transport is not None:
                self.transport.close()
            return
        session.done = True
        self._flush_tls()
        pending, session.pending = session.pending, []
        for data in pending:
            self._send(data)
        if not self.handshake.done():
            self.handshake.set_result(None)
        self._decrypt()

    def _decrypt(self) -> None:
        """Move plaintext from the TLS session into the frame decoder, and dispatch frames."""
        session = self._session
        assert session is not None
        tls = session.ssl
        while not self.ignoring:
            buffer = self.decoder.get_buffer(-1)
            try:
                count = tls.read(len(buffer), buffer)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # the peer closed its TLS session
                self.peer_done = True
                break
            except ssl.SSLError as exc:
                self.error = exc
                self.ignoring = True
                if self.transport is not None:
                    self.transport.abort()
                return
            if not count or not self._decode(count):
                break
        self._flush_tls()  # post-handshake messages (session tickets, key updates)

    def _send(self, data: bytes | memoryview) -> None:
        """Write bytes on the link (encrypting them first on a TLS link)."""
        transport = self.transport
        assert transport is not None
        session = self._session
        if session is None:
            transport.write(data)
            return
        if not session.done:
            session.pending.append(bytes(data))
            return
        view = memoryview(data).cast("B")
        for start in range(0, len(view), _TLS_CHUNK):
            session.ssl.write(view[start : start + _TLS_CHUNK])
            transport.write(session.outgoing.read())

    def _dispatch(self, frame: Frame) -> None:
        if frame.kind == Kind.GOODBYE:
            self.peer_goodbye = True
            self.peer_done = True
        elif frame.kind == Kind.HELLO and self.on_hello is not None:
            try:
                self.on_hello(self, frame)
            except RemoteProtocolError as exc:
                self.protocol_error(exc)
            return
        handler = self._handler
        if handler is None:
            self._backlog.append(frame)
            return
        try:
            handler(self, frame)
        except RemoteProtocolError as exc:
            self.protocol_error(exc)

    def eof_received(self) -> bool | None:
        self.peer_done = True
        return None  # let the transport close once our own writes are flushed

    def read_available(self) -> None:
        """Read and dispatch, right now, the bytes from the peer that have reached this host."""
        if not self.closed:
            self._drain_spare()

    def _drain_spare(self, reads: int = 256) -> None:
        """Read (and dispatch) what the peer sent that the transport has not read yet.

        At most ``reads`` reads: a live peer streaming data cannot keep us here.
        """
        spare = self._spare
        if spare is None:
            return
        with contextlib.suppress(OSError):
            spare.setblocking(False)
            for _ in range(reads):
                if self.ignoring:
                    break
                buffer = self.get_buffer(-1)
                try:
                    count = spare.recv_into(buffer)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # reset: everything it sent before has been read
                    break
                if not count:
                    break
                self.buffer_updated(count)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self.ignoring and not self.closed:
            self._drain_spare()
        if self._spare is not None:
            with contextlib.suppress(OSError):
                self._spare.close()
            self._spare = None
        self.closed = True
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self.error is None:
            if exc is not None:
                self.error = exc
            elif not self.decoder.at_boundary and not self.ignoring:
                self.error = ConnectionError("the link closed in the middle of a frame")
        if not self.connected.done():
            self.connected.set_exception(ConnectionError("connection lost before it was made"))
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake_drain()
        if not self.handshake.done():
            self.handshake.set_exception(self.error or ConnectionResetError("the link closed during the handshake"))
        if self._lost_handler is not None:
            self._lost_handler(self, self.error)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drain()

    # -- actions ---------------------------------------------------------------------
    def protocol_error(self, exc: RemoteProtocolError) -> None:
        """The peer broke the protocol: drop the link (its frames are ignored from now on)."""
        if self.error is None:
            self.error = exc
        log.warning("Link %s to player %s: %s; dropping the link", self.label, self.peer, exc)
        self.ignoring = True
        if self.transport is not None:
            self.transport.abort()

    @property
    def writable(self) -> bool:
        """True while frames written to this link can reach the peer."""
        return not (self.closed or self.said_goodbye or self.peer_done or self.ignoring or self.excluding
                    or self.transport is None or self.transport.is_closing())

    def write(self, header: bytes, parts: list[bytes | memoryview], nbytes: int) -> bool:
        """Queue one frame (header + payload parts).  Returns False if it was dropped.

        Never raises because the peer is gone: a frame for a closed link is counted in
        :attr:`frames_dropped` and discarded.
        """
        if not self.writable:
            self.frames_dropped += 1
            return False
        if nbytes <= _SMALL_WRITE:
            self._send(header + b"".join(parts) if len(parts) != 1 else header + parts[0])
        else:
            self._send(header)
            for part in parts:
                self._send(part)
        self.bytes_sent += HEADER_SIZE + nbytes
        return True

    def write_raw(self, data: bytes) -> bool:
        """Queue already-framed bytes.  Returns False if they were dropped."""
        if not self.writable:
            self.frames_dropped += 1
            return False
        self._send(data)
        self.bytes_sent += len(data)
        return True

    def buffered(self) -> int:
        """Bytes written but not yet handed to the operating system."""
        if self.transport is None or self.closed:
            return 0
        return self.transport.get_write_buffer_size()

    def needs_drain(self, borrowed: bool) -> bool:
        """Whether a sender must wait for :meth:`drain` before returning.

        ``borrowed`` says a frame written since the last drain referenced the caller's
        memory (a large array): the send must not return while any of it is still queued,
        as the caller may then modify it.  Otherwise only a large backlog makes it wait.
        """
        if not self._paused:  # with our high-water mark, not paused means nothing queued
            return False
        size = self.buffered()
        return size > 0 if borrowed else size > SOFT_WRITE_LIMIT

    async def drain(self) -> None:
        """Wait until every queued byte went to the OS, or the link is gone."""
        if not self._paused or self.closed or not self.buffered():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        try:
            await waiter
        finally:
            with contextlib.suppress(ValueError):
                self._drain_waiters.remove(waiter)

    def _wake_drain(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def goodbye(self, linger: float) -> None:
        """Close cleanly: say goodbye, stop writing, and close when the peer has done so too.

        The link keeps reading (so nothing the peer sent is lost to a reset) until the peer
        closes its side, or ``linger`` seconds pass, whichever comes first.
        """
        if self.closed or self.said_goodbye or self.transport is None:
            return
        self.said_goodbye = True
        transport = self.transport
        if transport.is_closing():
            return
        self._send(_goodbye_frame())
        if self.peer_done:
            transport.close()
            return
        if transport.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                transport.write_eof()
        self._linger = asyncio.get_running_loop().call_later(linger, self.abort)

    def close_after_peer(self) -> None:
        """The peer said goodbye: flush what we queued, then close."""
        if self.transport is not None and not self.closed and not self.transport.is_closing():
            self.transport.close()

    def ignore(self) -> None:
        """Stop dispatching (and sending) frames; keep reading until the peer closes.

        Used for a peer left out by a shrink: the link stays open so the EXCLUDED notice
        written just before is read by the peer before it sees the link close, even over TLS
        (which cannot half-close).
        """
        self.ignoring = True

    def fileno(self) -> int:
        """The socket's file descriptor, or -1."""
        if self.closed or self.transport is None:
            return -1
        sock = self.transport.get_extra_info("socket")
        try:
            return sock.fileno() if sock is not None else -1
        except (OSError, ValueError):
            return -1

    def abort(self) -> None:
        """Close at once, discarding anything unsent."""
        if self.transport is not None and not self.closed:
            self.transport.abort()


def describe_loss(error: BaseException | None, goodbye: bool) -> str:
    """A short human explanation of why a link ended."""
    if isinstance(error, RemoteProtocolError):
        return f"sent invalid data ({error})"
    if isinstance(error, ssl.SSLError):
        return f"failed (TLS error: {error.reason or error})"
    if error is not None:
        return f"failed (link lost: {type(error).__name__}: {error})"
    if goodbye:
        return "left (closed its link)"
    return "failed (link closed)"


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
        self._comms: dict[int, AsyncSocketCommunicator] = {}
        self._refs: dict[int, int] = dict.fromkeys(self.links, 0)
        self._held: dict[int, list[tuple[int, Frame]]] = {}
        self._held_bytes: dict[int, int] = dict.fromkeys(self.links, 0)
        self._retired: dict[int, Callable[[int, Frame], None] | None] = {}
        for peer, link in self.links.items():
            link.peer = peer
            link.decoder.max_payload = self.limits.max_frame_size
        for link in self.links.values():
            link.set_handler(self._on_frame, self._on_lost)

    def __repr__(self) -> str:
        return f"<Endpoint rank={self.rank} world_size={self.world_size} comms={len(self._comms)}>"

    # -- communicators ---------------------------------------------------------------
    def register(self, comm: AsyncSocketCommunicator) -> None:
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
                comm._on_frame(peer, frame)
            except RemoteProtocolError as exc:
                self.links[peer].protocol_error(exc)
        for peer in comm.peers:
            link = self.links[peer]
            if link.closed or link.peer_done:
                comm._on_peer_lost(peer, link.error, link.peer_goodbye)

    def retire(self, comm: AsyncSocketCommunicator,
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
            comm._on_peer_excluded(peer)

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

    def communicators(self) -> list[AsyncSocketCommunicator]:
        """The communicators currently using these links."""
        return list(self._comms.values())

    # -- link callbacks --------------------------------------------------------------
    def _on_frame(self, link: Link, frame: Frame) -> None:
        peer = link.peer
        assert peer is not None
        kind = frame.kind
        if kind == Kind.DATA or kind == Kind.CONTROL:
            comm = self._comms.get(frame.comm)
            if comm is not None:
                comm._on_frame(peer, frame)
                return
            if frame.comm in self._retired:
                tombstone = self._retired[frame.comm]
                if tombstone is not None and kind == Kind.CONTROL:
                    tombstone(peer, frame)
                return
            self._hold(peer, frame)
        elif kind == Kind.GOODBYE:
            for comm in list(self._comms.values()):
                comm._on_peer_lost(peer, None, True)
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
            comm._on_peer_lost(peer, error, link.peer_goodbye)

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


