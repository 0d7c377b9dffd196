"""The abstract asynchronous communicator interface, and the reserved message tags."""

from __future__ import annotations

import abc
import contextlib
import enum
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["Communicator", "Tag", "tagname"]


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
    LOGSYNC = -20
    PRZS = -30
    SHARE = -31
    REVEAL = -32
    RESHARE = -33
    MULTIPLY = -34
    UNIFORM = -35


def tagname(tag: int) -> str:
    """Human-readable name of a tag: the :class:`Tag` name, or the number for user tags."""
    try:
        return Tag(tag).name
    except ValueError:
        return str(tag)


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
    @abc.abstractmethod
    async def allgather(self, value: Any) -> list[Any]:
        """Collective: every player contributes ``value``; all get the list in rank order."""

    @abc.abstractmethod
    async def barrier(self) -> None:
        """Collective: return once every member has entered the barrier."""

    @abc.abstractmethod
    async def broadcast(self, *, src: int, value: Any) -> Any:
        """Collective: every member gets the ``value`` of player ``src``."""

    @abc.abstractmethod
    async def gather(self, *, value: Any, dst: int) -> list[Any] | None:
        """Collective: player ``dst`` gets every member's value in rank order; others None."""

    @abc.abstractmethod
    async def gatherv(self, *, src: Sequence[int], value: Any, dst: int) -> list[Any] | None:
        """Collective: player ``dst`` gets the values of the players in ``src``, in that order."""

    @abc.abstractmethod
    async def scatter(self, *, src: int, values: Sequence[Any] | None) -> Any:
        """Collective: player ``src`` sends ``values[r]`` to each rank ``r``."""

    @abc.abstractmethod
    async def scatterv(self, *, src: int, values: Sequence[Any] | None, dst: Sequence[int]) -> Any:
        """Collective: player ``src`` sends ``values[i]`` to player ``dst[i]``; others get None."""

    # -- fault tolerance and lifetime -----------------------------------------------
    @abc.abstractmethod
    async def revoke(self) -> None:
        """Revoke the communicator at every surviving member (idempotent)."""

    @abc.abstractmethod
    async def shrink(self, *, name: str, timeout: float | None = None) -> tuple[Communicator, list[int]]:
        """Agree with the survivors on a new, smaller communicator; return it and the old ranks."""

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
