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
from ..errors import AuthenticationError, CommunicatorError, RemoteProtocolError, Timeout, TokenMismatch
from ..tls import TLSConfig
from ._addresses import parse_address
from ._links import abort_all, open_and_join, reject
from ._listener import Listener
from ._timer import Timer

# Set-up logs under the name of the public module, :mod:`cicada_async.communicator.connect`.
log = logging.getLogger("cicada_async.communicator.connect")

__all__ = ["check_world", "direct", "rendezvous", "session_bytes"]

_VERDICT_MARGIN = 0.5
"""Seconds before the deadline at which rank 0 of a rendezvous gives up (see rendezvous)."""


def session_bytes(name: str, token: bytes, addresses: Sequence[str]) -> bytes:
    """Bytes identifying a world: equal on every player that joined it."""
    h = hashlib.blake2b(digest_size=16, person=b"cicada-session")
    for part in (name, token.hex(), *addresses):
        h.update(part.encode("utf-8") + b"\x00")
    return h.digest()


async def _mesh(*, listener: Listener, addresses: Sequence[str], rank: int, name: str,
                token: bytes, tls: TLSConfig | None, deadline: float,
                links: dict[int, Link], skip: set[int], progress: dict[int, str], max_payload: int) -> None:
    """Open links to lower ranks and accept links from higher ranks (except ``skip``);
    ``progress`` says, per lower rank not linked yet, how far we got.  A link is promoted to
    ``max_payload`` once its peer accepted us, since that peer may finish set-up first."""
    world_size = len(addresses)
    prefix = f"Comm {name} player {rank}"

    async def open_to(peer: int) -> None:
        message = handshake.join_message(name=name, world_size=world_size, rank=rank, to=peer, token=token)
        link, _ = await open_and_join(addresses[peer], message, label=f"{name}:{rank}->{peer}", tls=tls,
                                      deadline=deadline, expect=peer, world_size=world_size, with_addresses=False,
                                      prefix=prefix, progress=progress)
        link.promote(max_payload)
        link.peer = peer
        links[peer] = link

    expected = {peer for peer in range(rank + 1, world_size) if peer not in skip}

    async def accept_all() -> None:
        while expected:
            link, peer, _ = await _next_join(listener, name=name, world_size=world_size, rank=rank, token=token,
                                             tls=tls, expected=expected, prefix=prefix)
            expected.discard(peer)
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


async def _next_join(listener: Listener, *, name: str, world_size: int, rank: int, token: bytes,
                     tls: TLSConfig | None, expected: set[int], prefix: str,
                     with_address: bool = False) -> tuple[Link, int, str | None]:
    """The next connection whose JOIN proves it belongs here: ``(link, peer rank, address)``.

    The link is claimed from the listener; answering it is the caller's business.  Anything
    else (a wrong token, name, world size or protocol version, a rank that is not expected,
    a certificate that does not name the claimed rank, a malformed JOIN) is refused, logged
    and recorded on the listener (:meth:`Listener.refuse`), and set-up goes on: only a peer
    that proved the token can change the outcome.
    """
    while True:
        link, message = await listener.next_join()
        try:
            peer, address = handshake.check_join(message, name=name, world_size=world_size, rank=rank,
                                                  token=token, expected=expected)
            if tls is not None:
                tls.check_rank(link, peer)
            if with_address:
                _check_joined_address(address)
        except Rejected as verdict:
            listener.refuse(link, verdict, claimed=_claimed_rank(message), prefix=prefix)
            continue
        except AuthenticationError as exc:
            # An impostor (or a misconfigured player): refuse it and keep waiting for the
            # real one; the failure is reported if the world is still incomplete at the deadline.
            listener.refuse(link, Rejected("auth", str(exc)), claimed=_claimed_rank(message), prefix=prefix)
            listener.record_auth_failure(str(exc))
            continue
        except RemoteProtocolError as exc:
            listener.refuse(link, None, claimed=None, prefix=prefix, text=f"an invalid JOIN ({exc})")
            continue
        listener.claim(link)
        return link, peer, address


def _check_joined_address(address: Any) -> None:
    """Refuse a rendezvous JOIN whose listening address the others could not use (rank 0
    would hand it to every player in its ACCEPT, failing their set-up with a ValueError)."""
    if not isinstance(address, str):
        raise Rejected("protocol", "a rendezvous JOIN must carry the player's address")
    try:
        parse_address(address)
    except ValueError as exc:
        raise Rejected("protocol", f"a rendezvous JOIN with an unusable address: {exc}") from None


