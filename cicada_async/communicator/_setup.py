"""Forming a world: linking every pair of players, by :func:`direct` or :func:`rendezvous`.

Each pair of players shares one link, opened by the higher rank (:func:`~._links.open_link`,
:func:`~._links.join`) and accepted by the lower one from its :class:`~._listener.Listener`.
Both sides check protocol version, communicator name, world size, ranks and token (and,
with TLS, the certificate's rank) before the link is used.  One deadline bounds the whole
set-up; when it passes, the error says which players are missing and why.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from .._core import handshake
from .._core.handshake import HelloType, Rejected
from .._transport import Endpoint, Limits, Link
from ..errors import AuthenticationError, CommunicatorError, RemoteProtocolError, Timeout
from ..tls import TLSConfig
from ._addresses import parse_address
from ._links import abort_all, check_peer_rank, join, open_link, reject, rejection_error
from ._listener import Listener
from ._timer import Timer

# Set-up logs under the name of the public module, :mod:`cicada_async.communicator.connect`.
log = logging.getLogger("cicada_async.communicator.connect")

__all__ = ["check_world", "direct", "rendezvous", "session_bytes"]


def session_bytes(name: str, token: bytes, addresses: Sequence[str]) -> bytes:
    """Bytes identifying a world: equal on every player that joined it."""
    h = hashlib.blake2b(digest_size=16, person=b"cicada-session")
    for part in (name, token.hex(), *addresses):
        h.update(part.encode("utf-8") + b"\x00")
    return h.digest()


async def _mesh(*, listener: Listener, addresses: Sequence[str], rank: int, name: str,
                token: bytes, tls: TLSConfig | None, deadline: float,
                links: dict[int, Link], skip: set[int]) -> None:
    """Open links to lower ranks and accept links from higher ranks (except ``skip``)."""
    world_size = len(addresses)
    prefix = f"Comm {name} player {rank}"

    async def open_to(peer: int) -> None:
        try:
            link = await open_link(addresses[peer], label=f"{name}:{rank}->{peer}", tls=tls, deadline=deadline,
                                   peer=peer)
        except AuthenticationError as exc:
            raise AuthenticationError(f"{prefix}: {exc}") from exc
        try:
            await join(link, handshake.join_message(name=name, world_size=world_size, rank=rank, to=peer,
                                                    token=token),
                       expect=peer, world_size=world_size, with_addresses=False, prefix=prefix,
                       tls=tls is not None, address=addresses[peer])
            if tls is not None:
                check_peer_rank(tls, link, peer, prefix)
        except BaseException:
            await abort_all([link])
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
                reject(link, verdict)
                if verdict.reason in ("token", "name", "world_size", "protocol"):
                    raise rejection_error(prefix, verdict, remote=False) from None
                log.warning("%s: refused a link: %s", prefix, verdict.message)
                continue
            except AuthenticationError as exc:
                # An impostor (or a misconfigured player): refuse it and keep waiting for the
                # real one; the failure is reported if the world is still incomplete at the deadline.
                reject(link, Rejected("auth", str(exc)))
                listener.record_auth_failure(str(exc))
                continue
            except RemoteProtocolError as exc:
                log.warning("%s: dropped a connection with an invalid JOIN: %s", prefix, exc)
                link.abort()
                continue
            expected.discard(peer)
            listener.claim(link)
            link.write_raw(handshake.hello_frame(HelloType.ACCEPT, handshake.accept_message(rank=rank)))
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
        await abort_all(links.values())
        raise
    missing = [peer for peer in range(world_size) if peer != rank and peer not in links]
    assert not missing, missing


async def _gather_or_fail(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Await every task; on the first failure (or cancellation) cancel the rest and raise."""
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                error = task.exception()
                if error is not None:
                    raise error
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _startup_error(prefix: str, timer: Timer, links: dict[int, Link], world_size: int,
                   rank: int, listener: Listener | None = None) -> CommunicatorError:
    """The error for a set-up deadline that passed: an :class:`AuthenticationError` if some
    would-be peer failed authentication meanwhile, else a :class:`Timeout`."""
    missing = [peer for peer in range(world_size) if peer != rank and peer not in links]
    text = f"startup timed-out after {timer.threshold:g}s without a link to player(s) {missing}"
    failures = listener.failures if listener is not None else []
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        return AuthenticationError(f"{prefix}: {text}; a peer failed authentication: {failures[-1]}{more}")
    return Timeout(f"{prefix}: {text}")


def check_world(world_size: Any, rank: Any) -> tuple[int, int]:
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
    world_size, rank = check_world(len(addresses), rank)
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
        raise _startup_error(prefix, timer, links, world_size, rank, listener) from None
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
    world_size, rank = check_world(world_size, rank)
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
                    link = await open_link(root_address, label=f"{name}:{rank}->0", tls=tls, deadline=deadline,
                                           peer=0)
                except AuthenticationError as exc:
                    raise AuthenticationError(f"{prefix}: {exc}") from exc
                try:
                    message = handshake.join_message(name=name, world_size=world_size, rank=rank, to=0,
                                                     token=digest, address=listener.address)
                    answer = await join(link, message, expect=0, world_size=world_size,
                                        with_addresses=True, prefix=prefix, tls=tls is not None,
                                        address=root_address)
                    if tls is not None:
                        check_peer_rank(tls, link, 0, prefix)
                except BaseException:
                    await abort_all([link])
                    raise
                link.peer = 0
                links[0] = link
                assert answer is not None
                addresses = answer
                await _mesh(listener=listener, addresses=addresses, rank=rank, name=name, token=digest,
                            tls=tls, deadline=deadline, links=links, skip={0})
    except TimeoutError as exc:
        if isinstance(exc, Timeout):
            raise
        error = _startup_error(prefix, timer, links, world_size, rank, listener)
        if rank == 0 and isinstance(error, AuthenticationError):
            # Tell the players already waiting on us why the world will not form.
            for link in links.values():
                reject(link, Rejected("auth", str(error)))
        else:
            await abort_all(links.values())
        raise error from None
    except BaseException:
        await abort_all(links.values())
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
                reject(link, verdict)
                if verdict.reason in ("name", "world_size", "protocol"):
                    raise rejection_error(prefix, verdict, remote=False) from None
                log.warning("%s: refused a link: %s", prefix, verdict.message)
                continue
        except AuthenticationError as exc:
            reject(link, Rejected("auth", str(exc)))
            listener.record_auth_failure(str(exc))
            continue
        except RemoteProtocolError as exc:
            log.warning("%s: dropped a connection with an invalid JOIN: %s", prefix, exc)
            link.abort()
            continue
        if not isinstance(address, str):
            reject(link, Rejected("protocol", "a rendezvous JOIN must carry the player's address"))
            continue
        expected.discard(peer)
        listener.claim(link)
        link.peer = peer
        link.label = f"{name}:0<-{peer}"
        links[peer] = link
        addresses[peer] = address
    if mismatched:
        mismatch = Rejected("token", f"player(s) {sorted(mismatched)} gave a token different from player 0's")
        for link in links.values():
            reject(link, mismatch)
        links.clear()
        raise rejection_error(prefix, mismatch, remote=False)
    final = [address for address in addresses if address is not None]
    assert len(final) == world_size
    for link in links.values():
        link.write_raw(handshake.hello_frame(HelloType.ACCEPT, handshake.accept_message(rank=0, addresses=final)))
    return final
