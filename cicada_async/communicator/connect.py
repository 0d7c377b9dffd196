"""Connection set-up: listening, opening links, and the hello handshake.

Low-level building blocks, used by :meth:`AsyncSocketCommunicator.run` and
:meth:`AsyncSocketCommunicator.connect`, and available for unusual deployments:

* :class:`Timer`: one deadline for the whole set-up (every step draws on it).
* :func:`listen`: open this player's listening socket.
* :func:`direct`: join a world when every player's address is known.
* :func:`rendezvous`: join a world when only rank 0's address is known; every player must
  give the same token.
* :func:`connect_world`: the whole thing (listen, rendezvous, communicator), with defaults
  from the ``CICADA_*`` environment variables.

Addresses are URLs: ``tcp://host:port``, ``tcp://host`` (the OS picks a free port) and
``file:///path/to/socket`` (a Unix socket).  Each pair of players shares one link, opened by
the higher rank; both sides check protocol version, communicator name, world size, ranks and
token (and, with TLS, the certificate's rank) before the link is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import ssl
import stat
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._core import handshake
from .._core.codec import decode, encode
from .._core.framing import Frame, Kind, encode_header
from .._core.handshake import HelloType, Rejected
from .._transport import Endpoint, Limits, Link
from ..errors import (
    AuthenticationError,
    CommunicatorError,
    RemoteProtocolError,
    Timeout,
    TokenMismatch,
)

log = logging.getLogger(__name__)

__all__ = [
    "Limits",
    "Listener",
    "TLSConfig",
    "Timer",
    "connect_world",
    "direct",
    "listen",
    "parse_address",
    "rendezvous",
]


class Timer:
    """A deadline for a multi-step operation, started at construction.

    Parameters
    ----------
    threshold:
        Seconds allowed in total.
    """

    def __init__(self, threshold: float) -> None:
        if not threshold > 0:
            raise ValueError(f"threshold must be a positive number of seconds, got {threshold!r}")
        self.threshold = threshold
        self.start = time.monotonic()

    @property
    def elapsed(self) -> float:
        """Seconds since the timer started."""
        return time.monotonic() - self.start

    @property
    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self.threshold - self.elapsed)

    @property
    def expired(self) -> bool:
        """True once the threshold has passed."""
        return self.elapsed >= self.threshold


@dataclass(frozen=True)
class TLSConfig:
    """TLS settings for a player's links (see :mod:`cicada_async.tls`).

    ``server`` and ``client`` are SSL contexts requiring certificates from both sides;
    ``check_rank(link, rank)`` raises :class:`AuthenticationError` unless the peer's
    certificate names ``rank``.
    """

    server: Any
    client: Any
    check_rank: Any


def parse_address(address: str) -> tuple[str, Any]:
    """Split a URL address into ``("tcp", (host, port))`` or ``("file", path)``.

    Raises ValueError for anything else.
    """
    if not isinstance(address, str):
        raise ValueError(f"address must be a URL string, got {address!r}")
    url = urllib.parse.urlparse(address)
    if url.scheme == "tcp":
        if not url.hostname:
            raise ValueError(f"address {address!r} lacks a host")
        try:
            port = url.port or 0
        except ValueError:
            raise ValueError(f"address {address!r} has an invalid port") from None
        return "tcp", (url.hostname, port)
    if url.scheme == "file":
        if not url.path:
            raise ValueError(f"address {address!r} lacks a path")
        return "file", url.path
    raise ValueError(f"address {address!r}: scheme must be tcp or file")


def _format_address(scheme: str, where: Any) -> str:
    if scheme == "file":
        return f"file://{where}"
    host, port = where[0], where[1]
    if ":" in host:
        host = f"[{host}]"
    return f"tcp://{host}:{port}"


def session_bytes(name: str, token: bytes, addresses: Sequence[str]) -> bytes:
    """Bytes identifying a world: equal on every player that joined it."""
    h = hashlib.blake2b(digest_size=16, person=b"cicada-session")
    for part in (name, token.hex(), *addresses):
        h.update(part.encode("utf-8") + b"\x00")
    return h.digest()


def _hello_frame(kind: HelloType, message: dict[str, Any]) -> bytes:
    payload = encode(message).tobytes()
    return encode_header(Kind.HELLO, kind, 0, len(payload)) + payload


def _parse_hello(frame: Frame) -> Any:
    if frame.tag not in (HelloType.JOIN, HelloType.ACCEPT, HelloType.REJECT):
        raise RemoteProtocolError(f"unknown handshake message {frame.tag}")
    return decode(frame.payload)


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

    def _make_link(self) -> Link:
        link = Link(max_payload=handshake.MAX_HELLO, label=f"{self.name}:{self.rank}<-?",
                    tls=self.tls.server if self.tls is not None else None, server_side=True)
        link.on_hello = self._on_hello
        self._unclaimed.add(link)
        if self.tls is not None:
            link.handshake.add_done_callback(lambda future: self._handshake_done(link, future))
        return link

    def _handshake_done(self, link: Link, future: asyncio.Future[None]) -> None:
        if future.cancelled() or future.exception() is None:
            return
        from ..tls import describe_ssl_error

        transport = link.transport
        peername = transport.get_extra_info("peername") if transport is not None else None
        address = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else str(peername or "?")
        self._auth_failure(describe_ssl_error(future.exception(), address, None))
        self._unclaimed.discard(link)

    def _on_hello(self, link: Link, frame: Frame) -> None:
        if frame.tag != HelloType.JOIN or link.peer is not None:
            raise RemoteProtocolError("expected one JOIN to open the link")
        message = _parse_hello(frame)
        link.peer = -1  # a JOIN was received; the real rank is set once it is accepted
        self._joins.put_nowait((link, message))

    def _auth_failure(self, text: str) -> None:
        message = f"Comm {self.name} player {self.rank}: {text}"
        log.warning("%s", message)
        self.failures.append(text)

    async def next_join(self) -> tuple[Link, Any]:
        """Wait for the next accepted link that has sent its JOIN."""
        return await self._joins.get()

    async def aclose(self) -> None:
        """:meth:`close`, then wait (briefly) until the dropped links are really gone."""
        self.close()
        await _wait_closed(self._closing)

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
        server = await loop.create_server(listener._make_link, host, port, reuse_address=True, backlog=128)
        sockname = server.sockets[0].getsockname()
        listener.address = _format_address("tcp", (host, sockname[1]))
    else:
        path = where
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)
        server = await loop.create_unix_server(listener._make_link, path, backlog=128)
        listener._path = path
        listener.address = _format_address("file", path)
    listener._server = server
    return listener


async def _open_link(address: str, *, label: str, tls: TLSConfig | None, deadline: float,
                     peer: int | None = None) -> Link:
    """Connect to ``address``, retrying while nobody listens there yet, until ``deadline``.

    With TLS, a failed handshake raises :class:`AuthenticationError` at once.
    """
    scheme, where = parse_address(address)
    loop = asyncio.get_running_loop()
    delay = 0.005
    server_hostname = (where[0] if scheme == "tcp" else "localhost") if tls is not None else None

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
        except (ssl.SSLError, OSError, ConnectionError) as exc:
            await _abort_all([link])
            from ..tls import describe_ssl_error

            raise AuthenticationError(describe_ssl_error(exc, address, peer)) from exc
        return link


async def _backoff(loop: asyncio.AbstractEventLoop, deadline: float, delay: float, address: str,
                   exc: BaseException) -> None:
    if loop.time() + delay >= deadline:
        raise TimeoutError(f"nobody accepted a connection at {address} ({exc})") from None
    await asyncio.sleep(delay)


def _rejection_error(prefix: str, verdict: Rejected, *, remote: bool) -> CommunicatorError:
    where = "refused by the peer" if remote else "refused"
    text = f"{prefix}: link {where}: {verdict.message}"
    if verdict.reason == "token":
        return TokenMismatch(text)
    if verdict.reason == "auth":
        return AuthenticationError(text)
    return CommunicatorError(text)


async def _join(link: Link, message: dict[str, Any], *, expect: int, world_size: int,
                with_addresses: bool, prefix: str, tls: bool = False, address: str = "") -> list[str] | None:
    """Send a JOIN on a fresh link and wait for the answer."""
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[Frame] = loop.create_future()

    def on_hello(_link: Link, frame: Frame) -> None:
        if reply.done():
            raise RemoteProtocolError("more than one handshake reply")
        reply.set_result(frame)

    def on_lost(_future: asyncio.Future[None]) -> None:
        if reply.done():
            return
        if tls:  # with TLS 1.3, a peer that refuses our certificate just drops the link
            from ..tls import describe_ssl_error

            error = link.error if isinstance(link.error, ssl.SSLError) else ConnectionResetError()
            reply.set_exception(AuthenticationError(f"{prefix}: {describe_ssl_error(error, address, expect)}"))
            return
        reply.set_exception(CommunicatorError(
            f"{prefix}: player {expect} closed the link during the handshake"
            + (f" ({link.error})" if link.error else "")
        ))

    link.on_hello = on_hello
    link.lost.add_done_callback(on_lost)
    link.write_raw(_hello_frame(HelloType.JOIN, message))
    frame = await reply
    answer = _parse_hello(frame)
    if frame.tag == HelloType.REJECT:
        raise _rejection_error(prefix, handshake.check_reject(answer), remote=True)
    if frame.tag != HelloType.ACCEPT:
        raise RemoteProtocolError(f"{prefix}: player {expect} answered the JOIN with a JOIN")
    try:
        return handshake.check_accept(answer, expected_rank=expect, world_size=world_size,
                                      with_addresses=with_addresses)
    except Rejected as verdict:
        raise _rejection_error(prefix, verdict, remote=False) from None


async def _wait_closed(links: Any, timeout: float = 1.0) -> None:
    """Wait (at most ``timeout``) until the transports of ``links`` have finished closing, so
    nothing is left half-closed when the caller's event loop stops."""
    pending = [link.lost for link in links if not link.lost.done() and link.transport is not None]
    if pending:
        await asyncio.wait(pending, timeout=timeout)


