"""Matching of incoming messages to receivers by (source, tag).  Sans-IO.

Either side may come first: a message with no receiver waiting is queued; a receiver with
no message queued registers a *waiter* (an opaque object; the communicator uses futures).
Messages and waiters with the same key are matched first in, first out.

A source can be *ended* (its link closed, it sent a revoke marker, or it freed the
communicator): messages it sent before that stay deliverable, and :meth:`Mailbox.end`
returns the waiters that can no longer be satisfied, so the caller can fail them with the
reason it gives.  The first reason given for a source is kept.

Bytes queued per source are counted; going over ``max_queued_bytes`` raises
:class:`MailboxFull`, so one peer cannot exhaust memory by sending what nobody receives.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["DEFAULT_MAX_QUEUED_BYTES", "Mailbox", "MailboxFull"]

DEFAULT_MAX_QUEUED_BYTES = 2 << 30  # 2 GiB per source


class MailboxFull(Exception):
    """A source has more bytes queued than the mailbox allows."""


class Mailbox:
    """Messages and waiters keyed by ``(src, tag)``.

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

    __slots__ = ("_ended", "_is_pending", "_messages", "_queued", "_waiters", "max_queued_bytes")

    def __init__(
        self,
        sources: Iterable[int],
        *,
        is_pending: Callable[[Any], bool],
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
    ) -> None:
        self._messages: dict[tuple[int, int], deque[tuple[Any, int]]] = {}
        self._waiters: dict[tuple[int, int], deque[Any]] = {}
        self._queued: dict[int, int] = dict.fromkeys(sources, 0)
        self._ended: dict[int, Any] = {}
        self._is_pending = is_pending
        self.max_queued_bytes = max_queued_bytes

    def deliver(self, src: int, tag: int, value: Any, nbytes: int = 0) -> Any | None:
        """Hand over a message.  Return the waiter that takes it, or None if it was queued.

        Raises
        ------
        MailboxFull
            If queueing it would put more than ``max_queued_bytes`` from ``src`` in the box.
        """
        key = (src, tag)
        waiters = self._waiters.get(key)
        while waiters:
            waiter = waiters.popleft()
            if not waiters:
                del self._waiters[key]
            if self._is_pending(waiter):
                return waiter
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
        messages.append((value, nbytes))
        return None

    def take(self, src: int, tag: int) -> tuple[bool, Any]:
        """Remove and return the oldest queued message as ``(True, value)``, else ``(False, None)``."""
        key = (src, tag)
        messages = self._messages.get(key)
        if not messages:
            return False, None
        value, nbytes = messages.popleft()
        if not messages:
            del self._messages[key]
        self._queued[src] -= nbytes
        return True, value

    def put_back(self, src: int, tag: int, value: Any, nbytes: int = 0) -> None:
        """Return a message to the front of its queue (its receiver was cancelled)."""
        key = (src, tag)
        messages = self._messages.get(key)
        if messages is None:
            self._messages[key] = messages = deque()
        messages.appendleft((value, nbytes))
        self._queued[src] += nbytes

    def wait(self, src: int, tag: int, waiter: Any) -> None:
        """Register ``waiter`` for the next message with this key."""
        key = (src, tag)
        waiters = self._waiters.get(key)
        if waiters is None:
            self._waiters[key] = waiters = deque()
        waiters.append(waiter)

    def forget(self, src: int, tag: int, waiter: Any) -> None:
        """Unregister ``waiter`` if it is still registered."""
        key = (src, tag)
        waiters = self._waiters.get(key)
        if waiters is None:
            return
        try:
            waiters.remove(waiter)
        except ValueError:
            return
        if not waiters:
            del self._waiters[key]

    def end(self, src: int, reason: Any) -> list[tuple[int, Any]]:
        """Mark ``src`` as sending nothing more; return its ``(tag, waiter)`` pairs, unregistered.

        Only the first reason given for a source is kept (see :meth:`ended`).
        """
        self._ended.setdefault(src, reason)
        stranded: list[tuple[int, Any]] = []
        for key in [key for key in self._waiters if key[0] == src]:
            stranded.extend((key[1], w) for w in self._waiters.pop(key) if self._is_pending(w))
        return stranded

    def ended(self, src: int) -> Any | None:
        """The reason ``src`` ended, or None while it may still deliver."""
        return self._ended.get(src)

    def close(self) -> list[tuple[int, int, Any]]:
        """Drop every message; return every pending ``(src, tag, waiter)`` (for shutting down)."""
        stranded = [
            (src, tag, w) for (src, tag), waiters in self._waiters.items() for w in waiters
            if self._is_pending(w)
        ]
        self._waiters.clear()
        self._messages.clear()
        for src in self._queued:
            self._queued[src] = 0
        return stranded

    def queued_bytes(self, src: int) -> int:
        """Bytes of messages from ``src`` waiting to be received."""
        return self._queued[src]
