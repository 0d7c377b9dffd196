"""The data path of one communicator: frames out to the links, messages in to receivers.

Everything a communicator sends or receives goes through :class:`Messages`: collectives,
protocol rounds and point-to-point calls alike.  A receive is a *group* of expectations,
each ``(source, ident, round, tag)``: one future, one timer and one wake-up for all of them.
Two modes:

* **strict** (collectives, point to point, a single operation's round): the group fails as
  soon as one expectation cannot be met (its source ended, the deadline passed, or the
  message's tag says the peer runs another operation);
* **partial** (a batch of operations started together, see :mod:`cicada_async.shamir`): the
  group ends once every expectation is met or has failed, and reports which failed, so each
  operation of the batch succeeds or fails on its own data, exactly as it would alone.

What a peer sends costs what it decodes to: a message counts against the source's cap on
queued bytes (``Limits.max_queued_bytes``) as its payload plus :data:`ITEM_COST` bytes per
decoded value.  A small payload (at most :data:`EAGER_DECODE` bytes) or a bulk one (one array
or bytes object, decoded in constant time) is decoded on arrival; a larger payload of many
values stays undecoded (its bytes are what it holds) until a receiver takes it, and is then
decoded outside the event loop, within the receive's deadline and the source's budget, so
a hostile peer can neither stall the loop nor make a small frame expand past the cap.

An operation's group that fails or is cancelled *abandons* its unmet expectations: their
frames are dropped when they arrive (the mailbox remembers), so no later operation can take
them.  A cancelled point-to-point receive instead puts back what it had taken, so the next
receive gets it, in order.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any

from .._core.codec import Encoded, decode, decode_counted, encode, is_bulk
from .._core.framing import Frame, Kind, decode_batch, encode_batch, encode_header, header
from .._core.mailbox import Key, Mailbox, MailboxFull
from .._transport import Link
from ..errors import CommunicatorError, PeerFailed, RemoteProtocolError, Timeout
from .interface import tagname

log = logging.getLogger(__name__)

__all__ = ["EAGER_DECODE", "ITEM_COST", "Deferred", "Ended", "Messages"]

_DATA = int(Kind.DATA)
_BATCH = int(Kind.BATCH)
_SMALL_FRAME = 16 * 1024
_MISSING = object()
EAGER_DECODE = 16 * 1024
"""Payloads up to this size (or bulk ones) are decoded on arrival; see the module docstring."""
ITEM_COST = 64
"""Bytes each decoded value is counted as (about a small Python object and its reference)."""
_BATCH_ITEMS = 4  # a BATCH payload: a tuple of three arrays
_CONTROL_ITEMS = 1 << 16


class Deferred:
    """A payload of many values from ``src``, decoded when a receiver takes it."""

    __slots__ = ("payload", "src")

    def __init__(self, payload: bytes | memoryview, src: int) -> None:
        self.payload = payload
        self.src = src


def _seconds(seconds: float) -> str:
    return f"{seconds:g}s"


# A mailbox waiter is a ``(group, index)`` pair: expectation ``index`` of ``group``.
Slot = tuple["_Group", int]


def _is_pending(waiter: Slot) -> bool:
    future = waiter[0].future
    return future is not None and not future.done()


class Ended:
    """Why a source will deliver nothing more on this communicator."""

    __slots__ = ("error", "text")

    def __init__(self, error: type[CommunicatorError], text: str) -> None:
        self.error = error
        self.text = text


class _Group:
    """Expectations met together: one future, one timer (see the module docstring)."""

    __slots__ = ("error", "failures", "future", "keys", "partial", "point_to_point", "remaining", "tags",
                 "timeout", "timer", "timer_deadline", "values")

    def __init__(self, keys: list[Key], tags: list[int], partial: bool, point_to_point: bool) -> None:
        self.keys = keys
        self.tags = tags
        self.values: list[Any] = [_MISSING] * len(keys)
        self.failures: dict[int, BaseException] = {}
        self.remaining = 0
        self.partial = partial
        self.point_to_point = point_to_point
        self.future: asyncio.Future[None] | None = None  # None: complete (or failed) at start
        self.timer: asyncio.TimerHandle | None = None
        self.timer_deadline = 0.0
        self.timeout = 0.0
        self.error: BaseException | None = None

    def done(self) -> bool:
        return self.future is None or self.future.done()

    def resolve(self, index: int, value: Any) -> None:
        self.values[index] = value
        self.remaining -= 1
        if not self.remaining and self.future is not None and not self.future.done():
            self.future.set_result(None)

    def fail(self, index: int, error: BaseException) -> None:
        future = self.future
        if future is None or future.done():
            return
        if not self.partial:
            future.set_exception(error)
            return
        self.failures[index] = error
        self.remaining -= 1
        if not self.remaining:
            future.set_result(None)


class Messages:
    """Frames out, messages in, for one communicator (see the module docstring).

    Parameters
    ----------
    comm_id:
        The communicator id that every frame carries.
    rank:
        The local player's rank in the communicator.
    links:
        The link to each member, by rank (None for the local player).
    max_queued_bytes:
        Per-source cap on unreceived bytes.
    prefix:
        Start of every error message (``"Comm world player 0"``).
    """

    def __init__(self, *, comm_id: int, rank: int, links: Sequence[Link | None], max_queued_bytes: int,
                 prefix: str) -> None:
        self.comm_id = comm_id
        self.rank = rank
        self.links = list(links)
        self.prefix = prefix
        self.mailbox = Mailbox(range(len(links)), is_pending=_is_pending, max_queued_bytes=max_queued_bytes)
        self.sent: dict[tuple[int, int], list[int]] = {}
        self.received: dict[tuple[int, int], list[int]] = {}
        self.dropped = 0
        self.loop = asyncio.get_running_loop()

    # -- sending ---------------------------------------------------------------------
    def _count(self, table: dict[tuple[int, int], list[int]], peer: int, tag: int, nbytes: int) -> None:
        counter = table.get((peer, tag))
        if counter is None:
            table[(peer, tag)] = [1, nbytes]
        else:
            counter[0] += 1
            counter[1] += nbytes

    def post(self, dst: int, ident: int, round_: int, tag: int, encoded: Encoded) -> None:
        """Hand one data frame to the link to ``dst`` (or to our own mailbox)."""
        link = self.links[dst]
        if link is None:
            self.deliver((dst, ident, round_), tag, decode(encoded.tobytes()), encoded.nbytes)
            return
        nbytes = encoded.nbytes
        if link.write(header(_DATA, round_, tag, self.comm_id, ident, nbytes), encoded.parts, nbytes):
            self._count(self.sent, dst, tag, nbytes)
        else:
            self.dropped += 1

    def post_many(self, destinations: Sequence[int], ident: int, round_: int, tag: int, encoded: Encoded) -> None:
        """Hand the same frame to several links, in one step (no await in between)."""
        nbytes = encoded.nbytes
        if len(encoded.parts) != 1 or nbytes > _SMALL_FRAME:
            for dst in destinations:
                self.post(dst, ident, round_, tag, encoded)
            return
        frame = header(_DATA, round_, tag, self.comm_id, ident, nbytes) + encoded.parts[0]  # built once
        links = self.links
        for dst in destinations:
            link = links[dst]
            if link is None:
                self.deliver((dst, ident, round_), tag, decode(encoded.parts[0]), nbytes)
            elif link.write_raw(frame):
                self._count(self.sent, dst, tag, nbytes)
            else:
                self.dropped += 1

    def post_batch(self, dst: int, idents: Sequence[int], round_: int, tag: int, offsets: Sequence[int],
                   data: Any) -> None:
        """Hand the messages of several operations to ``dst`` as one BATCH frame."""
        link = self.links[dst]
        if link is None:
            for j, ident in enumerate(idents):
                self.deliver((dst, ident, round_), tag, data[offsets[j]:offsets[j + 1]].copy())
            return
        encoded = encode(encode_batch(idents, offsets, data))
        frame_header = header(_BATCH, round_, tag, self.comm_id, 0, encoded.nbytes)
        if link.write(frame_header, encoded.parts, encoded.nbytes):
            self._count(self.sent, dst, tag, encoded.nbytes)
        else:
            self.dropped += 1

    def post_control(self, dst: int, code: int, value: Any = None) -> bool:
        """Send a CONTROL frame to ``dst``; False if it was dropped."""
        link = self.links[dst]
        if link is None:
            return False
        encoded = encode(value)
        return link.write(encode_header(Kind.CONTROL, code, self.comm_id, encoded.nbytes), encoded.parts,
                          encoded.nbytes)

    def post_control_all(self, code: int, value: Any = None) -> None:
        """Send the same CONTROL frame to every other member."""
        encoded = encode(value)
        frame_header = encode_header(Kind.CONTROL, code, self.comm_id, encoded.nbytes)
        for link in self.links:
            if link is not None:
                link.write(frame_header, encoded.parts, encoded.nbytes)

    def needs_flush(self, dst: int, borrowed: bool) -> bool:
        """Whether a sender to ``dst`` must wait before returning (see :meth:`flush`)."""
        link = self.links[dst]
        return link is not None and link.needs_drain(borrowed)

    async def flush(self, destinations: Sequence[int], borrowed: bool, deadline: float, timeout: float,
                    tag: int) -> None:
        """Wait until frames to ``destinations`` no longer need the caller's memory (and the
        links are not over their soft write limit)."""
        pending = [(dst, link) for dst in destinations
                   if (link := self.links[dst]) is not None and link.needs_drain(borrowed)]
        for dst, link in pending:
            remaining = deadline - self.loop.time()
            try:
                async with asyncio.timeout(remaining if remaining > 0 else 0) as scope:
                    await link.drain()
            except TimeoutError:
                if scope.expired():
                    raise Timeout(f"{self.prefix}: Tag {tagname(tag)} to player {dst} timed-out after "
                                  f"{_seconds(timeout)} (the player is not reading)") from None
                raise

    # -- receiving ---------------------------------------------------------------------
    def deliver(self, key: Key, tag: int, value: Any, nbytes: int = 0) -> None:
        """A message arrived: complete its waiter, or queue it."""
        try:
            waiter = self.mailbox.deliver(key, tag, value, nbytes)
        except MailboxFull as exc:
            raise RemoteProtocolError(f"{self.prefix}: {exc}", rank=key[0]) from None
        if waiter is not None:
            self._complete(waiter, tag, value)

    def _complete(self, slot: Slot, tag: int, value: Any) -> None:
        group, index = slot
        expected = group.tags[index]
        if tag == expected:
            group.resolve(index, value)
        else:
            group.fail(index, self._mismatch(group.keys[index], expected, tag))

    def _mismatch(self, key: Key, expected: int, tag: int) -> RemoteProtocolError:
        src, ident, round_ = key
        if expected >= 0 or tag >= 0:
            what = f"Tag {tagname(tag)}" if tag >= 0 else f"operation {tagname(tag)}"
            want = f"Tag {tagname(expected)}" if expected >= 0 else f"operation {tagname(expected)}"
        else:
            what, want = f"operation {tagname(tag)}", f"operation {tagname(expected)}"
        return RemoteProtocolError(
            f"{self.prefix}: player {src} sent {what} (round {round_}) for identity {ident:#018x}, where this "
            f"player runs {want}: the two players' programs called different operations at the same "
            "point (branch only on public values, and call every collective on every member)", rank=src)

    def ended_error(self, ended: Ended, src: int, tag: int) -> CommunicatorError:
        """The exception for a receive from ``src`` that ``ended`` prevents."""
        text = f"{self.prefix}: Tag {tagname(tag)} from player {src}: {ended.text}"
        if issubclass(ended.error, PeerFailed | RemoteProtocolError):
            return ended.error(text, rank=src)
        return ended.error(text)

    async def receive(self, keys: list[Key], tags: list[int], deadline: float, timeout: float, *,
                      partial: bool = False, point_to_point: bool = False) -> list[Any]:
        """Wait for one message per key (each with the tag given for it); return them in order.

        Strict (``partial=False``): raise as soon as one cannot arrive.  Partial: return when
        each has arrived or failed; failed entries hold their exception (an instance of
        ``BaseException``), which the caller must check.
        """
        return await self.finish(self.start(keys, tags, deadline, timeout, partial=partial,
                                            point_to_point=point_to_point))

    def start(self, keys: list[Key], tags: list[int], deadline: float, timeout: float, *,
              partial: bool = False, point_to_point: bool = False) -> _Group:
        """The synchronous half of :meth:`receive`: take what has arrived, register the rest.

        Receives started earlier get earlier messages (``irecv`` relies on it).
        """
        mailbox = self.mailbox
        group = _Group(keys, tags, partial, point_to_point)
        group.timer_deadline = deadline
        group.timeout = timeout
        values = group.values
        failures = group.failures
        missing = 0
        for index in range(len(keys)):
            key = keys[index]
            found = mailbox.take(key)
            if found is not None:
                tag, value = found
                if tag == tags[index]:
                    values[index] = value
                    continue
                error: BaseException = self._mismatch(key, tags[index], tag)
            else:
                ended = mailbox.ended(key[0])
                if ended is None:
                    missing += 1
                    continue
                error = self.ended_error(ended, key[0], tags[index])
            if not partial:
                group.error = error
                self._abandon(group)
                return group
            failures[index] = error
        if missing:
            group.remaining = missing
            group.future = self.loop.create_future()
            for index in range(len(keys)):
                if values[index] is _MISSING and index not in failures:
                    mailbox.wait(keys[index], (group, index))
            group.timer = self.loop.call_at(deadline, self._expire, group, timeout)
        return group

    async def finish(self, group: _Group) -> list[Any]:
        """The asynchronous half of :meth:`receive`."""
        future = group.future
        if future is not None:
            try:
                await future
            except asyncio.CancelledError:
                self._stop(group)
                if group.point_to_point:
                    mailbox = self.mailbox
                    for index in reversed(range(len(group.keys))):  # what was taken goes back, in order
                        if group.values[index] is not _MISSING:
                            mailbox.put_back(group.keys[index], group.tags[index], group.values[index])
                else:
                    self._abandon(group)
                raise
            except BaseException:
                self._stop(group)
                self._abandon(group)
                raise
            self._stop(group)
        elif group.error is not None:
            raise group.error
        values = group.values
        if group.failures:
            self._abandon(group)
            for index, error in group.failures.items():
                values[index] = error
        for index, value in enumerate(values):
            if type(value) is Deferred:
                values[index] = await self._decode_deferred(value, group.timer_deadline, group.timeout)
        return values

    async def _decode_deferred(self, deferred: Deferred, deadline: float, timeout: float) -> Any:
        """Decode a large payload of many values outside the event loop (see the module
        docstring), within ``deadline`` and the source's budget of decoded values."""
        src = deferred.src
        budget = max(0, self.mailbox.max_queued_bytes - self.mailbox.queued(src) - len(deferred.payload)) // ITEM_COST
        stopped = threading.Event()
        remaining = deadline - self.loop.time()
        try:
            async with asyncio.timeout(remaining if remaining > 0 else 0):
                value, _ = await asyncio.to_thread(decode_counted, deferred.payload, max_items=budget,
                                                   stop=stopped.is_set)
        except TimeoutError:
            stopped.set()
            raise Timeout(f"{self.prefix}: decoding a value from player {src} took longer than the "
                          f"receive deadline ({_seconds(timeout)})") from None
        except RemoteProtocolError as exc:
            raise RemoteProtocolError(f"{self.prefix}: player {src} sent an invalid value ({exc})",
                                      rank=src) from None
        except BaseException:
            stopped.set()
            raise
        return value

    def _stop(self, group: _Group) -> None:
        if group.timer is not None:
            group.timer.cancel()
        # Slots still registered are skipped by the mailbox (their group is done) and dropped.

    def _abandon(self, group: _Group) -> None:
        """An operation will not take its missing messages: late ones are dropped on arrival."""
        if group.point_to_point:
            return
        mailbox = self.mailbox
        values = group.values
        for index, key in enumerate(group.keys):
            if values[index] is _MISSING:
                mailbox.abandon(key)

    def _expire(self, group: _Group, timeout: float) -> None:
        if group.done():
            return
        for index, value in enumerate(group.values):
            if value is _MISSING and index not in group.failures:
                src = group.keys[index][0]
                error = Timeout(f"{self.prefix}: Tag {tagname(group.tags[index])} from player {src} timed-out "
                                f"after {_seconds(timeout)}")
                group.fail(index, error)
                if group.done():
                    return

    # -- frames from the links ---------------------------------------------------------
    def on_data(self, src: int, frame: Frame) -> None:
        """A DATA frame from member ``src``."""
        if self.mailbox.ended(src) is not None:
            return  # nothing the peer sends after its marker belongs here
        payload = frame.payload
        nbytes = len(payload)
        if nbytes <= EAGER_DECODE or is_bulk(payload):
            try:
                value, items = decode_counted(payload)
            except RemoteProtocolError as exc:
                raise RemoteProtocolError(f"{self.prefix}: player {src} sent an invalid value ({exc})",
                                          rank=src) from None
            cost = nbytes + items * ITEM_COST
        else:
            value, cost = Deferred(payload, src), nbytes
        tag = frame.tag
        self._count(self.received, src, tag, nbytes)
        self.deliver((src, frame.ident, frame.round), tag, value, cost)

    def on_batch(self, src: int, frame: Frame) -> None:
        """A BATCH frame from member ``src``: one message per operation it names."""
        if self.mailbox.ended(src) is not None:
            return
        try:
            idents, offsets, data = decode_batch(decode(frame.payload, max_items=_BATCH_ITEMS))
        except RemoteProtocolError as exc:
            raise RemoteProtocolError(f"{self.prefix}: player {src} sent an invalid batch ({exc})",
                                      rank=src) from None
        self._count(self.received, src, frame.tag, len(frame.payload))
        tag = frame.tag
        round_ = frame.round
        itemsize = data.itemsize
        for j, ident in enumerate(idents):
            start, stop = offsets[j], offsets[j + 1]
            self.deliver((src, ident, round_), tag, (data, start, stop), (stop - start) * itemsize)

    def end_source(self, src: int, ended: Ended) -> None:
        """``src`` will deliver nothing more: fail what waits for it (after what it sent)."""
        mailbox = self.mailbox
        for _key, slot in mailbox.end(src, ended):
            group, index = slot
            group.fail(index, self.ended_error(mailbox.ended(src) or ended, src, group.tags[index]))

    def close(self, make_error: Any) -> None:
        """Drop every message and fail every receive with ``make_error(src, tag)``."""
        for key, slot in self.mailbox.close():
            group, index = slot
            group.fail(index, make_error(key[0], group.tags[index]))

    def control_value(self, src: int, frame: Frame) -> Any:
        """Decode a CONTROL frame's payload."""
        try:
            return decode(frame.payload, max_items=_CONTROL_ITEMS)
        except RemoteProtocolError as exc:
            raise RemoteProtocolError(f"{self.prefix}: player {src} sent an invalid control message ({exc})",
                                      rank=src) from None

    def stats(self) -> dict[str, Any]:
        """The communicator's ``stats`` report (see :attr:`AsyncSocketCommunicator.stats`)."""

        def empty() -> dict[str, dict[str, int]]:
            return {"sent": {"messages": 0, "bytes": 0}, "received": {"messages": 0, "bytes": 0}}

        total = empty()
        total["dropped"] = {"messages": self.dropped}
        total["discarded"] = {"messages": self.mailbox.dropped}
        players: dict[int, dict[str, dict[str, int]]] = {}
        tags: dict[int | str, dict[str, dict[str, int]]] = {}
        for direction, table in (("sent", self.sent), ("received", self.received)):
            for (peer, tag), (messages, nbytes) in table.items():
                for bucket in (total, players.setdefault(peer, empty()),
                               tags.setdefault(tagname(tag) if tag < 0 else tag, empty())):
                    bucket[direction]["messages"] += messages
                    bucket[direction]["bytes"] += nbytes
        return {"total": total, "player": players, "tag": tags}