async def _abort_all(links: Any) -> None:
    links = list(links)
    for link in links:
        link.abort()
    await _wait_closed(links)


def _reject(link: Link, verdict: Rejected) -> None:
    link.write_raw(_hello_frame(HelloType.REJECT, handshake.reject_message(verdict.reason, verdict.message)))
    link.goodbye(1.0)


async def _mesh(*, listener: Listener, addresses: Sequence[str], rank: int, name: str,
                token: bytes, tls: TLSConfig | None, deadline: float,
                links: dict[int, Link], skip: set[int]) -> None:
    """Open links to lower ranks and accept links from higher ranks (except ``skip``)."""
    world_size = len(addresses)
    prefix = f"Comm {name} player {rank}"

    async def open_to(peer: int) -> None:
        try:
            link = await _open_link(addresses[peer], label=f"{name}:{rank}->{peer}", tls=tls, deadline=deadline,
                                    peer=peer)
        except AuthenticationError as exc:
            raise AuthenticationError(f"{prefix}: {exc}") from exc
        try:
            await _join(link, handshake.join_message(name=name, world_size=world_size, rank=rank, to=peer,
                                                     token=token),
                        expect=peer, world_size=world_size, with_addresses=False, prefix=prefix,
                        tls=tls is not None, address=addresses[peer])
            if tls is not None:
                _check_rank(tls, link, peer, prefix)
        except BaseException:
            await _abort_all([link])
            raise
        link.peer = peer
        links[peer] = link

    expected = {peer for peer in range(rank + 1, world_size) if peer not in skip}

    async def accept_all() -> None:
        while expected:
            link, message = await listener.next_join()
            try:
                peer, _ = handshake.check_join(message, name=name, world_size=world_size, rank=rank,
                                               token=token, expected=expected)
                if tls is not None:
                    tls.check_rank(link, peer)
            except Rejected as verdict:
                _reject(link, verdict)
                if verdict.reason in ("token", "name", "world_size", "protocol"):
                    raise _rejection_error(prefix, verdict, remote=False) from None
                log.warning("%s: refused a link: %s", prefix, verdict.message)
                continue
            except AuthenticationError as exc:
                # An impostor (or a misconfigured player): refuse it and keep waiting for the
                # real one; the failure is reported if the world is still incomplete at the deadline.
                _reject(link, Rejected("auth", str(exc)))
                listener._auth_failure(str(exc))
                continue
            except RemoteProtocolError as exc:
                log.warning("%s: dropped a connection with an invalid JOIN: %s", prefix, exc)
                link.abort()
                continue
            expected.discard(peer)
            listener.claim(link)
            link.write_raw(_hello_frame(HelloType.ACCEPT, handshake.accept_message(rank=rank)))
            link.peer = peer
            link.label = f"{name}:{rank}<-{peer}"
            links[peer] = link

    tasks = [asyncio.ensure_future(open_to(peer)) for peer in range(1, rank) if peer not in skip]
    if 0 not in skip and rank > 0:
        tasks.append(asyncio.ensure_future(open_to(0)))
    tasks.append(asyncio.ensure_future(accept_all()))
    try:
        await _gather_or_fail(tasks)
    except BaseException:
        await _abort_all(links.values())
        raise
    missing = [peer for peer in range(world_size) if peer != rank and peer not in links]
    assert not missing, missing


