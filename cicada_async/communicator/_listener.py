"""A player's listening socket: :class:`Listener` and :func:`listen`.

Accepted links are kept (unclaimed) until they have sent their JOIN, which the set-up
code (:mod:`._setup`) takes with :meth:`Listener.next_join` and then accepts
(:meth:`Listener.claim`) or refuses (:meth:`Listener.refuse`).  Closing the listener drops
every link that was never claimed.

Until a connection has proved the token it is a stranger's, and holds little: its frames
may carry at most :data:`~cicada_async._core.handshake.MAX_JOIN` bytes (and small buffers),
it may send nothing but its JOIN until it is accepted (any other frame drops it, rather than
being kept for the link's future owner), it is dropped if it has not sent its JOIN within
``Limits.hello_timeout`` seconds, and at
most ``Limits.max_pending_connections`` are held at once (a new one drops the oldest that
has not sent a JOIN, else the oldest).  An honest player sends its JOIN as soon as it is
connected, and retries if it is dropped before an answer (:mod:`._links`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
import weakref
from dataclasses import dataclass
from typing import Any

from .._core import handshake
from .._core.framing import Frame, Kind
from .._core.handshake import HelloType, Rejected
from .._failures import describe_ssl_error
from .._transport import Limits, Link
from ..errors import RemoteProtocolError
from ..tls import TLSConfig
from ._addresses import format_address, parse_address
from ._links import reject, wait_closed
from ._timer import Timer

# Set-up logs under the name of the public module, :mod:`cicada_async.communicator.connect`.
log = logging.getLogger("cicada_async.communicator.connect")

__all__ = ["Listener", "Refusal", "listen"]


class Listener:
    """A listening socket; accepted links wait here until their JOIN is handled."""

    def __init__(self, *, name: str, rank: int | None, limits: Limits, tls: TLSConfig | None = None) -> None:
        self.name = name
        self.rank = rank
        self.limits = limits
        self.tls = tls
        self.address = ""
        self.failures: list[str] = []  # authentication failures seen while accepting
        self.refusals: list[Refusal] = []  # connections refused while accepting
        self.dropped = 0  # connections dropped unheard: over the pending cap, or silent too long
        self._server: asyncio.AbstractServer | None = None
        self._path: str | None = None
        self._joins: asyncio.Queue[tuple[Link, Any]] = asyncio.Queue()
        # Unclaimed links, oldest first, each with its hello deadline (cancelled once claimed).
        self._unclaimed: dict[Link, asyncio.TimerHandle | None] = {}
        self._closing: list[Link] = []
        self._dropped: weakref.WeakSet[Link] = weakref.WeakSet()  # dropped by us: not their failure

    def __repr__(self) -> str:
        return f"<Listener {self.address}>"

    def make_link(self) -> Link:
        """A new server-side link for an accepted connection (the protocol factory of the server)."""
        self._make_room()
        link = Link(max_payload=handshake.MAX_JOIN, label=f"{self.name}:{self.rank}<-?",
                    tls=self.tls.server if self.tls is not None else None, server_side=True)
        link.on_hello = self._on_hello
        link.on_early = self._on_early
        loop = asyncio.get_running_loop()
        self._unclaimed[link] = loop.call_later(self.limits.hello_timeout, self._silent_too_long, link)
        link.lost.add_done_callback(lambda _future: self._lost(link))
        if self.tls is not None:
            link.handshake.add_done_callback(lambda future: self._handshake_done(link, future))
        return link

    def _make_room(self) -> None:
        """Drop unclaimed links until a new one fits under the cap: the oldest that has not
        sent a JOIN (a stranger's, most likely), else the oldest."""
        cap = max(1, self.limits.max_pending_connections)
        while len(self._unclaimed) >= cap:
            victim = next((link for link in self._unclaimed if link.peer is None), None)
            if victim is None:
                victim = next(iter(self._unclaimed))
            self._drop(victim, f"over the limit of {cap} connections not yet accepted")

    def _silent_too_long(self, link: Link) -> None:
        if link in self._unclaimed and link.peer is None:
            self._drop(link, f"no JOIN within {self.limits.hello_timeout:g}s")

    def _drop(self, link: Link, why: str) -> None:
        self._forget(link)
        self._dropped.add(link)
        self.dropped += 1
        if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
            log.warning("Comm %s player %s: dropped a connection from %s: %s (%d dropped so far)",
                        self.name, self.rank, _peer_address(link), why, self.dropped)
        link.abort()

    def _lost(self, link: Link) -> None:
        """An unclaimed link ended: if it broke the protocol (an oversized or invalid frame
        before its JOIN was accepted), record it as a refusal, logged sparingly (a stranger
        must not flood the log either)."""
        if link in self._unclaimed and isinstance(link.error, RemoteProtocolError):
            self._record(Refusal("protocol", None, f"{link.error} (from {_peer_address(link)})"),
                         f"Comm {self.name} player {self.rank}")
        self._forget(link)

    def _record(self, refusal: Refusal, prefix: str) -> None:
        self.refusals.append(refusal)
        if len(self.refusals) <= 10 or len(self.refusals) % 1000 == 0:
            more = f" ({len(self.refusals)} so far; logging only every 1000th from now on)" \
                if len(self.refusals) == 10 else ""
            log.warning("%s: refused a connection: %s%s", prefix, refusal.text, more)

    def _forget(self, link: Link) -> None:
        timer = self._unclaimed.pop(link, None)
        if timer is not None:
            timer.cancel()

    def _handshake_done(self, link: Link, future: asyncio.Future[None]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is None or link in self._dropped:
            return
        self.record_auth_failure(describe_ssl_error(error, _peer_address(link), None))
        self._forget(link)

    def _on_hello(self, link: Link, frame: Frame) -> None:
        if frame.tag != HelloType.JOIN or link.peer is not None:
            raise RemoteProtocolError("expected one JOIN to open the link")
        try:
            message = handshake.parse_hello(frame)
        except RemoteProtocolError as exc:
            self.refuse(link, None, claimed=None, prefix=f"Comm {self.name} player {self.rank}",
                        text=f"an invalid JOIN ({exc})")
            return
        link.peer = -1  # a JOIN was received; the real rank is set once it is accepted
        self._joins.put_nowait((link, message))

    @staticmethod
    def _on_early(link: Link, frame: Frame) -> None:
        # Only a JOIN may come before the link is accepted (the opener waits for the answer);
        # anything else would be kept for the link's future owner: a stranger's memory.
        raise RemoteProtocolError(f"a {Kind(frame.kind).name} frame before the JOIN was accepted")

    def record_auth_failure(self, text: str) -> None:
        """Log an authentication failure of a would-be peer and keep it in :attr:`failures`
        (reported if the world is still incomplete at the deadline)."""
        message = f"Comm {self.name} player {self.rank}: {text}"
        log.warning("%s", message)
        self.failures.append(text)

    async def next_join(self) -> tuple[Link, Any]:
        """Wait for the next accepted link that has sent its JOIN."""
        while True:
            link, message = await self._joins.get()
            if link in self._unclaimed:  # not dropped meanwhile
                return link, message

    def refuse(self, link: Link, verdict: Rejected | None, *, claimed: int | None, prefix: str,
               text: str | None = None) -> None:
        """Refuse ``link``: answer REJECT with ``verdict`` (or just drop it if None), log it,
        and record it in :attr:`refusals` (the set-up error names it if the world is still
        incomplete at the deadline)."""
        what = text if text is not None else verdict.message if verdict is not None else "refused"
        refusal = Refusal(verdict.reason if verdict is not None else "protocol", claimed,
                          f"{what} (from {_peer_address(link)})")
        self._record(refusal, prefix)
        self._forget(link)
        if verdict is None:
            link.abort()
        else:
            reject(link, verdict)

    def refuse_waiting(self, verdict: Rejected) -> None:
        """Answer every link whose JOIN nobody has taken yet with ``verdict`` (set-up gave up)."""
        while not self._joins.empty():
            link, _ = self._joins.get_nowait()
            if link in self._unclaimed:
                self._forget(link)
                reject(link, verdict)

    async def aclose(self) -> None:
        """:meth:`close`, then wait (briefly) until the dropped links are really gone."""
        self.close()
        await wait_closed(self._closing)

    def claim(self, link: Link) -> None:
        """The link was accepted into a world: the listener no longer owns it, and its peer,
        authenticated now, may send full-size frames at once (it may finish set-up first)."""
        self._forget(link)
        link.on_early = None
        link.promote(self.limits.max_frame_size)

    def close(self) -> None:
        """Stop listening, and drop accepted links that were never claimed."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self._closing = list(self._unclaimed)
        for link in self._closing:
            self._forget(link)
            link.abort()
        if self._path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._path)
            self._path = None


@dataclass(frozen=True)
class Refusal:
    """A connection refused during set-up: the verdict's reason, the rank it claimed (if
    any) and what happened, with the address it came from."""

    reason: str
    claimed: int | None
    text: str


def _peer_address(link: Link) -> str:
    transport = link.transport
    peername = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peername, tuple) and len(peername) >= 2:
        return format_address("tcp", peername)[len("tcp://"):]  # [::1]:5000 for IPv6
    return str(peername or "a local socket")


def _remove_stale_socket(path: str) -> None:
    """Unlink a socket file at ``path`` that nobody listens on any more; raise if someone does."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return  # not a socket: binding fails with the OS's own error
    except FileNotFoundError:
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)  # a live listener answers at once (or its backlog is full)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # stale: left by a process that died
        return
    except BlockingIOError:
        pass  # a live listener with a full backlog
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"another process is listening on {path}; "
                  "choose another address or stop it first")


