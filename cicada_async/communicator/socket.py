"""``AsyncSocketCommunicator``: the communicator API over per-peer asyncio stream links."""

from __future__ import annotations

import asyncio
import logging
import numbers
import weakref
from collections.abc import Sequence
from typing import Any

from .._core.agreement import parse_message
from .._core.codec import Encoded, decode, encode
from .._core.framing import HEADER, MAGIC, TAG_MAX, TAG_MIN, Control, Frame, Kind, encode_header
from .._core.ids import child_id, world_id
from .._core.mailbox import Mailbox, MailboxFull
from .._transport import Endpoint, Link, describe_loss
from ..errors import (
    CommunicatorError,
    Excluded,
    NotRunning,
    PeerFailed,
    RemoteProtocolError,
    Revoked,
    Timeout,
)
from ._rounds import Rounds
from .interface import Communicator, Tag, tagname

log = logging.getLogger(__name__)

__all__ = ["AsyncSocketCommunicator"]

_EMPTY = encode(None)
_HEADER_PACK = HEADER.pack
_MAGIC = MAGIC
_DATA = int(Kind.DATA)
_SMALL_FRAME = 16 * 1024


def _is_pending(future: asyncio.Future[Any]) -> bool:
    return not future.done()


def _format_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


_MISSING = object()


class _Group:
    """One future for several (src, tag) messages: one timer, one wake-up when all are in."""

    __slots__ = ("future", "remaining", "values")

    def __init__(self, future: asyncio.Future[None], values: list[Any], remaining: int) -> None:
        self.future = future
        self.values = values
        self.remaining = remaining


class _Slot:
    """A mailbox waiter filling one entry of a :class:`_Group` (duck-typed like a future)."""

    __slots__ = ("group", "index")

    def __init__(self, group: _Group, index: int) -> None:
        self.group = group
        self.index = index

    def done(self) -> bool:
        return self.group.future.done()

    def set_result(self, value: Any) -> None:
        group = self.group
        group.values[self.index] = value
        group.remaining -= 1
        if not group.remaining:
            group.future.set_result(None)

    def set_exception(self, error: BaseException) -> None:
        if not self.group.future.done():
            self.group.future.set_exception(error)


class _Ended:
    """Why a source will deliver nothing more on this communicator."""

    __slots__ = ("error", "text")

    def __init__(self, error: type[CommunicatorError], text: str) -> None:
        self.error = error
        self.text = text