async def _gather_or_fail(tasks: list[asyncio.Future[Any]]) -> None:
    """Await every task; on the first failure (or cancellation) cancel the rest and raise."""
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _check_rank(tls: TLSConfig, link: Link, peer: int, prefix: str) -> None:
    try:
        tls.check_rank(link, peer)
    except AuthenticationError as exc:
        raise AuthenticationError(f"{prefix}: {exc}") from exc


def _startup_timeout(prefix: str, timer: Timer, links: dict[int, Link], world_size: int,
                     rank: int, listener: Listener | None = None) -> CommunicatorError:
    missing = [peer for peer in range(world_size) if peer != rank and peer not in links]
    text = f"startup timed-out after {timer.threshold:g}s without a link to player(s) {missing}"
    failures = listener.failures if listener is not None else []
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        return AuthenticationError(f"{prefix}: {text}; a peer failed authentication: {failures[-1]}{more}")
    return Timeout(f"{prefix}: {text}")


def _check_world(world_size: Any, rank: Any) -> tuple[int, int]:
    if not isinstance(world_size, int) or isinstance(world_size, bool) or world_size < 1:
        raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
    if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
    return world_size, rank


async def direct(*, listener: Listener, addresses: Sequence[str], rank: int, name: str = "world",
                 timer: Timer | None = None, token: Any = None, tls: TLSConfig | None = None,
                 limits: Limits | None = None) -> Endpoint:
    """Link this player to every other player when all listening addresses are known.

    Parameters
    ----------
    listener:
        This player's :class:`Listener` (its address must be ``addresses[rank]``).
    addresses:
        Every player's listening address, in rank order.
    rank:
        This player's rank.
    name:
        Communicator name; every player must give the same.
    timer:
        Deadline for the whole set-up (default 5 seconds).
    token:
        Optional value every player must give identically.

    Returns
    -------
    Endpoint
        The established links; build the communicator with
        ``AsyncSocketCommunicator(endpoint=..., name=..., timeout=...)``.

    Raises
    ------
    Timeout
        If some player cannot be reached (or does not reach us) before the deadline.
    TokenMismatch
        If a peer gave a different token.
    AuthenticationError
        With TLS, if a peer's certificate is not trusted or names another rank.
    """
    world_size, rank = _check_world(len(addresses), rank)
    timer = timer or Timer(5)
    limits = limits or listener.limits
    digest = handshake.token_digest(token)
    links: dict[int, Link] = {}
    prefix = f"Comm {name} player {rank}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timer.remaining
    try:
        async with asyncio.timeout_at(deadline):
            await _mesh(listener=listener, addresses=addresses, rank=rank, name=name, token=digest,
                        tls=tls, deadline=deadline, links=links, skip=set())
    except TimeoutError as exc:
        if isinstance(exc, Timeout):
            raise
        raise _startup_timeout(prefix, timer, links, world_size, rank, listener) from None
    return Endpoint(rank=rank, world_size=world_size, links=links,
                    session=session_bytes(name, digest, addresses), limits=limits)