def _claimed_rank(message: Any) -> int | None:
    rank = message.get("rank") if isinstance(message, dict) else None
    return rank if isinstance(rank, int) and not isinstance(rank, bool) else None


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
                   rank: int, listener: Listener | None = None,
                   progress: dict[int, str] | None = None) -> CommunicatorError:
    """The error for a set-up deadline that passed, naming the players still missing and,
    for each we tried to reach, how far we got.  An :class:`AuthenticationError` if some
    would-be peer failed authentication meanwhile; a :class:`TokenMismatch` if a connection
    that claimed a missing rank was refused for its token; else a :class:`Timeout`.  Either
    way the text lists what was refused meanwhile (the last refusal, and how many)."""
    missing = [peer for peer in range(world_size) if peer != rank and peer not in links]
    text = f"startup timed-out after {timer.threshold:g}s without a link to player(s) {missing}"
    details = [f"player {peer}: {progress[peer]}" for peer in missing if progress and peer in progress]
    if details:
        text += " (" + "; ".join(details) + ")"
    refusals = listener.refusals if listener is not None else []
    relevant = [refusal for refusal in refusals if refusal.claimed in missing] or refusals
    if relevant:
        more = f" ({len(refusals)} in all)" if len(refusals) > 1 else ""
        text += f"; refused a connection meanwhile: {relevant[-1].text}{more}"
    if listener is not None and listener.dropped:
        text += f"; dropped {listener.dropped} connection(s) that sent no JOIN in time or were over the limit"
    failures = listener.failures if listener is not None else []
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        return AuthenticationError(f"{prefix}: {text}; a peer failed authentication: {failures[-1]}{more}")
    if any(refusal.reason == "token" and refusal.claimed in missing for refusal in refusals):
        return TokenMismatch(f"{prefix}: {text}")
    return Timeout(f"{prefix}: {text}")


def _give_up(error: CommunicatorError, listener: Listener, links: dict[int, Link]) -> None:
    """Set-up failed at the deadline: tell every player waiting for our answer why, with a
    REJECT (not a silent close, which a TLS player would take for a refused certificate)."""
    reason = "token" if isinstance(error, TokenMismatch) else "auth" if isinstance(error, AuthenticationError) \
        else "aborted"
    verdict = Rejected(reason, f"the player gave up: {error}")
    listener.refuse_waiting(verdict)
    for link in links.values():
        reject(link, verdict)


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
    progress: dict[int, str] = {}
    try:
        async with asyncio.timeout_at(deadline):
            await _mesh(listener=listener, addresses=addresses, rank=rank, name=name, token=digest,
                        tls=tls, deadline=deadline, links=links, skip=set(), progress=progress,
                        max_payload=limits.max_frame_size)
    except TimeoutError as exc:
        if isinstance(exc, Timeout):
            raise
        error = _startup_error(prefix, timer, links, world_size, rank, listener, progress)
        listener.refuse_waiting(Rejected("aborted", f"the player gave up: {error}"))
        raise error from None
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
    progress: dict[int, str] = {}
    # Rank 0 gives up a little before the others, so that they hear why (its REJECT) rather
    # than time out at the same moment without knowing.
    own_deadline = deadline - min(_VERDICT_MARGIN, 0.1 * timer.remaining) if rank == 0 else deadline
    try:
        async with asyncio.timeout_at(own_deadline):
            if rank == 0:
                addresses = await _gather_joins(listener=listener, world_size=world_size, name=name,
                                                token=digest, tls=tls, links=links, prefix=prefix)
            else:
                message = handshake.join_message(name=name, world_size=world_size, rank=rank, to=0,
                                                 token=digest, address=listener.address)
                link, answer = await open_and_join(root_address, message, label=f"{name}:{rank}->0", tls=tls,
                                                   deadline=deadline, expect=0, world_size=world_size,
                                                   with_addresses=True, prefix=prefix, progress=progress)
                link.promote(limits.max_frame_size)
                link.peer = 0
                links[0] = link
                assert answer is not None
                addresses = answer
                await _mesh(listener=listener, addresses=addresses, rank=rank, name=name, token=digest,
                            tls=tls, deadline=deadline, links=links, skip={0}, progress=progress,
                            max_payload=limits.max_frame_size)
    except TimeoutError as exc:
        if isinstance(exc, Timeout):
            raise
        error = _startup_error(prefix, timer, links, world_size, rank, listener, progress)
        if rank == 0:
            _give_up(error, listener, links)  # the players waiting for our ACCEPT learn why
        else:
            listener.refuse_waiting(Rejected("aborted", f"the player gave up: {error}"))
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
    while expected:
        link, peer, address = await _next_join(listener, name=name, world_size=world_size, rank=0, token=token,
                                                tls=tls, expected=expected, prefix=prefix, with_address=True)
        expected.discard(peer)
        link.peer = peer
        link.label = f"{name}:0<-{peer}"
        links[peer] = link
        addresses[peer] = address
    final = [address for address in addresses if address is not None]
    assert len(final) == world_size
    for link in links.values():
        link.write_raw(handshake.hello_frame(HelloType.ACCEPT, handshake.accept_message(rank=0, addresses=final)))
    return final
