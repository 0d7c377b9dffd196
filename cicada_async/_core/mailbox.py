"""Matching of incoming messages to receivers by (source, ident, round).  Sans-IO.

``ident`` is an operation's identity or a point-to-point matching key
(:mod:`cicada_async._core.identity`), ``round`` the step of the operation; every message
also carries a ``tag`` (the operation's kind, or the user's tag), which the receiver checks
against what it expects: a message with the right key but another tag is a mismatch between
the two players' programs, never data to compute with.

Either side may come first: a message with no receiver waiting is queued; a receiver with
no message queued registers a *waiter* (an opaque object; the communicator uses futures).
Messages and waiters with the same key are matched first in, first out.

A source can be *ended* (its link closed, it sent a revoke marker, or it freed the
communicator): messages it sent before that stay deliverable, and :meth:`Mailbox.end`
returns the waiters that can no longer be satisfied, so the caller can fail them with the
reason it gives.  The first reason given for a source is kept.

A key can be *abandoned* (its operation was cancelled or failed before its message came):
a queued message for it is dropped at once, and one arriving later is dropped on arrival, so
no later receiver can take it.

Bytes queued per source are counted; going over ``max_queued_bytes`` raises
:class:`MailboxFull`, so one peer cannot exhaust memory by sending what nobody receives.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["DEFAULT_MAX_QUEUED_BYTES", "Key", "Mailbox", "MailboxFull"]

DEFAULT_MAX_QUEUED_BYTES = 2 << 30  # 2 GiB per source
MAX_ABANDONED = 1 << 20
"""Most abandoned keys remembered per mailbox (beyond it, late messages are queued instead
of dropped, and count against the source's byte limit)."""

Key = tuple[int, int, int]
"""(source, ident, round)."""


class MailboxFull(Exception):
    """A source has more bytes queued than the mailbox allows."""


class Mailbox:
    """Messages and waiters keyed by ``(src, ident, round)``.

    Parameters
    ----------
    sources:
        The sources that may deliver.
    is_pending:
        Tells whether a waiter can still take a message (e.g. ``lambda f: not f.done()``);
        waiters that cannot are skipped and forgotten.
    max_queued_bytes:
        Per-source cap on bytes of queued, unreceived messages.
    """

    __slots__ = ("_abandoned", "_ended", "_is_pending", "_messages", "_queued", "_waiters", "dropped",
                 "max_queued_bytes")

    def __init__(
        self,
        sources: Iterable[int],
        *,
        is_pending: Callable[[Any], bool],
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
    ) -> None:
        self._messages: dict[Key, deque[tuple[int, Any, int]]] = {}
        self._waiters: dict[Key, deque[Any]] = {}
        self._queued: dict[int, int] = dict.fromkeys(sources, 0)
        self._ended: dict[int, Any] = {}
        self._abandoned: set[Key] = set()
        self._is_pending = is_pending
        self.max_queued_bytes = max_queued_bytes
        self.dropped = 0  # messages dropped because their key was abandoned

    def deliver(self, key: Key, tag: int, value: Any, nbytes: int = 0) -> Any | None:
        """Hand over a message.  Return the waiter that takes it (the caller checks the tag
        and completes it), or None if it was queued or dropped.

        Raises
        ------
        MailboxFull
            If queueing it would put more than ``max_queued_bytes`` from its source in the box.
        """
        waiters = self._waiters.get(key)
        while waiters:
            waiter = waiters.popleft()
            if not waiters:
                del self._waiters[key]
            if self._is_pending(waiter):
                return waiter
        if self._abandoned and key in self._abandoned:
            self._abandoned.discard(key)
            self.dropped += 1
            return None
        src = key[0]
        queued = self._queued[src] + nbytes
        if queued > self.max_queued_bytes:
            raise MailboxFull(
                f"{queued} bytes from player {src} are waiting to be received, "
                f"over the limit of {self.max_queued_bytes}"
            )
        self._queued[src] = queued
        messages = self._messages.get(key)
        if messages is None:
            self._messages[key] = messages = deque()
        messages.append((tag, value, nbytes))
        return None

    def queued(self, src: int) -> int:
        """Bytes from ``src`` queued now (as counted by :meth:`deliver`)."""
        return self._queued.get(src, 0)

    def take(self, key: Key) -> tuple[int, Any] | None:
        """Remove and return the oldest queued message as ``(tag, value)``, or None."""
        messages = self._messages.get(key)
        if not messages:
            return None
        tag, value, nbytes = messages.popleft()
        if not messages:
            del self._messages[key]
        self._queued[key[0]] -= nbytes
        return tag, value

    def put_back(self, key: Key, tag: int, value: Any, nbytes: int = 0) -> None:
        """Return a message to the front of its queue (its receiver was cancelled)."""
        messages = self._messages.get(key)
        if messages is None:
            self._messages[key] = messages = deque()
        messages.appendleft((tag, value, nbytes))
        self._queued[key[0]] += nbytes

    def wait(self, key: Key, waiter: Any) -> None:
        """Register ``waiter`` for the next message with this key."""
        waiters = self._waiters.get(key)
        if waiters is None:
            self._waiters[key] = waiters = deque()
        waiters.append(waiter)

    def forget(self, key: Key, waiter: Any) -> None:
        """Unregister ``waiter`` if it is still registered."""
        waiters = self._waiters.get(key)
        if waiters is None:
            return
        try:
            waiters.remove(waiter)
        except ValueError:
            return
        if not waiters:
            del self._waiters[key]

    def abandon(self, key: Key) -> None:
        """Nobody will receive ``key`` (its operation was cancelled or failed): drop its queued
        message, or the one still to come."""
        if self.take(key) is not None:
            self.dropped += 1
            return
        if key[0] not in self._ended and len(self._abandoned) < MAX_ABANDONED:
            self._abandoned.add(key)

    def end(self, src: int, reason: Any) -> list[tuple[Key, Any]]:
        """Mark ``src`` as sending nothing more; return its ``(key, waiter)`` pairs, unregistered.

        Only the first reason given for a source is kept (see :meth:`ended`).
        """
        self._ended.setdefault(src, reason)
        if self._abandoned:
            self._abandoned = {key for key in self._abandoned if key[0] != src}
        stranded: list[tuple[Key, Any]] = []
        for key in [key for key in self._waiters if key[0] == src]:
            stranded.extend((key, w) for w in self._waiters.pop(key) if self._is_pending(w))
        return stranded

    def ended(self, src: int) -> Any | None:
        """The reason ``src`` ended, or None while it may still deliver."""
        return self._ended.get(src) if self._ended else None

    def close(self) -> list[tuple[Key, Any]]:
        """Drop every message; return every pending ``(key, waiter)`` (for shutting down)."""
        stranded = [(key, w) for key, waiters in self._waiters.items() for w in waiters if self._is_pending(w)]
        self._waiters.clear()
        self._messages.clear()
        self._abandoned.clear()
        for src in self._queued:
            self._queued[src] = 0
        return stranded

    def queued_bytes(self, src: int) -> int:
        """Bytes of messages from ``src`` waiting to be received."""
        return self._queued[src]
