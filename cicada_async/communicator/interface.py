"""The abstract asynchronous communicator interface, operations, and the reserved tags."""

from __future__ import annotations

import abc
import contextlib
import enum
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from typing import Any

import numpy

from .._core.identity import Numbering, Scope, roles_code
from ..operations import inside

__all__ = ["Communicator", "Operation", "Tag", "roles_code", "tagname"]


class Tag(enum.IntEnum):
    """Message tags reserved by the library (negative).  User tags are integers >= 0.

    The values match Cicada's, so programs and logs read the same.
    """

    ALLGATHER = -1
    BARRIER = -2
    BEACON = -3
    BROADCAST = -4
    GATHER = -5
    GATHERV = -6
    REVOKE = -7
    SCATTER = -8
    SCATTERV = -9
    SHRINK = -10
    SPLIT = -11
    AGREE = -12
    EXCHANGE = -13
    LOGSYNC = -20
    PRZS = -30
    SHARE = -31
    REVEAL = -32
    RESHARE = -33
    MULTIPLY = -34
    UNIFORM = -35
    TRUNCATE = -36
    DOT = -37
    DOT_TRUNCATE = -38
    # Operations of ShamirProtocolSuite made of other operations (their rounds run in their own scope).
    LESS = -40
    LESS_ZERO = -41
    EQUAL = -42
    RELU = -43
    ABSOLUTE = -44
    MAXIMUM = -45
    MINIMUM = -46
    FLOOR = -47
    RIGHT_SHIFT = -48
    ZIGMOID = -49
    LOGICAL_AND = -50
    LOGICAL_OR = -51
    LOGICAL_XOR = -52
    FIELD_POWER = -53
    POWER = -54
    INVERSE = -55
    RANDOM_BITWISE = -56
    BIT_DECOMPOSE = -57
    DIVIDE = -58


USER_TAG_MAX = (1 << 31) - 1
"""Largest user tag (tags travel as signed 32-bit integers)."""


def tagname(tag: int) -> str:
    """Human-readable name of a tag: the :class:`Tag` name, or the number for user tags."""
    try:
        return Tag(tag).name
    except ValueError:
        return str(tag)


class Operation:
    """One operation's identity on a communicator: what its frames carry.

    Made by :meth:`Communicator.begin` when the operation is *called* (synchronously, before
    any ``await``), in the caller's current scope; see :mod:`cicada_async.operations`.  Pass
    it to :meth:`Communicator.exchange` for each of the operation's communication rounds
    (0, 1, ...), and run sub-operations inside ``with operation.scope():`` so that they are
    numbered in the operation's own child scope.

    Attributes
    ----------
    communicator:
        The communicator the operation runs on.
    kind:
        What the operation is (a :class:`Tag`); its frames carry it, and a peer running
        another kind of operation under the same identity is detected.
    ident:
        The 64-bit identity.
    """

    __slots__ = ("_child", "_name", "_numbering", "_parent", "communicator", "ident", "kind", "number")

    def __init__(self, communicator: Communicator, kind: int, ident: int, parent: Scope, numbering: Numbering,
                 number: int, name: str | None = None) -> None:
        self.communicator = communicator
        self.kind = kind
        self._name = name
        self.ident = ident
        self.number = number
        self._parent = parent
        self._numbering = numbering
        self._child: Scope | None = None

    def __repr__(self) -> str:
        return f"<Operation {tagname(self.kind)} #{self.number} in {self._parent.describe()} ident={self.ident:#018x}>"

    @property
    def name(self) -> str:
        """What messages call the operation (``"multiply"``)."""
        return self._name or tagname(self.kind).lower()

    def scope(self) -> contextlib.AbstractContextManager[None]:
        """A context manager: sub-operations called inside are numbered in this operation's scope."""
        if self._child is None:
            self._child = self._parent.operation_child(self._numbering, self.number, self.kind)
        return inside(self._child)


