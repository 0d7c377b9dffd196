"""The exceptions raised by cicada_async.

Everything the library raises because of communication is a :class:`CommunicatorError`, so
programs can catch one hierarchy.  Messages name the communicator, the local player and the
peer involved, e.g. ``Comm world player 0: Tag GATHERV from player 3 timed-out after 5s``.

All of these exceptions are picklable, because the launcher carries them from player
processes back to the parent inside :class:`~cicada_async.communicator.Failed`.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "CommunicatorError",
    "ConcurrencyError",
    "Excluded",
    "NotRunning",
    "PeerFailed",
    "RemoteProtocolError",
    "Revoked",
    "Timeout",
    "TokenMismatch",
]


class CommunicatorError(Exception):
    """Root of every error the library raises because of communication."""


class Timeout(CommunicatorError, TimeoutError):
    """A deadline of the library expired (a receive, connection setup, or shrink).

    A ``Timeout`` does not mark the peer failed: it may be a secondary timeout, caused by a
    third player that the peer was itself waiting for.  Your own ``asyncio.timeout()`` and
    task cancellation are never turned into this exception.
    """


class _PeerError(CommunicatorError):
    """A communication error attributable to one peer, whose rank is kept in ``rank``."""

    def __init__(self, message: str, rank: int | None = None) -> None:
        super().__init__(message)
        self.rank = rank

    def __reduce__(self):  # keep ``rank`` across pickling
        return (type(self), (str(self), self.rank))


class PeerFailed(_PeerError):
    """An operation needed data from a peer whose link closed (it crashed or left).

    ``rank`` is the peer's rank in the communicator that raised.
    """


class RemoteProtocolError(_PeerError):
    """A peer sent a malformed, oversized or unknown frame.

    The link to that peer is dropped and the peer treated as failed; the local player keeps
    running.  ``rank`` is the peer's rank where it is known.
    """


class Revoked(CommunicatorError):
    """The communicator was revoked (locally or by another member).

    Only :meth:`~cicada_async.communicator.Communicator.shrink` and ``free`` work on a
    revoked communicator.
    """


class Excluded(CommunicatorError):
    """The other survivors agreed on a new communicator without this player.

    Raised by ``shrink`` (or the next operation) on a player the others judged failed, e.g.
    one that was stopped for longer than the shrink timeout.  The player cannot rejoin.
    """


class NotRunning(CommunicatorError):
    """The communicator was freed; it cannot be used any more."""


class TokenMismatch(CommunicatorError, ValueError):
    """Players gave different rendezvous tokens, so they are not the same session."""


class AuthenticationError(CommunicatorError):
    """A peer's certificate is untrusted, expired, or does not name the rank it claims."""


class ConcurrencyError(CommunicatorError):
    """An operation was called where its identity would not be the same on every player.

    Typically: an undecorated coroutine started by ``asyncio.gather`` or ``create_task``
    called an operation after its first ``await``, from a task that does not own the
    current scope.  The message says how to fix it (``@cicada_async.operation`` or
    ``with cicada_async.scope(key):``); see :mod:`cicada_async.operations`.
    """
