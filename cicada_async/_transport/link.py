"""One asyncio protocol per stream to one other player: frames in, frames out.

A :class:`Link` is the asyncio protocol of one stream (TCP, Unix socket or TLS) to one
other player.  Its reader is the event loop's read callback: bytes go straight into the
:class:`~cicada_async._core.framing.FrameDecoder` (large payloads land in their final
buffer) and every complete frame is handed, in arrival order, to the link's handler.

Small frames written in one turn of the event loop share a write: the first goes out at
once, later ones are joined and written when the loop comes round (one system call for many
frames; a lone frame is not delayed).  Large frames are written from the caller's buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import Callable

from .._core.framing import Frame, FrameDecoder, Kind, encode_header
from ..errors import RemoteProtocolError
from .tls_session import TLSSession

log = logging.getLogger(__name__)

__all__ = ["SOFT_WRITE_LIMIT", "Link"]

SOFT_WRITE_LIMIT = 4 << 20
"""Writes buffered beyond this make a send wait for the link to drain (bounded memory)."""
_SMALL_WRITE = 16 * 1024
_GOODBYE = encode_header(Kind.GOODBYE, 0, 0, 0)


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # a handshake failure nobody awaited is still not "unretrieved"


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
        self._session: TLSSession | None = None
        self.transport: asyncio.Transport | None = None
        self.peer: int | None = None
        self._abort_on_connect = False
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
        # Called (if set) for every other frame that arrives before a handler is installed,
        # instead of keeping it: a listener refuses them from a connection not yet accepted.
        self.on_early: Callable[[Link, Frame], None] | None = None
        self._handler: Callable[[Link, Frame], None] | None = None
        self._lost_handler: Callable[[Link, BaseException | None], None] | None = None
        self._backlog: list[Frame] = []
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._linger: asyncio.TimerHandle | None = None
        self._scratch: memoryview | None = None
        self._spare: socket.socket | None = None  # a second descriptor, to read what is left
        self._loop = loop

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
        self.on_early = None
        backlog, self._backlog = self._backlog, []
        for frame in backlog:
            if self.ignoring:
                break
            self._dispatch(frame)
        if self.closed:
            lost_handler(self, self.error)

    def promote(self, max_payload: int) -> None:
        """The peer is authenticated: accept frames up to ``max_payload`` and use full-size
        buffers (a link starts with small ones, so a stranger's connection holds little)."""
        self.decoder.allow(max_payload)
        if self._session is not None:
            self._session.grow()

    # -- asyncio protocol callbacks --------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not subclasses
        if self._abort_on_connect:  # aborted before the loop connected it (a burst of accepts)
            self.connected.set_result(None)
            if not self.handshake.done():
                self.handshake.set_exception(ConnectionAbortedError("the link was aborted before it connected"))
                self.handshake.exception()  # retrieved: nobody waits for a link we dropped ourselves
            transport.abort()  # type: ignore[attr-defined]
            return
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
        transport.set_write_buffer_limits(high=1 if is_tls else 0, low=0)  # type: ignore[attr-defined]
        if not self.connected.done():
            self.connected.set_result(None)
        if self._tls_settings is not None:
            self._session = TLSSession(*self._tls_settings, write=self._write_ciphertext)
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
            session.received(nbytes)
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
    def _write_ciphertext(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _tls_step(self) -> None:
        """Advance the TLS handshake with whatever ciphertext has arrived."""
        session = self._session
        assert session is not None
        try:
            if not session.handshake_step():
                return
        except (ssl.SSLError, OSError) as exc:
            self.error = exc
            self.ignoring = True
            if not self.handshake.done():
                self.handshake.set_exception(exc)
            if self.transport is not None:
                self.transport.close()
            return
        if not self.handshake.done():
            self.handshake.set_result(None)
        self._decrypt()

    def _decrypt(self) -> None:
        """Move plaintext from the TLS session into the frame decoder, and dispatch frames."""
        session = self._session
        assert session is not None
        while not self.ignoring:
            try:
                count = session.decrypt(self.decoder.get_buffer(-1))
            except ssl.SSLError as exc:
                self.error = exc
                self.ignoring = True
                if self.transport is not None:
                    self.transport.abort()
                return
            if count is None:  # the peer closed its TLS session
                self.peer_done = True
                break
            if not count or not self._decode(count):
                break
        session.flush()  # post-handshake messages (session tickets, key updates)

    def _send(self, data: bytes | memoryview) -> None:
        """Write bytes on the link now (encrypting them first on a TLS link)."""
        transport = self.transport
        assert transport is not None
        if self._session is None:
            transport.write(data)
        else:
            self._session.encrypt(data)

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
            if self.on_early is not None:
                try:
                    self.on_early(self, frame)
                except RemoteProtocolError as exc:
                    self.protocol_error(exc)
                    return
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
        if self.peer is None or self.peer < 0:  # not accepted yet: the listener reports it, sparingly
            log.debug("Link %s from an unaccepted peer: %s; dropping the link", self.label, exc)
        else:
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
        if nbytes <= _SMALL_WRITE:  # one write: header and payload together
            self._send(header + parts[0] if len(parts) == 1 else header + b"".join(parts))
        else:
            self._send(header)
            for part in parts:
                self._send(part)
        self.bytes_sent += len(header) + nbytes
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
        self._send(_GOODBYE)
        if self.peer_done:
            transport.close()
            return
        if transport.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                transport.write_eof()
        self._linger = asyncio.get_running_loop().call_later(linger, self.abort)

    def close_after_peer(self) -> None:
        """The peer said goodbye: close (the transport sends what it still holds first)."""
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
        """Close at once, discarding anything unsent (at once when connected, if not yet)."""
        if self.transport is None:
            self._abort_on_connect = True
        elif not self.closed:
            self.transport.abort()