class Communicator(abc.ABC):
    """Abstract base class of communicators: a group of players exchanging messages.

    Every method that communicates is a coroutine; everything local is a plain method or
    property.  Collective operations must be called by every member, in the same order.

    Errors raised are :class:`~cicada_async.errors.CommunicatorError` subclasses (plus
    ``ValueError``/``TypeError`` for bad arguments, raised before anything is sent).
    """

    # -- properties -------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def name(self) -> str:
        """Human-readable name of the communicator (names may repeat)."""

    @property
    @abc.abstractmethod
    def rank(self) -> int:
        """Rank of the local player, in ``range(world_size)``."""

    @property
    def ranks(self) -> list[int]:
        """Every rank of the communicator, ``[0, ..., world_size - 1]``."""
        return list(range(self.world_size))

    @property
    @abc.abstractmethod
    def world_size(self) -> int:
        """Number of players in the communicator."""

    @property
    @abc.abstractmethod
    def timeout(self) -> float:
        """Deadline of each receive, in seconds (settable)."""

    @timeout.setter
    @abc.abstractmethod
    def timeout(self, value: float) -> None: ...

    @property
    @abc.abstractmethod
    def revoked(self) -> bool:
        """True once the communicator has been revoked (by any member)."""

    @property
    @abc.abstractmethod
    def stats(self) -> dict[str, Any]:
        """Messages and bytes sent and received: totals, per peer and per tag."""

    @contextlib.contextmanager
    def override(self, *, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Temporarily change ``timeout`` inside a ``with`` block, as in Cicada::

            with communicator.override(timeout=30):
                await communicator.barrier()
        """
        original = {"timeout": self.timeout}
        if timeout is not None:
            self.timeout = timeout
        try:
            yield original
        finally:
            if timeout is not None:
                self.timeout = original["timeout"]

    # -- point to point ---------------------------------------------------------------
    @abc.abstractmethod
    async def send(self, *, value: Any, dst: int, tag: int) -> None:
        """Send ``value`` to player ``dst`` with ``tag``."""

    @abc.abstractmethod
    async def recv(self, *, src: int, tag: int) -> Any:
        """Receive the next value that player ``src`` sent with ``tag``."""

    @abc.abstractmethod
    def isend(self, *, value: Any, dst: int, tag: int) -> Any:
        """Start a send; return an :class:`asyncio.Task` that completes when it is done."""

    @abc.abstractmethod
    def irecv(self, *, src: int, tag: int) -> Any:
        """Start a receive; return an :class:`asyncio.Task` whose result is the value."""

    # -- collectives ----------------------------------------------------------------
    # Each takes its identity when called and returns an awaitable (see Operation).
    @abc.abstractmethod
    def allgather(self, value: Any) -> Awaitable[list[Any]]:
        """Collective: every player contributes ``value``; all get the list in rank order."""

    @abc.abstractmethod
    def barrier(self) -> Awaitable[None]:
        """Collective: return once every member has entered the barrier."""

    @abc.abstractmethod
    def broadcast(self, *, src: int, value: Any) -> Awaitable[Any]:
        """Collective: every member gets the ``value`` of player ``src``."""

    @abc.abstractmethod
    def gather(self, *, value: Any, dst: int) -> Awaitable[list[Any] | None]:
        """Collective: player ``dst`` gets every member's value in rank order; others None."""

    @abc.abstractmethod
    def gatherv(self, *, src: Sequence[int], value: Any, dst: int) -> Awaitable[list[Any] | None]:
        """Collective: player ``dst`` gets the values of the players in ``src``, in that order.

        Raises ``ValueError`` at the call if ``dst`` or a rank in ``src`` is outside
        ``[0, world_size)``, or ``src`` repeats a rank (the message names it).
        """

    @abc.abstractmethod
    def scatter(self, *, src: int, values: Sequence[Any] | None) -> Awaitable[Any]:
        """Collective: player ``src`` sends ``values[r]`` to each rank ``r``."""

    @abc.abstractmethod
    def scatterv(self, *, src: int, values: Sequence[Any] | None, dst: Sequence[int]) -> Awaitable[Any]:
        """Collective: player ``src`` sends ``values[i]`` to player ``dst[i]``; others get None.

        Raises ``ValueError`` at the call if ``src`` or a rank in ``dst`` is outside
        ``[0, world_size)``, or ``dst`` repeats a rank (the message names it).
        """

    # -- operations (for protocol suites and other libraries built on a communicator) --
    @abc.abstractmethod
    def begin(self, kind: int, name: str | None = None, roles: int = 0) -> Operation:
        """Take the identity of an operation of ``kind`` now, in the caller's current scope.

        ``name`` is what error messages call the operation (default: the kind's name).
        ``roles``: for an operation with a root or a subset of receivers, ``roles_code(...)``
        of them (e.g. ``roles_code(src)``); players that disagree on them then share no
        identity after this operation, so their later receives fail instead of matching
        unrelated data (see :mod:`cicada_async._core.identity`).

        Raises
        ------
        ConcurrencyError
            If the calling task does not own the current scope.
        NotRunning, Excluded
            If the communicator was freed, or this player excluded.
        """

    @abc.abstractmethod
    async def exchange(self, operation: Operation, *, round: int = 0, send: Mapping[int, Any],
                       recv: Sequence[int]) -> list[Any]:
        """One communication round of ``operation``: send ``send[dst]`` to each ``dst`` (all in
        one step), then return what each member of ``recv`` sent this player in this round, in
        that order.  The local rank may appear in both (its value is passed locally).

        Raises what receives raise (``Timeout``, ``PeerFailed``, ``Revoked``, ...), and
        ``RemoteProtocolError`` if a peer ran another kind of operation under this identity.
        On a revoked communicator a round that sends raises ``Revoked`` at once; a round that
        only receives still gets what each source sent before its revoke marker (the
        "revoke ordering" rule), so every survivor fails at the same operation.
        """

    @abc.abstractmethod
    async def exchange_batch(self, operations: Sequence[Operation], *, round: int = 0,
                             send: Mapping[int, numpy.ndarray], offsets: Sequence[int],
                             recv: Mapping[int, Sequence[int]]
                             ) -> tuple[dict[int, numpy.ndarray], dict[int, BaseException]]:
        """One round of several operations of one kind at once (started together).

        Operation ``j``'s message to each ``dst`` is ``send[dst][offsets[j]:offsets[j+1]]``
        (1-d arrays of one dtype, the same offsets for every destination).  ``recv[src]``
        gives the offsets of what ``src`` sends (its messages may be longer or shorter than
        ours).  Returns ``(received, failed)``: ``received[src]`` is the concatenation of what
        ``src`` sent for each operation, laid out by ``recv[src]``; ``failed`` maps the index
        of each operation that cannot complete (a source ended before its message, the
        deadline passed, the peer ran something else) to its exception; its part of
        ``received`` is zero.  Each operation thus succeeds or fails on its own data, as it
        would alone.
        """

    # -- fault tolerance and lifetime -----------------------------------------------
    @abc.abstractmethod
    async def revoke(self) -> None:
        """Revoke the communicator at every surviving member (idempotent)."""

    @abc.abstractmethod
    async def shrink(self, *, name: str, timeout: float | None = None,
                     min_survivors: int = 1) -> tuple[Communicator, list[int]]:
        """Agree with the survivors on a new, smaller communicator; return it and the old ranks
        (``Excluded`` if the agreed group has fewer than ``min_survivors`` members)."""

    @abc.abstractmethod
    async def split(self, *, name: str | None) -> Communicator | None:
        """Collective: players giving the same ``name`` form a new communicator."""

    @abc.abstractmethod
    async def free(self) -> None:
        """Release the communicator (idempotent, never raises)."""

    async def __aenter__(self) -> Communicator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.free()