async def rendezvous(*, listener: Listener, root_address: str, world_size: int, rank: int,
                     name: str = "world", token: Any = None, timer: Timer | None = None,
                     tls: TLSConfig | None = None, limits: Limits | None = None) -> Endpoint:
    """Link this player to every other player knowing only rank 0's address.

    Every player connects to rank 0 and tells it its own listening address; rank 0 checks
    that all tokens match and sends the full address list back; then the players link to
    each other as in :func:`direct`.

    Raises
    ------
    Timeout
        If the world is not complete before the deadline.
    TokenMismatch
        If any player's token differs from rank 0's (every player raises it).
    """
    world_size, rank = _check_world(world_size, rank)
    parse_address(root_address)
    timer = timer or Timer(5)
    limits = limits or listener.limits
    digest = handshake.token_digest(token)
    links: dict[int, Link] = {}
    prefix = f"Comm {name} player {rank}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timer.remaining
    try:
        async with asyncio.timeout_at(deadline):
            if rank == 0:
                addresses = await _gather_joins(listener=listener, world_size=world_size, name=name,
                                                token=digest, tls=tls, links=links, prefix=prefix)
            else:
                try:
                    link = await _open_link(root_address, label=f"{name}:{rank}->0", tls=tls, deadline=deadline,
                                            peer=0)
                except AuthenticationError as exc:
                    raise AuthenticationError(f"{prefix}: {exc}") from exc
                try:
                    message = handshake.join_message(name=name, world_size=world_size, rank=rank, to=0,
                                                     token=digest, address=listener.address)
                    addresses = await _join(link, message, expect=0, world_size=world_size,
                                            with_addresses=True, prefix=prefix, tls=tls is not None,
                                            address=root_address)
                    if tls is not None:
                        _check_rank(tls, link, 0, prefix)
                except BaseException:
                    await _abort_all([link])
                    raise
                link.peer = 0
                links[0] = link
                assert addresses is not None
                await _mesh(listener=listener, addresses=addresses, rank=rank, name=name, token=digest,
                            tls=tls, deadline=deadline, links=links, skip={0})
    except TimeoutError as exc:
        if isinstance(exc, Timeout):
            raise
        error = _startup_timeout(prefix, timer, links, world_size, rank, listener)
        if rank == 0 and isinstance(error, AuthenticationError):
            # Tell the players already waiting on us why the world will not form.
            for link in links.values():
                _reject(link, Rejected("auth", str(error)))
        else:
            await _abort_all(links.values())
        raise error from None
    except BaseException:
        await _abort_all(links.values())
        raise
    return Endpoint(rank=rank, world_size=world_size, links=links,
                    session=session_bytes(name, digest, addresses), limits=limits)


