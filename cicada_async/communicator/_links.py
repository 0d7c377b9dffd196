"""One link during set-up: opening it, the opener's side of the hello exchange, closing it.

:func:`open_link` connects (retrying while nobody listens yet) and completes the TLS
handshake; :func:`join` sends the JOIN and checks the answer; :func:`reject` refuses a
link with a reason; :func:`abort_all` and :func:`wait_closed` drop links and wait until
their transports are really gone.  The other side of the exchange (accepting JOINs) is
in :mod:`._setup`, over a :class:`~._listener.Listener`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from .._core import handshake
from .._core.framing import Frame
from .._core.handshake import HelloType, Rejected
from .._failures import HANDSHAKE_ERRORS, closed_during_handshake, nobody_listening, tls_handshake_failed
from .._transport import Link
from ..errors import AuthenticationError, CommunicatorError, RemoteProtocolError, Timeout, TokenMismatch
from ..tls import TLSConfig
from ._addresses import parse_address

# Set-up logs under the name of the public module, :mod:`cicada_async.communicator.connect`.
log = logging.getLogger("cicada_async.communicator.connect")

__all__ = ["JOIN_ATTEMPTS", "ClosedBeforeReply", "abort_all", "check_peer_rank", "join", "open_and_join", "open_link",
           "reject", "rejection_error", "wait_closed"]


async def open_link(address: str, *, label: str, tls: TLSConfig | None, deadline: float,
                    peer: int | None = None) -> Link:
    """Connect to ``address``, retrying while nobody listens there yet, until ``deadline``.

    With TLS, a failed handshake raises :class:`AuthenticationError` at once.
    """
    scheme, where = parse_address(address)
    loop = asyncio.get_running_loop()
    delay = 0.005
    # Certificates name ranks, not hosts (no host name is checked): this is only the SNI,
    # which an IPv6 zone (``%eth0``) does not belong in.
    server_hostname = (where[0].partition("%")[0] if scheme == "tcp" else "localhost") if tls is not None else None

    def factory() -> Link:
        return Link(max_payload=handshake.MAX_HELLO, label=label, tls=tls.client if tls is not None else None,
                    server_side=False, server_hostname=server_hostname)

    while True:
        try:
            if scheme == "tcp":
                host, port = where
                _, link = await loop.create_connection(factory, host, port)
            else:
                _, link = await loop.create_unix_connection(factory, where)
        except OSError as exc:  # refused, no such socket file, reset...
            # Nobody listens there yet (the peer is still starting): back off and retry.
            await _backoff(loop, deadline, delay, address, exc)
            delay = min(delay * 2, 0.25)
            continue
        try:
            await link.handshake
        except HANDSHAKE_ERRORS as exc:
            await abort_all([link])
            raise tls_handshake_failed(exc, address, peer) from exc
        return link


async def _backoff(loop: asyncio.AbstractEventLoop, deadline: float, delay: float, address: str,
                   exc: BaseException) -> None:
    if loop.time() + delay >= deadline:
        raise nobody_listening(address, exc) from None
    await asyncio.sleep(delay)


def rejection_error(prefix: str, verdict: Rejected, *, remote: bool) -> CommunicatorError:
    """The error for a link refused with ``verdict``: by the peer (``remote``) or by us."""
    where = "refused by the peer" if remote else "refused"
    text = f"{prefix}: link {where}: {verdict.message}"
    if verdict.reason == "token":
        return TokenMismatch(text)
    if verdict.reason == "auth":
        return AuthenticationError(text)
    if verdict.reason == "aborted":  # the peer gave up at its set-up deadline
        return Timeout(text)
    return CommunicatorError(text)


async def join(link: Link, message: dict[str, Any], *, expect: int, world_size: int,
               with_addresses: bool, prefix: str, tls: bool = False, address: str = "") -> list[str] | None:
    """Send a JOIN on a fresh link and wait for the answer."""
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[Frame] = loop.create_future()

    def on_hello(_link: Link, frame: Frame) -> None:
        if reply.done():
            raise RemoteProtocolError("more than one handshake reply")
        reply.set_result(frame)

    def on_lost(_future: asyncio.Future[None]) -> None:
        if not reply.done():
            reply.set_exception(ClosedBeforeReply(
                closed_during_handshake(prefix, expect, link.error, tls=tls, address=address)))

    link.on_hello = on_hello
    link.lost.add_done_callback(on_lost)
    link.write_raw(handshake.hello_frame(HelloType.JOIN, message))
    frame = await reply
    answer = handshake.parse_hello(frame, max_items=handshake.HELLO_ITEMS + world_size)
    if frame.tag == HelloType.REJECT:
        raise rejection_error(prefix, handshake.check_reject(answer), remote=True)
    if frame.tag != HelloType.ACCEPT:
        raise RemoteProtocolError(f"{prefix}: player {expect} answered the JOIN with a JOIN")
    try:
        return handshake.check_accept(answer, expected_rank=expect, world_size=world_size,
                                      with_addresses=with_addresses)
    except Rejected as verdict:
        raise rejection_error(prefix, verdict, remote=False) from None


class ClosedBeforeReply(Exception):
    """The link closed before the peer answered our JOIN; ``error`` is what to raise if we
    give up.  (A listener drops connections when strangers flood it, so this is retried.)"""

    def __init__(self, error: CommunicatorError) -> None:
        super().__init__(str(error))
        self.error = error


JOIN_ATTEMPTS = 5
"""How often a player connects and sends its JOIN when the link closes before an answer."""


async def open_and_join(address: str, message: dict[str, Any], *, label: str, tls: TLSConfig | None,
                        deadline: float, expect: int, world_size: int, with_addresses: bool,
                        prefix: str, progress: dict[int, str] | None = None) -> tuple[Link, list[str] | None]:
    """Connect to player ``expect`` at ``address``, send ``message`` (a JOIN) and check the
    answer (with TLS, also the certificate's rank); return the link and the ACCEPT's addresses.

    A link that closes before the answer is opened again, up to :data:`JOIN_ATTEMPTS`
    times while the deadline allows.  ``progress[expect]`` says how far we got, for the
    set-up error if the deadline passes.
    """
    loop = asyncio.get_running_loop()
    delay = 0.005
    for attempt in range(1, JOIN_ATTEMPTS + 1):
        if progress is not None:
            progress[expect] = f"nobody accepted a connection at {address} yet"
        try:
            link = await open_link(address, label=label, tls=tls, deadline=deadline, peer=expect)
        except AuthenticationError as exc:
            raise AuthenticationError(f"{prefix}: {exc}") from exc
        if progress is not None:
            progress[expect] = (f"connected to {address}; no answer yet (it answers once every player "
                                "has joined)" if with_addresses else
                                f"connected to {address} but no answer to our JOIN "
                                "(is another program listening there, or is the player stuck?)")
        try:
            answer = await join(link, message, expect=expect, world_size=world_size,
                                with_addresses=with_addresses, prefix=prefix, tls=tls is not None, address=address)
            if tls is not None:
                check_peer_rank(tls, link, expect, prefix)
        except ClosedBeforeReply as closed:
            await abort_all([link])
            if attempt == JOIN_ATTEMPTS or loop.time() + delay >= deadline:
                raise closed.error from None
            log.debug("%s: %s; connecting again", prefix, closed.error)
            await asyncio.sleep(delay)
            delay = min(delay * 4, 0.25)
            continue
        except BaseException:
            await abort_all([link])
            raise
        return link, answer
    raise AssertionError("unreachable")


def reject(link: Link, verdict: Rejected) -> None:
    """Refuse ``link``: send a REJECT giving ``verdict``, then close it."""
    link.write_raw(handshake.hello_frame(HelloType.REJECT, handshake.reject_message(verdict.reason, verdict.message)))
    link.goodbye(1.0)


def check_peer_rank(tls: TLSConfig, link: Link, peer: int, prefix: str) -> None:
    """Raise :class:`AuthenticationError` (starting with ``prefix``) unless the certificate of
    the peer on ``link`` names ``peer``."""
    try:
        tls.check_rank(link, peer)
    except AuthenticationError as exc:
        raise AuthenticationError(f"{prefix}: {exc}") from exc


async def wait_closed(links: Iterable[Link], timeout: float = 1.0) -> None:
    """Wait (at most ``timeout``) until the transports of ``links`` have finished closing, so
    nothing is left half-closed when the caller's event loop stops."""
    pending = [link.lost for link in links if not link.lost.done() and link.transport is not None]
    if pending:
        await asyncio.wait(pending, timeout=timeout)


async def abort_all(links: Iterable[Link]) -> None:
    """Abort every link of ``links``, then :func:`wait_closed` for them."""
    links = list(links)
    for link in links:
        link.abort()
    await wait_closed(links)
