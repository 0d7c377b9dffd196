"""Who is in a communicator, and what happens when that changes: revoke, shrink, split, free.

A :class:`Membership` is the part of a communicator that the links and the shrink
agreement talk to.  It implements the endpoint's ``FrameSink`` (frames, lost links and
excluded peers arrive here from the link readers) and the agreement's ``AgreementHost``,
and keeps the communicator's state: open, revoked, excluded or freed.

Revoke ordering (SPEC, "Revoke ordering"): a peer's REVOKE control frame is a marker behind
everything the peer sent before it; it ends that peer as a source in the mailbox, so
receives from it still get what came before and then fail with ``Revoked``.  A lost link
ends its peer the same way, with ``PeerFailed``.  News that a peer is dead from other
members (gossip in the agreement) only informs the membership decision.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from typing import Any, Protocol

from .._core.framing import Control, Frame, Kind
from .._core.ids import child_id, world_id
from .._failures import describe_loss
from .._transport import Endpoint
from ..errors import Excluded, NotRunning, PeerFailed, RemoteProtocolError, Revoked
from ._messages import Ended, Messages
from ._shrink import Rounds
from .interface import tagname

log = logging.getLogger(__name__)

__all__ = ["Membership"]

_DATA = int(Kind.DATA)
_BATCH = int(Kind.BATCH)


class _Owner(Protocol):
    """The communicator a membership belongs to (its public properties)."""

    @property
    def name(self) -> str: ...

    @property
    def rank(self) -> int: ...

    @property
    def world_size(self) -> int: ...

    @property
    def timeout(self) -> float: ...


class Membership:
    """Membership state and fault handling of one communicator (see the module docstring).

    Parameters
    ----------
    owner:
        The communicator.
    endpoint:
        The links it runs over.
    members:
        World ranks of the members, in communicator rank order.
    comm_id:
        The communicator id (default: the world communicator's, from the session).
    """

    def __init__(self, owner: _Owner, endpoint: Endpoint, members: list[int], comm_id: int | None) -> None:
        self._owner = owner
        self.endpoint = endpoint
        self.members = members
        self._rank_of = {world: rank for rank, world in enumerate(members)}
        self.comm_id = world_id(endpoint.session) if comm_id is None else comm_id
        self._peers = [world for world in members if world != endpoint.rank]
        self._links = [None if world == endpoint.rank else endpoint.links[world] for world in members]
        self.freed = False
        self.revoked = False
        self._excluded: str | None = None
        self._splits = 0
        self._descendants: list[weakref.ref[Membership]] = []
        self._rounds = Rounds(self)
        self._messages: Messages | None = None

    def register(self, messages: Messages) -> None:
        """Start routing frames here (the communicator is ready)."""
        self._messages = messages
        self.endpoint.register(self)

    @property
    def _m(self) -> Messages:
        assert self._messages is not None
        return self._messages

    @property
    def state(self) -> str:
        """``"freed"``, ``"excluded"``, ``"revoked"`` or ``"open"``."""
        if self.freed:
            return "freed"
        if self._excluded is not None:
            return "excluded"
        return "revoked" if self.revoked else "open"

    # -- AgreementHost ---------------------------------------------------------------
    @property
    def prefix(self) -> str:
        """Start of error messages (``"Comm world player 0"``)."""
        return f"Comm {self._owner.name} player {self._owner.rank}"

    @property
    def rank(self) -> int:
        """This player's rank in the communicator."""
        return self._owner.rank

    @property
    def world_size(self) -> int:
        """Number of members."""
        return self._owner.world_size

    @property
    def timeout(self) -> float:
        """The communicator's receive deadline."""
        return self._owner.timeout

    @property
    def excluded(self) -> bool:
        """True once the others agreed without this player."""
        return self._excluded is not None

    def gone_ranks(self) -> set[int]:
        """Members known gone for good: their links closed or ignored."""
        return {rank for rank, link in enumerate(self._links)
                if link is not None and (link.closed or link.peer_done or link.ignoring)}

    def send_agreement(self, dst: int, message: dict[str, Any]) -> None:
        """Send an agreement message to member ``dst``."""
        self._m.post_control(dst, Control.AGREEMENT, message)

    def exclude_member(self, rank: int, key: int) -> None:
        """Tell ``rank`` it was left out of round ``key``; ignore its link from now on."""
        link = self._links[rank]
        if link is None or link.ignoring:
            return
        self._m.post_control(rank, Control.EXCLUDED, {"k": key})
        self.endpoint.exclude(self.members[rank])

    def become_excluded(self, by: int) -> None:
        """The others agreed without us: this communicator and its descendants are unusable."""
        if self._excluded is None:
            self._excluded = (f"player {by} agreed on a new communicator without this player "
                              "(it was too slow to answer, or thought dead)")
            log.warning("%s: excluded by player %s", self.prefix, by)
            reason = self._excluded
            self._m.close(lambda src, tag: Excluded(
                f"{self.prefix}: {reason} (while receiving Tag {tagname(tag)} from player {src})"))
            for ref in self._descendants:
                child = ref()
                if child is not None and not child.freed:
                    child.become_excluded(by)
        link = self._links[by] if 0 <= by < len(self._links) else None
        if link is not None and not link.ignoring:
            # It ignores us from now on: close our side, so the link goes away.
            self.endpoint.exclude(self.members[by])
            link.goodbye(self.endpoint.linger)

    async def settle(self) -> None:
        """Let the loop read the input that has already arrived on the links."""
        await self.endpoint.settle()

    # -- FrameSink ---------------------------------------------------------------------
    @property
    def peers(self) -> Sequence[int]:
        """World ranks of the other members."""
        return self._peers

    def on_frame(self, peer: int, frame: Frame) -> None:
        """A frame from world player ``peer`` for this communicator (link reader context)."""
        src = self._rank_of.get(peer)
        if src is None:
            raise RemoteProtocolError(f"{self.prefix}: world player {peer} sent a frame for a communicator "
                                      "it is not in")
        kind = frame.kind
        if kind == _DATA:
            if not self.freed:
                self._m.on_data(src, frame)
        elif kind == _BATCH:
            if not self.freed:
                self._m.on_batch(src, frame)
        else:
            self._on_control(src, frame.tag, self._m.control_value(src, frame))

    def _on_control(self, src: int, code: int, value: Any) -> None:
        if code == Control.REVOKE:
            if not self.revoked and not self.freed:
                self.revoked = True
                log.warning("Comm %s player %s revoked by player %s", self._owner.name, self.rank, src)
                self._m.post_control_all(Control.REVOKE)  # forward, before waking anyone
            self._m.end_source(src, Ended(Revoked, "the communicator was revoked"))
        elif code == Control.FREED:
            # It sends nothing more here; but it is not dead: a member that freed the
            # communicator after a shrink still answers that shrink's agreement (tombstone).
            self._m.end_source(src, Ended(PeerFailed, "the player freed the communicator"))
        else:
            self._rounds.on_control(src, code, value)

    def on_peer_lost(self, peer: int, error: BaseException | None, goodbye: bool) -> None:
        """``peer``'s link ended: what it sent stays deliverable, then receives fail."""
        src = self._rank_of.get(peer)
        if src is None:
            return
        kind = RemoteProtocolError if isinstance(error, RemoteProtocolError) else PeerFailed
        self._m.end_source(src, Ended(kind, describe_loss(error, goodbye)))
        self._rounds.on_dead(src)

    def on_peer_excluded(self, peer: int) -> None:
        """A shrink left ``peer`` out: its link is ignored from now on, for every communicator."""
        src = self._rank_of.get(peer)
        if src is None:
            return
        self._m.end_source(src, Ended(PeerFailed, "was left out by a shrink (too slow or thought dead)"))
        self._rounds.on_dead(src)

    def _on_retired_frame(self, peer: int, frame: Frame) -> None:
        """A control frame for this communicator after it was freed."""
        src = self._rank_of.get(peer)
        if src is None:
            return
        try:
            value = self._m.control_value(src, frame)
            if frame.tag == Control.AGREEMENT:
                self._rounds.answer_late(src, value)
            elif frame.tag == Control.EXCLUDED:
                self._excluded = self._excluded or "excluded"
                for ref in self._descendants:
                    child = ref()
                    if child is not None and not child.freed:
                        child.become_excluded(src)
        except RemoteProtocolError:
            return

    # -- state checks --------------------------------------------------------------------
    def check_usable(self) -> None:
        """Raise ``NotRunning`` or ``Excluded`` if the communicator cannot be used."""
        if self.freed:
            raise NotRunning(f"{self.prefix}: the communicator was freed")
        if self._excluded is not None:
            raise Excluded(f"{self.prefix}: {self._excluded}")

    def check_sendable(self) -> None:
        """:meth:`check_usable`, and raise ``Revoked`` if the communicator was revoked."""
        if self.freed or self._excluded is not None:
            self.check_usable()
        if self.revoked:
            raise Revoked(f"{self.prefix}: the communicator was revoked")

    def check_round(self, sends: bool) -> None:
        """Before a communication round: :meth:`check_sendable` if it sends to a peer, else
        :meth:`check_usable`.  A round that only receives is not refused on a revoked
        communicator: it still gets what each source sent before its revoke marker (the
        "revoke ordering" rule), so survivors fail at the same operation."""
        if sends:
            self.check_sendable()
        else:
            self.check_usable()

    # -- revoke, shrink, split, free -------------------------------------------------------
    def revoke(self) -> None:
        """Revoke at every member (idempotent); see ``AsyncSocketCommunicator.revoke``."""
        if self.freed or self.revoked or self._excluded is not None:
            return
        self.revoked = True
        log.warning("Comm %s player %s revoked by player %s", self._owner.name, self.rank, self.rank)
        self._m.post_control_all(Control.REVOKE)

    async def shrink(self, patience: float) -> tuple[int, list[int]]:
        """Run the next agreement round; return its sequence number and the agreed members."""
        key = self._rounds.started
        members = await self._rounds.shrink(patience)
        return key, list(members)

    def next_split(self) -> int:
        """The sequence number of a new split call."""
        self.check_sendable()
        sequence = self._splits
        self._splits += 1
        return sequence

    def child_identity(self, operation: str, sequence: int, label: str,
                       members: list[int]) -> tuple[list[int], int]:
        """World ranks and communicator id of a communicator made from this one."""
        worlds = [self.members[rank] for rank in members]
        return worlds, child_id(self.comm_id, operation, sequence, label, worlds)

    def adopt(self, child: Membership) -> None:
        """``child`` was made from this communicator (it is excluded with it)."""
        self._descendants.append(weakref.ref(child))

    def free(self) -> None:
        """Release the communicator (idempotent, never raises)."""
        if self.freed:
            return
        self.freed = True
        self._m.post_control_all(Control.FREED)
        prefix = self.prefix
        self._m.close(lambda src, tag: NotRunning(
            f"{prefix}: the communicator was freed while receiving Tag {tagname(tag)} from player {src}"))
        self._rounds.close()
        self.endpoint.retire(self, self._on_retired_frame)