async def _gather_joins(*, listener: Listener, world_size: int, name: str, token: bytes,
                        tls: TLSConfig | None, links: dict[int, Link], prefix: str) -> list[str]:
    """Rank 0's side of a rendezvous: collect every JOIN, check tokens, answer with addresses."""
    addresses: list[str | None] = [listener.address] + [None] * (world_size - 1)
    expected = set(range(1, world_size))
    mismatched: list[int] = []
    while expected:
        link, message = await listener.next_join()
        try:
            peer, address = handshake.check_join(message, name=name, world_size=world_size, rank=0,
                                                  token=token, expected=expected)
            if tls is not None:
                tls.check_rank(link, peer)
        except Rejected as verdict:
            if verdict.reason == "token" and isinstance(message, dict) and message.get("rank") in expected:
                # Keep collecting: every player must learn of the mismatch, not just this one.
                peer = message["rank"]
                address = message.get("address")
                mismatched.append(peer)
            else:
                _reject(link, verdict)
                if verdict.reason in ("name", "world_size", "protocol"):
                    raise _rejection_error(prefix, verdict, remote=False) from None
                log.warning("%s: refused a link: %s", prefix, verdict.message)
                continue
        except AuthenticationError as exc:
            _reject(link, Rejected("auth", str(exc)))
            listener._auth_failure(str(exc))
            continue
        except RemoteProtocolError as exc:
            log.warning("%s: dropped a connection with an invalid JOIN: %s", prefix, exc)
            link.abort()
            continue
        if not isinstance(address, str):
            _reject(link, Rejected("protocol", "a rendezvous JOIN must carry the player's address"))
            continue
        expected.discard(peer)
        listener.claim(link)
        link.peer = peer
        link.label = f"{name}:0<-{peer}"
        links[peer] = link
        addresses[peer] = address
    if mismatched:
        verdict = Rejected("token", f"player(s) {sorted(mismatched)} gave a token different from player 0's")
        for link in links.values():
            _reject(link, verdict)
        links.clear()
        raise _rejection_error(prefix, verdict, remote=False)
    final = [address for address in addresses if address is not None]
    assert len(final) == world_size
    for link in links.values():
        link.write_raw(_hello_frame(HelloType.ACCEPT, handshake.accept_message(rank=0, addresses=final)))
    return final


