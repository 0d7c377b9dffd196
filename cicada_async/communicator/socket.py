"""``AsyncSocketCommunicator``: the communicator API over per-peer asyncio stream links.

The pieces: operation identities come from :mod:`cicada_async._core.identity` (through
:meth:`AsyncSocketCommunicator.begin`); frames go out and messages come in through one
:class:`~cicada_async.communicator._messages.Messages`; links are reached through the
endpoint, which calls back into the communicator through the ``FrameSink`` interface; the
shrink agreement runs in :mod:`cicada_async.communicator._shrink`; revoke, shrink, split and
free live in :mod:`cicada_async.communicator._membership`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy

from .._core.codec import Encoded, decode, encode
from .._core.identity import NotOwner, Numbering, Scope, ScopeState
from .._transport import Endpoint, Limits
from ..errors import Excluded
from ..operations import concurrency_error, current_scope, current_task
from ._batch_layout import assemble
from ._checks import check_timeout, require_rank, require_rank_list, require_tag
from ._membership import Membership
from ._messages import Messages
from .interface import USER_TAG_MAX, Communicator, Operation, Tag, roles_code, tagname

log = logging.getLogger(__name__)

__all__ = ["AsyncSocketCommunicator"]

_EMPTY = encode(None)
_ALLGATHER, _BARRIER, _BROADCAST = int(Tag.ALLGATHER), int(Tag.BARRIER), int(Tag.BROADCAST)
_GATHER, _GATHERV, _SCATTER, _SCATTERV = int(Tag.GATHER), int(Tag.GATHERV), int(Tag.SCATTER), int(Tag.SCATTERV)


class AsyncSocketCommunicator(Communicator):
    """A communicator whose players are joined by TCP, Unix-socket or TLS streams.

    Create one with :meth:`run` (players as local processes), :meth:`connect` (one player
    of a world spread over hosts, or embedded in an asyncio service), or from the links that
    :func:`~cicada_async.communicator.connect.direct` /
    :func:`~cicada_async.communicator.connect.rendezvous` return; the constructor never
    communicates.  :meth:`shrink` and :meth:`split` make new communicators over the same
    links.

    Collectives take their identity when called and return an awaitable; several may run
    at once (see :mod:`cicada_async.operations`).

    Parameters
    ----------
    endpoint:
        The player's links to the other players of its world.
    name:
        Human-readable name, used in logs and error messages.
    timeout:
        Default deadline of each receive, in seconds.
    """

    def __init__(self, *, endpoint: Endpoint, name: str = "world", timeout: float = 5,
                 _members: Sequence[int] | None = None, _comm_id: int | None = None) -> None:
        if not isinstance(name, str):
            raise ValueError(f"name must be a string, got {name!r}")
        members = list(range(endpoint.world_size)) if _members is None else list(_members)
        self._name = name
        self._timeout = check_timeout(timeout)
        self._world_size = len(members)
        self._rank = members.index(endpoint.rank)
        self._others = [rank for rank in range(self._world_size) if rank != self._rank]
        self._prefix = f"Comm {name} player {self._rank}"
        self._membership = Membership(self, endpoint, members, _comm_id)
        comm_id = self._membership.comm_id
        links = [None if world == endpoint.rank else endpoint.links[world] for world in members]
        self._messages = Messages(comm_id=comm_id, rank=self._rank, links=links,
                                  max_queued_bytes=endpoint.limits.max_queued_bytes, prefix=self._prefix)
        self._numbering = Numbering(comm_id, current_scope())
        self._last_scope: Scope | None = None
        self._last_state: ScopeState | None = None
        self._loop = asyncio.get_running_loop()
        self._membership.register(self._messages)

    def __repr__(self) -> str:
        return (f"<AsyncSocketCommunicator {self._name!r} rank={self._rank} "
                f"world_size={self._world_size} {self._membership.state}>")

    # -- properties ------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Human-readable name of the communicator."""
        return self._name

    @property
    def rank(self) -> int:
        """Rank of the local player."""
        return self._rank

    @property
    def world_size(self) -> int:
        """Number of players in the communicator."""
        return self._world_size

    @property
    def timeout(self) -> float:
        """Deadline of each receive, in seconds (default 5)."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._timeout = check_timeout(value)

    @property
    def revoked(self) -> bool:
        """True once this communicator has been revoked, locally or by another member."""
        return self._membership.revoked

    @property
    def freed(self) -> bool:
        """True once :meth:`free` has been called."""
        return self._membership.freed

    @property
    def comm_id(self) -> int:
        """The communicator id every member computes alike (it names the communicator in frames)."""
        return self._membership.comm_id

    @property
    def endpoint(self) -> Endpoint:
        """The links this communicator runs over (shared with its relatives)."""
        return self._membership.endpoint

    @property
    def stats(self) -> dict[str, Any]:
        """Messages and bytes sent and received on this communicator.

        ``{"total": {...}, "player": {rank: {...}}, "tag": {tag: {...}}}``, where each
        ``{...}`` is ``{"sent": {"messages", "bytes"}, "received": {"messages", "bytes"}}``;
        ``total`` also counts ``dropped`` frames (sends to players whose link had closed) and
        ``discarded`` ones (frames that arrived for operations this player had given up on:
        cancelled, timed out or failed).  Tags are reported by name for library tags.
        """

        return self._messages.stats()

    def _deadline(self) -> tuple[float, float]:
        timeout = self._timeout
        return self._loop.time() + timeout, timeout

    # -- operations ------------------------------------------------------------------
    def _scope_state(self) -> tuple[Scope, ScopeState]:
        scope = current_scope()
        state = self._last_state
        if scope is not self._last_scope or state is None:
            state = scope.state(self._numbering)
            self._last_scope, self._last_state = scope, state
        return scope, state

    def begin(self, kind: int, name: str | None = None, roles: int = 0) -> Operation:
        """Take the identity of an operation of ``kind`` now, in the caller's current scope.

        For protocol suites and libraries built on the communicator: call it synchronously
        when your operation is called, then pass the operation to :meth:`exchange`.  ``name``
        is what error messages call the operation (default: the kind's name).

        Raises
        ------
        ConcurrencyError
            If the calling task does not own the current scope.
        NotRunning, Excluded
            If the communicator was freed, or this player excluded.
        """
        membership = self._membership
        if membership.freed or membership.excluded:
            membership.check_usable()
        scope = current_scope()
        state = self._last_state
        if scope is not self._last_scope or state is None:
            state = scope.state(self._numbering)
            self._last_scope, self._last_state = scope, state
        number = state.next
        task = current_task()
        try:
            ident = state.take(task, roles)
        except NotOwner as exc:
            what = f"{name}()" if name is not None else tagname(kind).lower() + "()"
            raise concurrency_error(f"{self._prefix}: ", what, scope, task, exc.owner) from None
        return Operation(self, kind, ident, scope, self._numbering, number, name)

    async def _round(self, operation: Operation, round_: int, posts: Sequence[tuple[Sequence[int], Encoded]],
                     sources: Sequence[int]) -> list[Any]:
        """Post every frame of one round in one step, then receive one message per source."""
        messages = self._messages
        ident, kind = operation.ident, operation.kind
        deadline, timeout = self._deadline()
        borrowed = False
        for destinations, encoded in posts:
            messages.post_many(destinations, ident, round_, kind, encoded)
            borrowed = borrowed or encoded.borrowed
        if borrowed:
            await self._flush(posts, True, deadline, timeout, kind)
        values = await messages.receive([(src, ident, round_) for src in sources], [kind] * len(sources),
                                        deadline, timeout) if sources else []
        if posts:
            await self._flush(posts, False, deadline, timeout, kind)
        return values

    async def _flush(self, posts: Sequence[tuple[Sequence[int], Encoded]], borrowed: bool, deadline: float,
                     timeout: float, tag: int) -> None:
        messages = self._messages
        for destinations, _ in posts:
            if any(messages.needs_flush(dst, borrowed) for dst in destinations):
                await messages.flush(destinations, borrowed, deadline, timeout, tag)

    async def exchange(self, operation: Operation, *, round: int = 0, send: Mapping[int, Any],
                       recv: Sequence[int]) -> list[Any]:
        """One communication round of ``operation`` (see :meth:`Communicator.exchange`)."""
        own = self._rank
        posts = [((dst,), encode(value)) for dst, value in send.items() if dst != own]
        self._membership.check_round(bool(posts))
        sources = [src for src in recv if src != own]
        values = await self._round(operation, round, posts, sources)
        if len(sources) == len(recv):
            return values
        received = iter(values)
        return [send[own] if src == own else next(received) for src in recv]

    async def exchange_batch(self, operations: Sequence[Operation], *, round: int = 0,
                             send: Mapping[int, numpy.ndarray], offsets: Sequence[int],
                             recv: Mapping[int, Sequence[int]]
                             ) -> tuple[dict[int, numpy.ndarray], dict[int, BaseException]]:
        """One round of several operations at once (see :meth:`Communicator.exchange_batch`)."""
        messages = self._messages
        own = self._rank
        self._membership.check_round(any(dst != own for dst in send))
        count = len(operations)
        kind = operations[0].kind
        idents = [operation.ident for operation in operations]
        deadline, timeout = self._deadline()
        posts = []
        for dst, data in send.items():
            if dst == own:
                continue
            if count == 1:
                encoded = encode(data)
                messages.post(dst, idents[0], round, kind, encoded)
                posts.append(((dst,), encoded))
            else:
                messages.post_batch(dst, idents, round, kind, offsets, data)
        if posts and any(messages.needs_flush(dst, True) for (dst,), _ in posts):
            await self._flush(posts, True, deadline, timeout, kind)
        sources = [src for src in recv if src != own]
        keys = [(src, ident, round) for src in sources for ident in idents]
        values = await messages.receive(keys, [kind] * len(keys), deadline, timeout, partial=True)
        dtype = next(iter(send.values())).dtype if send else numpy.dtype(numpy.uint64)
        received: dict[int, numpy.ndarray] = {}
        failed: dict[int, BaseException] = {}
        if count == 1:  # one operation: each message is one array, or an exception
            for src, value in zip(sources, values, strict=True):
                if type(value) is numpy.ndarray and value.ndim == 1 and value.dtype == dtype \
                        and len(value) == recv[src][1]:
                    received[src] = value
                else:
                    received[src] = assemble([value], recv[src], dtype, failed, src, self._prefix, operations[0])
        else:
            for position, src in enumerate(sources):
                received[src] = assemble(values[position * count:(position + 1) * count], recv[src], dtype,
                                          failed, src, self._prefix, operations[0])
        if own in recv:
            received[own] = send[own]
        return received, failed

    # -- point to point --------------------------------------------------------------
    async def send(self, *, value: Any, dst: int, tag: int) -> None:
        """Send ``value`` to player ``dst``, matched by (source, tag) in the caller's scope.

        Returns once the value is on its way; the caller may then modify it.  Never raises
        because the destination failed (the message is dropped and counted in ``stats``).

        Raises
        ------
        ValueError
            If ``dst`` or ``tag`` is invalid (user tags are 0 ... 2**31 - 1).
        TypeError
            If ``value`` cannot travel (nothing is sent).
        Revoked, Excluded, NotRunning
            If the communicator was revoked, this player excluded, or the communicator freed.
        Timeout
            If the destination does not read and the link stays congested past ``timeout``.
        """
        if type(dst) is not int or not 0 <= dst < self._world_size:
            dst = require_rank(dst, self._world_size, "dst")
        if type(tag) is not int or not 0 <= tag <= USER_TAG_MAX:
            tag = require_tag(tag)
        self._membership.check_sendable()
        encoded = encode(value)
        messages = self._messages
        messages.post(dst, self._scope_state()[1].p2p_key(tag), 0, tag, encoded)
        if messages.needs_flush(dst, encoded.borrowed):
            deadline, timeout = self._deadline()
            await messages.flush((dst,), encoded.borrowed, deadline, timeout, tag)

    async def recv(self, *, src: int, tag: int) -> Any:
        """Receive the next value player ``src`` sent with ``tag`` in the caller's scope.

        Messages from ``src`` that arrived before it failed, left or revoked are still
        received; after them this raises at once.

        Raises
        ------
        Timeout
            If nothing arrives within ``timeout`` seconds.
        PeerFailed
            If ``src``'s link closed (crash or exit) before a matching message.
        Revoked
            If ``src`` revoked the communicator (its marker arrived) before a matching message.
        RemoteProtocolError
            If ``src`` sent invalid data (its link is dropped).
        """
        if type(src) is not int or not 0 <= src < self._world_size:
            src = require_rank(src, self._world_size, "src")
        if type(tag) is not int or not 0 <= tag <= USER_TAG_MAX:
            tag = require_tag(tag)
        self._membership.check_usable()
        deadline, timeout = self._deadline()
        key = (src, self._scope_state()[1].p2p_key(tag), 0)
        return (await self._messages.receive([key], [tag], deadline, timeout, point_to_point=True))[0]

    def isend(self, *, value: Any, dst: int, tag: int) -> asyncio.Task[None]:
        """Start sending ``value`` to ``dst`` now; return a task that finishes the send.

        Messages started with ``isend`` go out in call order.  Argument and type errors are
        raised here, before anything is sent.
        """
        dst = require_rank(dst, self._world_size, "dst")
        tag = require_tag(tag)
        self._membership.check_sendable()
        encoded = encode(value)
        self._messages.post(dst, self._scope_state()[1].p2p_key(tag), 0, tag, encoded)
        deadline, timeout = self._deadline()
        return self._loop.create_task(self._messages.flush((dst,), encoded.borrowed, deadline, timeout, tag))

    def irecv(self, *, src: int, tag: int) -> asyncio.Task[Any]:
        """Start receiving from ``src`` now; return a task whose result is the value.

        The receive is matched at call time: receives started earlier get earlier messages.
        """
        src = require_rank(src, self._world_size, "src")
        tag = require_tag(tag)
        self._membership.check_usable()
        deadline, timeout = self._deadline()
        key = (src, self._scope_state()[1].p2p_key(tag), 0)
        group = self._messages.start([key], [tag], deadline, timeout, point_to_point=True)
        return self._loop.create_task(_first(self._messages.finish(group)))

    # -- collectives ------------------------------------------------------------------
    def allgather(self, value: Any) -> Any:
        """Collective: every member contributes ``value``; returns all values in rank order."""
        operation = self.begin(_ALLGATHER)
        self._membership.check_sendable()
        return self._allgather(operation, encode(value))

    async def _allgather(self, operation: Operation, encoded: Encoded) -> list[Any]:
        received = await self._round(operation, 0, [(self._others, encoded)], self._others)
        received.insert(self._rank, decode(encoded.tobytes()))
        return received

    def barrier(self) -> Any:
        """Collective: returns once every member has entered (one round of messages)."""
        operation = self.begin(_BARRIER)
        self._membership.check_sendable()
        return self._barrier(operation)

    async def _barrier(self, operation: Operation) -> None:
        await self._round(operation, 0, [(self._others, _EMPTY)], self._others)

    def broadcast(self, *, src: int, value: Any) -> Any:
        """Collective: returns player ``src``'s ``value`` on every member (``value`` is
        ignored elsewhere).  The root finishes even if a receiver has failed."""
        src = require_rank(src, self._world_size, "src")
        operation = self.begin(_BROADCAST, roles=roles_code(src))
        if self._rank != src:
            # A pure receiver proceeds even on a revoked communicator: the root's value still
            # arrives if the root sent it before its revoke marker (see "revoke ordering").
            return self._receive_one(operation, src)
        self._membership.check_sendable()
        return self._broadcast(operation, encode(value))

    async def _broadcast(self, operation: Operation, encoded: Encoded) -> Any:
        await self._round(operation, 0, [(self._others, encoded)], ())
        return decode(encoded.tobytes())

    async def _receive_one(self, operation: Operation, src: int) -> Any:
        return (await self._round(operation, 0, (), (src,)))[0]

    def gather(self, *, value: Any, dst: int) -> Any:
        """Collective: ``dst`` gets every member's ``value`` in rank order; others get None."""
        dst = require_rank(dst, self._world_size, "dst")
        return self._gather_start(list(range(self._world_size)), value, dst, _GATHER, roles_code(dst))

    def gatherv(self, *, src: Sequence[int], value: Any, dst: int) -> Any:
        """Collective: ``dst`` gets the values of the players in ``src``, in that order;
        others get None.  ``value`` is ignored on players not in ``src``."""
        sources = require_rank_list(src, self._world_size, "src")
        dst = require_rank(dst, self._world_size, "dst")
        return self._gather_start(sources, value, dst, _GATHERV, roles_code(tuple(sources), dst))

    def _gather_start(self, sources: list[int], value: Any, dst: int, kind: int, roles: int) -> Any:
        operation = self.begin(kind, roles=roles)
        posts: list[tuple[Sequence[int], Encoded]] = []
        if self._rank in sources:
            self._membership.check_sendable()  # a sender on a revoked communicator: Revoked
            posts.append(((dst,), encode(value)))
        return self._gatherv(operation, posts, sources if self._rank == dst else None)

    async def _gatherv(self, operation: Operation, posts: list[tuple[Sequence[int], Encoded]],
                       sources: list[int] | None) -> list[Any] | None:
        values = await self._round(operation, 0, posts, sources or ())
        return values if sources is not None else None

    def scatter(self, *, src: int, values: Sequence[Any] | None) -> Any:
        """Collective: player ``src`` sends ``values[r]`` to rank ``r``; returns this
        player's value.  ``values`` is ignored on other players."""
        src = require_rank(src, self._world_size, "src")
        return self._scatter_start(src, values, list(range(self._world_size)), _SCATTER, roles_code(src))

    def scatterv(self, *, src: int, values: Sequence[Any] | None, dst: Sequence[int]) -> Any:
        """Collective: player ``src`` sends ``values[i]`` to player ``dst[i]``; returns this
        player's value, or None for players not in ``dst``."""
        src = require_rank(src, self._world_size, "src")
        destinations = require_rank_list(dst, self._world_size, "dst")
        return self._scatter_start(src, values, destinations, _SCATTERV, roles_code(src, tuple(destinations)))

    def _scatter_start(self, src: int, values: Sequence[Any] | None, destinations: list[int], kind: int,
                       roles: int) -> Any:
        operation = self.begin(kind, roles=roles)
        posts: list[tuple[Sequence[int], Encoded]] = []
        if self._rank == src:
            self._membership.check_sendable()  # the root sends: Revoked on a revoked communicator
            if values is None:
                raise ValueError("values must be a sequence with one value per destination")
            values = list(values)
            if len(values) != len(destinations):
                raise ValueError(f"values must hold one value per destination: {len(destinations)} expected, "
                                 f"got {len(values)}")
            encoded = [encode(value) for value in values]  # every TypeError before any send
            posts = [((dst,), item) for dst, item in zip(destinations, encoded, strict=True)]
        return self._scatterv(operation, posts, src if self._rank in destinations else None)

    async def _scatterv(self, operation: Operation, posts: list[tuple[Sequence[int], Encoded]],
                        src: int | None) -> Any:
        values = await self._round(operation, 0, posts, (src,) if src is not None else ())
        return values[0] if src is not None else None

    # -- fault tolerance and lifetime -----------------------------------------------
    async def revoke(self) -> None:
        """Revoke the communicator at every surviving member.

        Idempotent: a second call, or a call after another member's revoke arrived, does
        nothing.  The revoke travels out of band, ahead of queued data, and every member
        forwards the first one it sees to all others, so it reaches every survivor even if
        this player dies half-way.  Afterwards sends raise ``Revoked``; a receive from P still
        gets what P sent before it learned of the revoke, then raises ``Revoked``.  Every
        operation in flight fails by the same rule.
        """
        self._membership.revoke()

    async def shrink(self, *, name: str, timeout: float | None = None,
                     min_survivors: int = 1) -> tuple[AsyncSocketCommunicator, list[int]]:
        """Agree with the surviving members on a new communicator without the failed ones.

        Called by the survivors, usually after :meth:`revoke`; works on revoked and
        unrevoked communicators alike.  Runs one agreement round over the links that still
        work (a coordinator-based round with fail-over, see ``cicada_async._core.agreement``).

        Guarantees:

        * every player that returns gets the same ``oldranks`` (ascending old ranks; a
          player's new rank is its position in the list);
        * members whose link any member saw close before the round are left out; a member
          that answers within ``timeout`` is kept (a receive ``Timeout`` alone excludes
          nobody).  A member that dies *during* the round may still be listed; the next
          operation on the new communicator then detects it;
        * it returns within a bounded time even if members, the coordinator included, die
          during the round;
        * a member that did not answer in time (a hung or stopped process) is left out for
          good: if it is in fact alive it gets ``Excluded`` from its own ``shrink`` or next
          operation, never a communicator of its own.  A *partition* (links silent both
          ways, for longer than this player's own round takes to give up on every other
          member) is different: with no quorum each side may agree on its own group, as in
          ULFM.  ``min_survivors`` is that quorum: a majority of the original world makes the
          two sides of a partition unable to both go on.

        A player answers the agreement from its link reader, so one that is still busy in
        an operation when the others shrink is not mistaken for a dead one.  Long blocking
        computations (which stop the event loop) must stay shorter than ``timeout``.  The new
        communicator numbers its operations afresh in every scope, so survivors that failed
        at the same operation continue in step.

        Parameters
        ----------
        name:
            Name of the new communicator (for people; names may repeat).
        timeout:
            How long the round waits for a member to answer (default: :attr:`timeout`).
        min_survivors:
            The fewest members the new communicator may have (default 1, as in ULFM); an
            agreement on fewer raises ``Excluded`` on the players it lists.

        Returns
        -------
        (communicator, oldranks)
            The new communicator (same links, fresh id, inherits ``timeout``) and the old
            ranks of its members.

        Raises
        ------
        Excluded
            If the others agreed without this player, or the agreed group has fewer than
            ``min_survivors`` members (this player is cut off from the rest).
        NotRunning
            If the communicator was freed.
        ValueError
            If ``min_survivors`` is not an integer in ``[1, world_size]``.
        """
        if not isinstance(name, str):
            raise ValueError(f"name must be a string, got {name!r}")
        if (not isinstance(min_survivors, int) or isinstance(min_survivors, bool)
                or not 1 <= min_survivors <= self.world_size):
            raise ValueError(f"min_survivors must be an integer in [1, {self.world_size}], got {min_survivors!r}")
        self._membership.check_usable()
        patience = self._timeout if timeout is None else check_timeout(timeout)
        key, members = await self._membership.shrink(patience)
        if len(members) < min_survivors:
            raise Excluded(f"{self._prefix}: shrink agreed on {len(members)} of {self.world_size} players "
                           f"({members}), fewer than min_survivors={min_survivors}: this player is cut off from "
                           "the others (a partition?)")
        return self._child("shrink", key, "", members, name=name), members

    async def split(self, *, name: str | None) -> AsyncSocketCommunicator | None:
        """Collective: players giving the same ``name`` form a new communicator.

        Ranks in the new communicator follow the old ranks.  ``None`` opts out (returns
        None).  The new communicator uses the existing links and inherits ``timeout``.
        """
        if name is not None and not isinstance(name, str):
            raise ValueError(f"name must be a string or None, got {name!r}")
        sequence = self._membership.next_split()
        names = await self.allgather(name)
        if name is None:
            return None
        members = [rank for rank, other in enumerate(names) if other == name]
        return self._child("split", sequence, name, members)

    def _child(self, operation: str, sequence: int, label: str, members: list[int], *,
               name: str | None = None) -> AsyncSocketCommunicator:
        worlds, comm_id = self._membership.child_identity(operation, sequence, label, members)
        child = AsyncSocketCommunicator(endpoint=self._membership.endpoint, name=label if name is None else name,
                                        timeout=self._timeout, _members=worlds, _comm_id=comm_id)
        self._membership.adopt(child._membership)
        return child

    async def free(self) -> None:
        """Release the communicator.  Idempotent; never raises.

        Tells the other members this player is done with it (their receives from this
        player then fail at once instead of timing out); links close once no communicator
        uses them.  Using the communicator afterwards raises ``NotRunning``.
        """
        self._membership.free()

    # -- construction helpers --------------------------------------------------------
    @staticmethod
    async def connect(*, world_size: int | None = None, rank: int | None = None,
                      address: str | None = None, root_address: str | None = None,
                      identity: str | None = None, trusted: Sequence[str] | None = None,
                      token: Any = None, name: str = "world", timeout: float = 5,
                      startup_timeout: float = 5, limits: Limits | None = None) -> AsyncSocketCommunicator:
        """Join a world by rendezvous with rank 0 (players on separate hosts, or embedded in
        an asyncio service).  ``limits`` bounds what each peer can make this player hold
        (:class:`~cicada_async.communicator.connect.Limits`; defaults when ``None``).  See
        :func:`cicada_async.communicator.connect.connect_world`."""
        from .connect import connect_world

        return await connect_world(world_size=world_size, rank=rank, address=address,
                                   root_address=root_address, identity=identity, trusted=trusted,
                                   token=token, name=name, timeout=timeout,
                                   startup_timeout=startup_timeout, limits=limits)

    @staticmethod
    def run(*, world_size: int, fn: Any, identities: Sequence[str] | None = None,
            trusted: Sequence[str] | None = None, args: Sequence[Any] = (),
            kwargs: dict[str, Any] | None = None, family: str = "tcp", name: str = "world",
            timeout: float = 5, startup_timeout: float = 5, show_traceback: bool = False,
            start_method: str | None = None, limits: Limits | None = None) -> list[Any]:
        """Run ``await fn(communicator, *args, **kwargs)`` in ``world_size`` local player
        processes; return their results in rank order.  ``limits`` bounds what each peer can
        make a player hold (:class:`~cicada_async.communicator.connect.Limits`; defaults when
        ``None``).  See :func:`cicada_async.communicator.launcher.run`."""
        from .launcher import run

        return run(world_size=world_size, fn=fn, identities=identities, trusted=trusted, args=args,
                   kwargs=kwargs, family=family, name=name, timeout=timeout,
                   startup_timeout=startup_timeout, show_traceback=show_traceback,
                   start_method=start_method, limits=limits)


async def _first(receipt: Any) -> Any:
    return (await receipt)[0]
