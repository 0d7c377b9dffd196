"""A player's listening socket: :class:`Listener` and :func:`listen`.

Accepted links are kept (unclaimed) until they have sent their JOIN, which the set-up
code (:mod:`._setup`) takes with :meth:`Listener.next_join` and then accepts
(:meth:`Listener.claim`) or refuses.  Closing the listener drops every link that was never
claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from typing import Any

from .._core import handshake
from .._core.framing import Frame
from .._core.handshake import HelloType
from .._failures import describe_ssl_error
from .._transport import Limits, Link
from ..errors import RemoteProtocolError
from ..tls import TLSConfig
from ._addresses import format_address, parse_address
from ._links import wait_closed
from ._timer import Timer

# Set-up logs under the name of the public module, :mod:`cicada_async.communicator.connect`.
log = logging.getLogger("cicada_async.communicator.connect")

__all__ = ["Listener", "listen"]


class Listener:
    """A listening socket; accepted links wait here until their JOIN is handled."""

    def __init__(self, *, name: str, rank: int | None, limits: Limits, tls: TLSConfig | None = None) -> None:
        self.name = name
        self.rank = rank
        self.limits = limits
        self.tls = tls
        self.address = ""
        self.failures: list[str] = []  # authentication failures seen while accepting
        self._server: asyncio.AbstractServer | None = None
        self._path: str | None = None
        self._joins: asyncio.Queue[tuple[Link, Any]] = asyncio.Queue()
        self._unclaimed: set[Link] = set()
        self._closing: list[Link] = []

    def __repr__(self) -> str:
        return f"<Listener {self.address}>"

    def make_link(self) -> Link:
        """A new server-side link for an accepted connection (the protocol factory of the server)."""
        link = Link(max_payload=handshake.MAX_HELLO, label=f"{self.name}:{self.rank}<-?",
                    tls=self.tls.server if self.tls is not None else None, server_side=True)
        link.on_hello = self._on_hello
        self._unclaimed.add(link)
        if self.tls is not None:
            link.handshake.add_done_callback(lambda future: self._handshake_done(link, future))
        return link

    def _handshake_done(self, link: Link, future: asyncio.Future[None]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            return
        transport = link.transport
        peername = transport.get_extra_info("peername") if transport is not None else None
        address = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else str(peername or "?")
        self.record_auth_failure(describe_ssl_error(error, address, None))
        self._unclaimed.discard(link)

    def _on_hello(self, link: Link, frame: Frame) -> None:
        if frame.tag != HelloType.JOIN or link.peer is not None:
            raise RemoteProtocolError("expected one JOIN to open the link")
        message = handshake.parse_hello(frame)
        link.peer = -1  # a JOIN was received; the real rank is set once it is accepted
        self._joins.put_nowait((link, message))

    def record_auth_failure(self, text: str) -> None:
        """Log an authentication failure of a would-be peer and keep it in :attr:`failures`
        (reported if the world is still incomplete at the deadline)."""
        message = f"Comm {self.name} player {self.rank}: {text}"
        log.warning("%s", message)
        self.failures.append(text)

    async def next_join(self) -> tuple[Link, Any]:
        """Wait for the next accepted link that has sent its JOIN."""
        return await self._joins.get()

    async def aclose(self) -> None:
        """:meth:`close`, then wait (briefly) until the dropped links are really gone."""
        self.close()
        await wait_closed(self._closing)

    def claim(self, link: Link) -> None:
        """The link was accepted into a world: the listener no longer owns it."""
        self._unclaimed.discard(link)

    def close(self) -> None:
        """Stop listening, and drop accepted links that were never claimed."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self._closing = list(self._unclaimed)
        for link in self._closing:
            link.abort()
        self._unclaimed.clear()
        if self._path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._path)
            self._path = None


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
        server = await loop.create_server(listener.make_link, host, port, reuse_address=True, backlog=128)
        sockname = server.sockets[0].getsockname()
        listener.address = format_address("tcp", (host, sockname[1]))
    else:
        path = where
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)
        server = await loop.create_unix_server(listener.make_link, path, backlog=128)
        listener._path = path
        listener.address = format_address("file", path)
    listener._server = server
    return listener