def _default_address(root_address: str) -> str:
    """A listening address reachable by the others: the interface that routes to rank 0."""
    scheme, where = parse_address(root_address)
    if scheme == "file":
        directory = os.path.dirname(where) or "."
        return f"file://{directory}/cicada-{os.getpid()}-{id(where):x}.sock"
    host, port = where
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((host, port or 9))
            local = probe.getsockname()[0]
    except OSError:
        local = host
    return f"tcp://{local}" if ":" not in local else f"tcp://[{local}]"


async def connect_world(*, world_size: int | None = None, rank: int | None = None,
                        address: str | None = None, root_address: str | None = None,
                        identity: str | None = None, trusted: Sequence[str] | None = None,
                        token: Any = None, name: str = "world", timeout: float = 5,
                        startup_timeout: float = 5, limits: Limits | None = None) -> Any:
    """Create this player's world communicator by rendezvous with rank 0.

    Unset arguments come from ``CICADA_WORLD_SIZE``, ``CICADA_RANK``, ``CICADA_ADDRESS``,
    ``CICADA_ROOT_ADDRESS``, ``CICADA_IDENTITY``, ``CICADA_TRUSTED`` (comma-separated) and
    ``CICADA_TOKEN``.  Rank 0 listens on ``root_address``; the others listen on ``address``,
    or by default on the local interface that routes to rank 0, port chosen by the OS.
    The listening socket is closed once the world is complete: later communicators made by
    ``shrink`` and ``split`` reuse the links.
    """
    from .socket import AsyncSocketCommunicator

    env = os.environ
    if world_size is None:
        world_size = _env_int("CICADA_WORLD_SIZE")
    if rank is None:
        rank = _env_int("CICADA_RANK")
    if address is None:
        address = env.get("CICADA_ADDRESS") or None
    if root_address is None:
        root_address = env.get("CICADA_ROOT_ADDRESS") or None
    if identity is None:
        identity = env.get("CICADA_IDENTITY") or None
    if trusted is None:
        trusted = [path for path in env.get("CICADA_TRUSTED", "").split(",") if path] or None
    if token is None:
        token = env.get("CICADA_TOKEN") or None
    world_size, rank = _check_world(world_size, rank)
    if root_address is None:
        raise ValueError("root_address is required (or set CICADA_ROOT_ADDRESS)")
    if rank == 0:
        if address is not None and address != root_address:
            raise ValueError(f"player 0 listens on root_address ({root_address}); address must be unset or "
                             f"the same, got {address}")
        address = root_address
    elif address is None:
        address = _default_address(root_address)
    timer = Timer(startup_timeout)
    tls = None
    if identity is not None or trusted is not None:
        from ..tls import tls_config

        tls = tls_config(identity=identity, trusted=trusted, rank=rank)
    limits = limits or Limits()
    listener = await listen(address=address, rank=rank, name=name, tls=tls, limits=limits)
    try:
        if rank == 0:
            root_address = listener.address
        endpoint = await rendezvous(listener=listener, root_address=root_address, world_size=world_size,
                                    rank=rank, name=name, token=token, timer=timer, tls=tls, limits=limits)
    finally:
        await listener.aclose()
    return AsyncSocketCommunicator(endpoint=endpoint, name=name, timeout=timeout)


def _env_int(variable: str) -> int:
    value = os.environ.get(variable)
    if value is None:
        raise ValueError(f"{variable} is not set and no value was given")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{variable} must be an integer, got {value!r}") from None