class AsyncSocketCommunicator(Communicator):
    """A communicator whose players are joined by TCP, Unix-socket or TLS streams.

    Create one with :meth:`run` (players as local processes), :meth:`connect` (one player
    of a world spread over hosts, or embedded in an asyncio service), or from the links that
    :func:`~cicada_async.communicator.connect.direct` /
    :func:`~cicada_async.communicator.connect.rendezvous` return; the constructor never
    communicates.  :meth:`shrink` and :meth:`split` make new communicators over the same
    links.

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
        self._endpoint = endpoint
        self._name = name
        self._timeout = self._check_timeout(timeout)
        self._members = members
        self._world_size = len(members)
        self._rank = members.index(endpoint.rank)
        self._rank_of = {world: rank for rank, world in enumerate(members)}
        self._links: list[Link | None] = [
            None if world == endpoint.rank else endpoint.links[world] for world in members
        ]
        self.peers = [world for world in members if world != endpoint.rank]
        self.comm_id = world_id(endpoint.session) if _comm_id is None else _comm_id
        self._mailbox = Mailbox(range(self._world_size), is_pending=_is_pending,
                                max_queued_bytes=endpoint.limits.max_queued_bytes)
        self._freed = False
        self._revoked = False
        self._excluded: str | None = None
        self._splits = 0  # sequence number of split calls
        self._descendants: list[weakref.ref[AsyncSocketCommunicator]] = []
        self._rounds = Rounds(self)
        self._sent: dict[tuple[int, int], list[int]] = {}
        self._received: dict[tuple[int, int], list[int]] = {}
        self._dropped = 0
        self._loop = asyncio.get_running_loop()
        endpoint.register(self)

    def __repr__(self) -> str:
        state = "freed" if self._freed else "revoked" if self._revoked else "open"
        return (f"<AsyncSocketCommunicator {self._name!r} rank={self._rank} "
                f"world_size={self._world_size} {state}>")

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
        self._timeout = self._check_timeout(value)

    @property
    def revoked(self) -> bool:
        """True once this communicator has been revoked, locally or by another member."""
        return self._revoked

    @property
    def freed(self) -> bool:
        """True once :meth:`free` has been called."""
        return self._freed

    @property
    def endpoint(self) -> Endpoint:
        """The links this communicator runs over (shared with its relatives)."""
        return self._endpoint

    @property
    def stats(self) -> dict[str, Any]:
        """Messages and bytes sent and received on this communicator.

        ``{"total": {...}, "player": {rank: {...}}, "tag": {tag: {...}}}``, where each
        ``{...}`` is ``{"sent": {"messages", "bytes"}, "received": {"messages", "bytes"}}``;
        ``total`` also counts ``dropped`` frames (sends to players whose link had closed).
        Tags are reported by name for library tags.
        """

        def empty() -> dict[str, dict[str, int]]:
            return {"sent": {"messages": 0, "bytes": 0}, "received": {"messages": 0, "bytes": 0}}

        total = empty()
        total["dropped"] = {"messages": self._dropped}
        players: dict[int, dict[str, dict[str, int]]] = {}
        tags: dict[int | str, dict[str, dict[str, int]]] = {}
        for direction, table in (("sent", self._sent), ("received", self._received)):
            for (peer, tag), (messages, nbytes) in table.items():
                for bucket in (total, players.setdefault(peer, empty()),
                               tags.setdefault(tagname(tag) if tag < 0 else tag, empty())):
                    bucket[direction]["messages"] += messages
                    bucket[direction]["bytes"] += nbytes
        return {"total": total, "player": players, "tag": tags}

    # -- argument checks -------------------------------------------------------------
    @staticmethod
    def _check_timeout(value: float) -> float:
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {value!r}")
        return float(value) if not isinstance(value, int) else value

    def _require_rank(self, rank: Any, what: str = "rank") -> int:
        if not isinstance(rank, numbers.Integral) or isinstance(rank, bool):
            raise ValueError(f"{what} must be an integer, got {rank!r}")
        if not 0 <= rank < self._world_size:
            raise ValueError(f"{what} must be in the range [0, {self._world_size}), got {rank}")
        return int(rank)

    def _require_rank_list(self, ranks: Any, what: str) -> list[int]:
        try:
            result = [self._require_rank(rank, what) for rank in ranks]
        except TypeError:
            raise ValueError(f"{what} must be a sequence of ranks, got {ranks!r}") from None
        if len(set(result)) != len(result):
            raise ValueError(f"{what} must not repeat a rank, got {result}")
        return result

    @staticmethod
    def _require_tag(tag: Any) -> int:
        if not isinstance(tag, numbers.Integral) or isinstance(tag, bool):
            raise ValueError(f"tag must be an integer, got {tag!r}")
        tag = int(tag)
        if tag < 0 and tag not in Tag._value2member_map_:
            raise ValueError(f"tag {tag} is reserved: user tags must be >= 0")
        if not TAG_MIN <= tag <= TAG_MAX:
            raise ValueError(f"tag {tag} does not fit in 32 bits")
        return tag

    def _prefix(self) -> str:
        return f"Comm {self._name} player {self._rank}"

    def _check_usable(self) -> None:
        if self._freed:
            raise NotRunning(f"{self._prefix()}: the communicator was freed")
        if self._excluded is not None:
            raise Excluded(f"{self._prefix()}: {self._excluded}")

    def _check_sendable(self) -> None:
        self._check_usable()
        if self._revoked:
            raise Revoked(f"{self._prefix()}: the communicator was revoked")

    # -- sending ---------------------------------------------------------------------
    def _post(self, dst: int, tag: int, encoded: Encoded, header: bytes | None = None) -> None:
        """Hand one data frame to the link to ``dst`` (or to our own mailbox)."""
        link = self._links[dst]
        if link is None:
            self._deliver(dst, tag, decode(encoded.tobytes()), encoded.nbytes)
            return
        if header is None:
            header = _HEADER_PACK(_MAGIC, _DATA, 0, tag, self.comm_id, encoded.nbytes)
        self._count_sent(dst, tag, encoded.nbytes, link.write(header, encoded.parts, encoded.nbytes))

    def _count_sent(self, dst: int, tag: int, nbytes: int, written: bool) -> None:
        if not written:
            self._dropped += 1
            return
        counter = self._sent.get((dst, tag))
        if counter is None:
            self._sent[(dst, tag)] = [1, nbytes]
        else:
            counter[0] += 1
            counter[1] += nbytes

    def _post_many(self, destinations: Sequence[int], tag: int, encoded: Encoded) -> None:
        """Hand the same frame to several links, in one step (no await in between)."""
        header = _HEADER_PACK(_MAGIC, _DATA, 0, tag, self.comm_id, encoded.nbytes)
        if len(encoded.parts) == 1 and encoded.nbytes <= _SMALL_FRAME:
            frame = header + encoded.parts[0]  # built once, written to every link
            links = self._links
            for dst in destinations:
                link = links[dst]
                if link is None:
                    self._deliver(dst, tag, decode(encoded.parts[0]), encoded.nbytes)
                else:
                    self._count_sent(dst, tag, encoded.nbytes, link.write_raw(frame))
            return
        for dst in destinations:
            self._post(dst, tag, encoded, header)

    async def _flush(self, destinations: Sequence[int], borrowed: bool, deadline: float,
                     timeout: float, tag: int) -> None:
        """Wait until frames to ``destinations`` no longer need the caller's memory."""
        pending = [
            (dst, link) for dst in destinations
            if dst != self._rank and (link := self._links[dst]) is not None and link.needs_drain(borrowed)
        ]
        if not pending:
            return
        loop = asyncio.get_running_loop()
        for dst, link in pending:
            remaining = deadline - loop.time()
            try:
                async with asyncio.timeout(remaining if remaining > 0 else 0) as scope:
                    await link.drain()
            except TimeoutError:
                if scope.expired():
                    raise Timeout(
                        f"{self._prefix()}: Tag {tagname(tag)} to player {dst} timed-out after "
                        f"{_format_seconds(timeout)} (the player is not reading)"
                    ) from None
                raise

    def _send_control(self, dst: int, code: int, value: Any = None) -> bool:
        link = self._links[dst]
        if link is None:
            return False
        encoded = encode(value)
        return link.write(encode_header(Kind.CONTROL, code, self.comm_id, encoded.nbytes),
                          encoded.parts, encoded.nbytes)

    def _send_control_all(self, code: int, value: Any = None) -> None:
        encoded = encode(value)
        header = encode_header(Kind.CONTROL, code, self.comm_id, encoded.nbytes)
        for link in self._links:
            if link is not None:
                link.write(header, encoded.parts, encoded.nbytes)

    # -- receiving -------------------------------------------------------------------
    def _deliver(self, src: int, tag: int, value: Any, nbytes: int) -> None:
        try:
            waiter = self._mailbox.deliver(src, tag, value, nbytes)
        except MailboxFull as exc:
            raise RemoteProtocolError(f"{self._prefix()}: {exc}", rank=src) from None
        if waiter is not None:
            waiter.set_result(value)

    def _ended_error(self, ended: _Ended, src: int, tag: int) -> CommunicatorError:
        text = f"{self._prefix()}: Tag {tagname(tag)} from player {src}: {ended.text}"
        if issubclass(ended.error, PeerFailed | RemoteProtocolError):
            return ended.error(text, rank=src)
        return ended.error(text)

    def _expire(self, future: asyncio.Future[Any], src: int, tag: int, timeout: float) -> None:
        if not future.done():
            future.set_exception(Timeout(
                f"{self._prefix()}: Tag {tagname(tag)} from player {src} timed-out after "
                f"{_format_seconds(timeout)}"
            ))

    def _start_receive(self, src: int, tag: int, deadline: float,
                       timeout: float) -> tuple[asyncio.Future[Any], asyncio.TimerHandle | None]:
        """Register interest in the next (src, tag) message; the result arrives in a future."""
        loop = self._loop
        future = loop.create_future()
        found, value = self._mailbox.take(src, tag)
        if found:
            future.set_result(value)
            return future, None
        ended = self._mailbox.ended(src)
        if ended is not None:
            future.set_exception(self._ended_error(ended, src, tag))
            return future, None
        self._mailbox.wait(src, tag, future)
        return future, loop.call_at(deadline, self._expire, future, src, tag, timeout)

    async def _finish_receive(self, src: int, tag: int, future: asyncio.Future[Any],
                              timer: asyncio.TimerHandle | None) -> Any:
        try:
            return await future
        except asyncio.CancelledError:
            # Our caller was cancelled.  If a message was already handed to us, put it back.
            if future.done() and not future.cancelled() and future.exception() is None:
                self._mailbox.put_back(src, tag, future.result())
            raise
        finally:
            if timer is not None:
                timer.cancel()
                self._mailbox.forget(src, tag, future)

    async def _receive(self, src: int, tag: int, deadline: float, timeout: float) -> Any:
        found, value = self._mailbox.take(src, tag)
        if found:
            return value
        future, timer = self._start_receive(src, tag, deadline, timeout)
        return await self._finish_receive(src, tag, future, timer)

    def _deadline(self) -> tuple[float, float]:
        timeout = self._timeout
        return self._loop.time() + timeout, timeout

    # -- frames from the links -------------------------------------------------------
    def _on_frame(self, peer: int, frame: Frame) -> None:
        src = self._rank_of.get(peer)
        if src is None:
            raise RemoteProtocolError(
                f"{self._prefix()}: world player {peer} sent a frame for a communicator it is not in")
        if frame.kind == _DATA:
            if self._freed or (self._mailbox._ended and self._mailbox.ended(src) is not None):
                return  # nothing the peer sends after its marker belongs here
            payload = frame.payload
            try:
                value = decode(payload)
            except RemoteProtocolError as exc:
                raise RemoteProtocolError(
                    f"{self._prefix()}: player {src} sent an invalid value ({exc})", rank=src
                ) from None
            nbytes = len(payload)
            counter = self._received.get((src, frame.tag))
            if counter is None:
                self._received[(src, frame.tag)] = [1, nbytes]
            else:
                counter[0] += 1
                counter[1] += nbytes
            self._deliver(src, frame.tag, value, nbytes)
        else:
            try:
                value = decode(frame.payload)
            except RemoteProtocolError as exc:
                raise RemoteProtocolError(
                    f"{self._prefix()}: player {src} sent an invalid control message ({exc})", rank=src
                ) from None
            self._on_control(src, frame.tag, value)

    def _on_control(self, src: int, code: int, value: Any) -> None:
        if code == Control.REVOKE:
            if not self._revoked and not self._freed:
                self._revoked = True
                log.warning("Comm %s player %s revoked by player %s", self._name, self._rank, src)
                self._send_control_all(Control.REVOKE)  # forward, before waking anyone
            self._end_source(src, _Ended(Revoked, "the communicator was revoked"))
        elif code == Control.FREED:
            # It sends nothing more here; but it is not dead: a member that freed the
            # communicator after a shrink still answers that shrink's agreement (tombstone).
            self._end_source(src, _Ended(PeerFailed, "the player freed the communicator"))
        else:
            self._rounds.on_control(src, code, value)

    def _end_source(self, src: int, ended: _Ended) -> None:
        for tag, waiter in self._mailbox.end(src, ended):
            waiter.set_exception(self._ended_error(self._mailbox.ended(src), src, tag))

    def _on_peer_lost(self, peer: int, error: BaseException | None, goodbye: bool) -> None:
        src = self._rank_of.get(peer)
        if src is None:
            return
        kind = RemoteProtocolError if isinstance(error, RemoteProtocolError) else PeerFailed
        self._end_source(src, _Ended(kind, describe_loss(error, goodbye)))
        self._rounds.on_dead(src)

    def _on_peer_excluded(self, peer: int) -> None:
        """A shrink left ``peer`` out: its link is ignored from now on, for every communicator."""
        src = self._rank_of.get(peer)
        if src is None:
            return
        self._end_source(src, _Ended(PeerFailed, "was left out by a shrink (too slow or thought dead)"))
        self._rounds.on_dead(src)

    def _gone_ranks(self) -> set[int]:
        """Members known gone for good: their links closed or ignored."""
        gone: set[int] = set()
        for rank, link in enumerate(self._links):
            if link is not None and (link.closed or link.peer_done or link.ignoring):
                gone.add(rank)
        return gone

    def _exclude_peer(self, rank: int, key: int) -> None:
        """Tell ``rank`` it was left out of round ``key``; ignore its link from now on."""
        link = self._links[rank]
        if link is None or link.ignoring:
            return
        self._send_control(rank, Control.EXCLUDED, {"k": key})
        self._endpoint.exclude(self._members[rank])

    def _become_excluded(self, by: int) -> None:
        """The others agreed without us: this communicator and its descendants are unusable."""
        if self._excluded is None:
            self._excluded = (f"player {by} agreed on a new communicator without this player "
                              "(it was too slow to answer, or thought dead)")
            log.warning("Comm %s player %s: excluded by player %s", self._name, self._rank, by)
            for src, tag, waiter in self._mailbox.close():
                waiter.set_exception(Excluded(
                    f"{self._prefix()}: {self._excluded} (while receiving Tag {tagname(tag)} from "
                    f"player {src})"))
            for ref in self._descendants:
                child = ref()
                if child is not None and not child._freed:
                    child._become_excluded(by)
        link = self._links[by] if 0 <= by < self._world_size else None
        if link is not None and not link.ignoring:
            # It ignores us from now on: close our side, so the link goes away.
            self._endpoint.exclude(self._members[by])
            link.goodbye(self._endpoint.linger)

    def _on_retired_frame(self, peer: int, frame: Frame) -> None:
        """A control frame for this communicator after it was freed."""
        src = self._rank_of.get(peer)
        if src is None:
            return
        try:
            value = decode(frame.payload)
            if frame.tag == Control.AGREEMENT:
                message = parse_message(value, size=self._world_size)
                decided = self._rounds.decided(message["k"])
                if decided is not None and message["t"] in ("propose", "request"):
                    # Late questions about a round we returned from: answer from the record.
                    reply = {"t": "decided", "k": message["k"], "dead": [], "m": list(decided)}
                    self._send_control(src, Control.AGREEMENT, reply)
            elif frame.tag == Control.EXCLUDED:
                self._excluded = self._excluded or "excluded"
                for ref in self._descendants:
                    child = ref()
                    if child is not None and not child._freed:
                        child._become_excluded(src)
        except RemoteProtocolError:
            return

    # -- point to point --------------------------------------------------------------
    async def send(self, *, value: Any, dst: int, tag: int) -> None:
        """Send ``value`` to player ``dst``.

        Returns once the value is on its way; the caller may then modify it.  Never raises
        because the destination failed (the message is dropped and counted in ``stats``).

        Raises
        ------
        TypeError
            If ``value`` cannot travel (nothing is sent).
        Revoked, Excluded, NotRunning
            If the communicator was revoked, this player excluded, or the communicator freed.
        Timeout
            If the destination does not read and the link stays congested past ``timeout``.
        """
        if self._freed or self._excluded is not None or self._revoked:
            self._check_sendable()
        if type(dst) is not int or not 0 <= dst < self._world_size:
            dst = self._require_rank(dst, "dst")
        if type(tag) is not int or tag < 0:
            tag = self._require_tag(tag)
        encoded = encode(value)
        self._post(dst, tag, encoded)
        link = self._links[dst]
        if link is not None and link.needs_drain(encoded.borrowed):
            deadline, timeout = self._deadline()
            await self._flush((dst,), encoded.borrowed, deadline, timeout, tag)

    async def recv(self, *, src: int, tag: int) -> Any:
        """Receive the next value player ``src`` sent with ``tag``.

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
        if self._freed or self._excluded is not None:
            self._check_usable()
        if type(src) is not int or not 0 <= src < self._world_size:
            src = self._require_rank(src, "src")
        if type(tag) is not int or tag < 0:
            tag = self._require_tag(tag)
        mailbox = self._mailbox
        found, value = mailbox.take(src, tag)
        if found:
            return value
        ended = mailbox.ended(src)
        if ended is not None:
            raise self._ended_error(ended, src, tag)
        loop = self._loop
        timeout = self._timeout
        future = loop.create_future()
        mailbox.wait(src, tag, future)
        timer = loop.call_at(loop.time() + timeout, self._expire, future, src, tag, timeout)
        try:
            return await future
        except asyncio.CancelledError:
            # Our caller was cancelled.  If a message was already handed to us, put it back.
            if future.done() and not future.cancelled() and future.exception() is None:
                mailbox.put_back(src, tag, future.result())
            raise
        finally:
            timer.cancel()
            mailbox.forget(src, tag, future)

    def isend(self, *, value: Any, dst: int, tag: int) -> asyncio.Task[None]:
        """Start sending ``value`` to ``dst`` now; return a task that finishes the send.

        Messages started with ``isend`` go out in call order.  Argument and type errors are
        raised here, before anything is sent.
        """
        self._check_sendable()
        dst = self._require_rank(dst, "dst")
        tag = self._require_tag(tag)
        encoded = encode(value)
        self._post(dst, tag, encoded)
        deadline, timeout = self._deadline()
        return asyncio.get_running_loop().create_task(
            self._flush((dst,), encoded.borrowed, deadline, timeout, tag)
        )

    def irecv(self, *, src: int, tag: int) -> asyncio.Task[Any]:
        """Start receiving from ``src`` now; return a task whose result is the value.

        The receive is matched at call time: receives started earlier get earlier messages.
        """
        self._check_usable()
        src = self._require_rank(src, "src")
        tag = self._require_tag(tag)
        deadline, timeout = self._deadline()
        future, timer = self._start_receive(src, tag, deadline, timeout)
        return asyncio.get_running_loop().create_task(self._finish_receive(src, tag, future, timer))

    # -- collectives ------------------------------------------------------------------
    async def _gather_from(self, sources: Sequence[int], tag: int, deadline: float,
                           timeout: float) -> list[Any]:
        """Receive one message with ``tag`` from each of ``sources`` (in that order).

        Raises as soon as any source can no longer deliver, or at the deadline.
        """
        mailbox = self._mailbox
        values: list[Any] = [_MISSING] * len(sources)
        missing = 0
        for index, src in enumerate(sources):
            found, value = mailbox.take(src, tag)
            if found:
                values[index] = value
                continue
            ended = mailbox.ended(src)
            if ended is not None:
                raise self._ended_error(ended, src, tag)
            missing += 1
        if not missing:
            return values
        loop = self._loop
        group = _Group(loop.create_future(), values, missing)
        slots = []
        for index, src in enumerate(sources):
            if values[index] is _MISSING:
                slot = _Slot(group, index)
                mailbox.wait(src, tag, slot)
                slots.append((src, slot))
        timer = loop.call_at(deadline, self._expire_group, group, sources, tag, timeout)
        try:
            await group.future
        except asyncio.CancelledError:
            # Our caller was cancelled: messages already handed to us go back, in order.
            for src, slot in reversed(slots):
                value = values[slot.index]
                if value is not _MISSING:
                    mailbox.put_back(src, tag, value)
            raise
        finally:
            timer.cancel()
            for src, slot in slots:
                mailbox.forget(src, tag, slot)
        return values

    def _expire_group(self, group: _Group, sources: Sequence[int], tag: int, timeout: float) -> None:
        if group.future.done():
            return
        late = next(src for index, src in enumerate(sources) if group.values[index] is _MISSING)
        group.future.set_exception(Timeout(
            f"{self._prefix()}: Tag {tagname(tag)} from player {late} timed-out after {_format_seconds(timeout)}"
        ))

    async def allgather(self, value: Any) -> list[Any]:
        """Collective: every member contributes ``value``; returns all values in rank order."""
        self._check_sendable()
        encoded = encode(value)
        deadline, timeout = self._deadline()
        others = [rank for rank in range(self._world_size) if rank != self._rank]
        self._post_many(others, Tag.ALLGATHER, encoded)
        if encoded.borrowed:
            await self._flush(others, True, deadline, timeout, Tag.ALLGATHER)
        received = await self._gather_from(others, Tag.ALLGATHER, deadline, timeout)
        received.insert(self._rank, decode(encoded.tobytes()))
        await self._flush(others, False, deadline, timeout, Tag.ALLGATHER)
        return received

    async def barrier(self) -> None:
        """Collective: returns once every member has entered (one round of messages)."""
        self._check_sendable()
        deadline, timeout = self._deadline()
        others = [rank for rank in range(self._world_size) if rank != self._rank]
        self._post_many(others, Tag.BARRIER, _EMPTY)
        await self._gather_from(others, Tag.BARRIER, deadline, timeout)

    async def broadcast(self, *, src: int, value: Any) -> Any:
        """Collective: returns player ``src``'s ``value`` on every member (``value`` is
        ignored elsewhere).  The root finishes even if a receiver has failed."""
        self._check_usable()
        src = self._require_rank(src, "src")
        deadline, timeout = self._deadline()
        if self._rank != src:
            # A pure receiver proceeds even on a revoked communicator: the root's value still
            # arrives if the root sent it before its revoke marker (see "revoke ordering").
            return await self._receive(src, Tag.BROADCAST, deadline, timeout)
        self._check_sendable()
        encoded = encode(value)
        others = [rank for rank in range(self._world_size) if rank != src]
        self._post_many(others, Tag.BROADCAST, encoded)
        await self._flush(others, encoded.borrowed, deadline, timeout, Tag.BROADCAST)
        return decode(encoded.tobytes())

    async def gather(self, *, value: Any, dst: int) -> list[Any] | None:
        """Collective: ``dst`` gets every member's ``value`` in rank order; others get None."""
        self._check_usable()
        dst = self._require_rank(dst, "dst")
        return await self._gatherv(list(range(self._world_size)), value, dst, Tag.GATHER)

    async def gatherv(self, *, src: Sequence[int], value: Any, dst: int) -> list[Any] | None:
        """Collective: ``dst`` gets the values of the players in ``src``, in that order;
        others get None.  ``value`` is ignored on players not in ``src``."""
        self._check_usable()
        src = self._require_rank_list(src, "src")
        dst = self._require_rank(dst, "dst")
        return await self._gatherv(src, value, dst, Tag.GATHERV)

    async def _gatherv(self, sources: list[int], value: Any, dst: int, tag: int) -> list[Any] | None:
        deadline, timeout = self._deadline()
        if self._rank in sources:
            self._check_sendable()  # a sender on a revoked communicator: Revoked
            encoded = encode(value)
            self._post(dst, tag, encoded)
            if self._rank != dst:
                await self._flush((dst,), encoded.borrowed, deadline, timeout, tag)
        if self._rank != dst:
            return None
        return await self._gather_from(sources, tag, deadline, timeout)

    async def scatter(self, *, src: int, values: Sequence[Any] | None) -> Any:
        """Collective: player ``src`` sends ``values[r]`` to rank ``r``; returns this
        player's value.  ``values`` is ignored on other players."""
        self._check_usable()
        src = self._require_rank(src, "src")
        return await self._scatterv(src, values, list(range(self._world_size)), Tag.SCATTER)

    async def scatterv(self, *, src: int, values: Sequence[Any] | None, dst: Sequence[int]) -> Any:
        """Collective: player ``src`` sends ``values[i]`` to player ``dst[i]``; returns this
        player's value, or None for players not in ``dst``."""
        self._check_usable()
        src = self._require_rank(src, "src")
        dst = self._require_rank_list(dst, "dst")
        return await self._scatterv(src, values, dst, Tag.SCATTERV)

    async def _scatterv(self, src: int, values: Sequence[Any] | None, destinations: list[int],
                        tag: int) -> Any:
        deadline, timeout = self._deadline()
        if self._rank == src:
            self._check_sendable()  # the root sends: Revoked on a revoked communicator
            if values is None:
                raise ValueError("values must be a sequence with one value per destination")
            values = list(values)
            if len(values) != len(destinations):
                raise ValueError(
                    f"values must hold one value per destination: {len(destinations)} expected, "
                    f"got {len(values)}"
                )
            encoded = [encode(value) for value in values]  # every TypeError before any send
            borrowed = False
            for dst, item in zip(destinations, encoded, strict=True):
                self._post(dst, tag, item)
                borrowed = borrowed or item.borrowed
            await self._flush(destinations, borrowed, deadline, timeout, tag)
        if self._rank not in destinations:
            return None
        return await self._receive(src, tag, deadline, timeout)

    # -- fault tolerance and lifetime -----------------------------------------------
    async def revoke(self) -> None:
        """Revoke the communicator at every surviving member.

        Idempotent: a second call, or a call after another member's revoke arrived, does
        nothing.  The revoke travels out of band, ahead of queued data, and every member
        forwards the first one it sees to all others, so it reaches every survivor even if
        this player dies half-way.  Afterwards sends raise ``Revoked``; a receive from P still
        gets what P sent before it learned of the revoke, then raises ``Revoked``.
        """
        if self._freed or self._revoked or self._excluded is not None:
            return
        self._revoked = True
        log.warning("Comm %s player %s revoked by player %s", self._name, self._rank, self._rank)
        self._send_control_all(Control.REVOKE)

    async def shrink(self, *, name: str,
                     timeout: float | None = None) -> tuple[AsyncSocketCommunicator, list[int]]:
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
          operation, never a communicator of its own.

        A player answers the agreement from its link reader, so one that is still busy in
        an operation when the others shrink is not mistaken for a dead one.  Long blocking
        computations (which stop the event loop) must stay shorter than ``timeout``.

        Parameters
        ----------
        name:
            Name of the new communicator (for people; names may repeat).
        timeout:
            How long the round waits for a member to answer (default: :attr:`timeout`).

        Returns
        -------
        (communicator, oldranks)
            The new communicator (same links, fresh id, inherits ``timeout``) and the old
            ranks of its members.

        Raises
        ------
        Excluded
            If the others agreed without this player.
        NotRunning
            If the communicator was freed.
        """
        if not isinstance(name, str):
            raise ValueError(f"name must be a string, got {name!r}")
        if self._freed:
            raise NotRunning(f"{self._prefix()}: the communicator was freed")
        if self._excluded is not None:
            raise Excluded(f"{self._prefix()}: {self._excluded}")
        patience = self._timeout if timeout is None else self._check_timeout(timeout)
        key = self._rounds.started
        members = await self._rounds.shrink(patience)
        child = self._child("shrink", key, "", list(members), name=name)
        return child, list(members)

    async def split(self, *, name: str | None) -> AsyncSocketCommunicator | None:
        """Collective: players giving the same ``name`` form a new communicator.

        Ranks in the new communicator follow the old ranks.  ``None`` opts out (returns
        None).  The new communicator uses the existing links and inherits ``timeout``.
        """
        if name is not None and not isinstance(name, str):
            raise ValueError(f"name must be a string or None, got {name!r}")
        self._check_sendable()
        sequence = self._splits
        self._splits += 1
        names = await self.allgather(name)
        if name is None:
            return None
        members = [rank for rank, other in enumerate(names) if other == name]
        return self._child("split", sequence, name, members)

    def _child(self, operation: str, sequence: int, label: str, members: list[int], *,
               name: str | None = None) -> AsyncSocketCommunicator:
        worlds = [self._members[rank] for rank in members]
        comm_id = child_id(self.comm_id, operation, sequence, label, worlds)
        child = AsyncSocketCommunicator(endpoint=self._endpoint, name=label if name is None else name,
                                        timeout=self._timeout, _members=worlds, _comm_id=comm_id)
        self._descendants.append(weakref.ref(child))
        return child

    async def free(self) -> None:
        """Release the communicator.  Idempotent; never raises.

        Tells the other members this player is done with it (their receives from this
        player then fail at once instead of timing out); links close once no communicator
        uses them.  Using the communicator afterwards raises ``NotRunning``.
        """
        if self._freed:
            return
        self._freed = True
        self._send_control_all(Control.FREED)
        for src, tag, waiter in self._mailbox.close():
            waiter.set_exception(NotRunning(
                f"{self._prefix()}: the communicator was freed while receiving Tag {tagname(tag)} "
                f"from player {src}"
            ))
        self._rounds.close()
        self._endpoint.retire(self, self._on_retired_frame)

    # -- construction helpers --------------------------------------------------------
    @staticmethod
    async def connect(*, world_size: int | None = None, rank: int | None = None,
                      address: str | None = None, root_address: str | None = None,
                      identity: str | None = None, trusted: Sequence[str] | None = None,
                      token: Any = None, name: str = "world", timeout: float = 5,
                      startup_timeout: float = 5) -> AsyncSocketCommunicator:
        """Join a world by rendezvous with rank 0 (players on separate hosts, or embedded in
        an asyncio service).  See :func:`cicada_async.communicator.connect.connect_world`."""
        from .connect import connect_world

        return await connect_world(world_size=world_size, rank=rank, address=address,
                                   root_address=root_address, identity=identity, trusted=trusted,
                                   token=token, name=name, timeout=timeout,
                                   startup_timeout=startup_timeout)

    @staticmethod
    def run(*, world_size: int, fn: Any, identities: Sequence[str] | None = None,
            trusted: Sequence[str] | None = None, args: Sequence[Any] = (),
            kwargs: dict[str, Any] | None = None, family: str = "tcp", name: str = "world",
            timeout: float = 5, startup_timeout: float = 5, show_traceback: bool = False,
            start_method: str | None = None) -> list[Any]:
        """Run ``await fn(communicator, *args, **kwargs)`` in ``world_size`` local player
        processes; return their results in rank order.  See
        :func:`cicada_async.communicator.launcher.run`."""
        from .launcher import run

        return run(world_size=world_size, fn=fn, identities=identities, trusted=trusted, args=args,
                   kwargs=kwargs, family=family, name=name, timeout=timeout,
                   startup_timeout=startup_timeout, show_traceback=show_traceback,
                   start_method=start_method)