async def _tcp_server(loop: asyncio.AbstractEventLoop, listener: Listener, host: str, port: int,
                      attempts: int = 5) -> asyncio.Server:
    """Listen on every address of ``host``.  A name with both an IPv4 and an IPv6 address
    (``localhost`` on most systems) gets one socket per address; when the OS chooses the
    port, each would get a different one, so they are bound again on the first one's (a
    peer may try either address of the name, and must find this player on both)."""
    server = await loop.create_server(listener.make_link, host, port, reuse_address=True, backlog=128)
    for _ in range(attempts):
        ports = {sock.getsockname()[1] for sock in server.sockets}
        if port != 0 or len(ports) == 1:
            return server
        chosen = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        try:
            server = await loop.create_server(listener.make_link, host, chosen, reuse_address=True, backlog=128)
        except OSError as exc:  # taken on another address of the name meanwhile: try another port
            log.debug("listening on %s: port %d is taken on one of its addresses (%s); trying another",
                      host, chosen, exc)
            server = await loop.create_server(listener.make_link, host, 0, reuse_address=True, backlog=128)
    return server


async def listen(*, address: str, rank: int | None = None, name: str = "world",
                 timer: Timer | None = None, tls: TLSConfig | None = None,
                 limits: Limits | None = None) -> Listener:
    """Open a listening socket at ``address`` (a URL; port 0 or no port lets the OS choose).

    Returns a :class:`Listener` whose ``address`` is the URL others can connect to.  For
    ``file://`` addresses, a stale socket file left by a dead process is replaced.
    """
    del timer  # binding does not wait
    scheme, where = parse_address(address)
    listener = Listener(name=name, rank=rank, limits=limits or Limits(), tls=tls)
    loop = asyncio.get_running_loop()
    if scheme == "tcp":
        host, port = where
        server = await _tcp_server(loop, listener, host, port)
        sockname = server.sockets[0].getsockname()
        listener.address = format_address("tcp", (host, sockname[1]))
    else:
        path = where
        _remove_stale_socket(path)
        server = await loop.create_unix_server(listener.make_link, path, backlog=128)
        listener._path = path
        listener.address = format_address("file", path)
    listener._server = server
    return listener
