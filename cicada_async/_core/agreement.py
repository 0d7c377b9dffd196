"""The shrink agreement, as a state machine: messages, link failures and timer expiries in;
messages to send and outcomes out.  Sans-IO and deterministic (time is passed in).

Problem
-------
The surviving members of a communicator of ``size`` players must agree on an ordered member
list for the new communicator, although players may crash, or hang and look crashed, at any
moment, including during the agreement.  Every member that returns must return the same
list; a member the others gave up on must learn it is excluded and never form a group of its
own.

Algorithm (a star-shaped "early returning agreement" with coordinator fail-over, on top of
enforced fail-stop; see ``AGREEMENT.md``)
-------------------------------------------------------------------------------------------
Each member keeps ``dead``, the ranks it has given up on.  It only grows: a link that closed
(``on_dead``), a peer that did not answer within ``timeout`` (``on_timer``), and the dead sets
other members gossip in every message.  Messages from a member already in ``dead`` are ignored.
Giving up is final: whoever is left out of a decision is sent EXCLUDED by every member that
adopts it, and its link is then ignored.

* The coordinator is the lowest rank not in ``dead``.  When it learns that a shrink is under
  way (its own ``enter``, or any message about it) it sends REQUEST to every member it
  believes alive and gathers their answers for at most ``timeout``.
* A member that gets REQUEST from its coordinator answers PROPOSE with its dead set at once,
  whether or not its application has called ``shrink`` yet: answering is the reader's job,
  so a live player is never mistaken for a dead one just because it was busy elsewhere.  A
  member that has entered ``shrink`` also sends PROPOSE to its coordinator on its own, and
  again whenever its dead set grows.
* The coordinator decides once every member it believes alive has answered (those that did
  not answer in time are added to ``dead``): the members are the ranks not in ``dead``, in
  old-rank order.  It keeps the decision and sends DECIDED to every member of it.
* A member adopts the first DECIDED it gets from a member not in ``dead``, and from then on
  answers every REQUEST or PROPOSE with DECIDED.  A coordinator that receives DECIDED adopts
  and re-announces it: it never decides anew once anyone alive has returned.
* A member waiting for its coordinator gives up on it after ``timeout`` without any sign of
  life, or ``2 * timeout`` after the coordinator's REQUEST (long enough for the coordinator to
  finish gathering), and moves to the next lowest rank.

Invariants (checked on every schedule of the simulation in ``tests/test_agreement.py``)
---------------------------------------------------------------------------------------
1. ``dead`` only grows, and a member never lists itself (learning it is in someone's dead set
   means it is excluded).
2. Coordinators take over in increasing rank order.
3. A coordinator decides only after hearing from every member it believes alive; each of them
   merged the coordinator's dead set (which holds every lower rank) before answering, and
   ignores those lower ranks from then on.  So either one of them had adopted an earlier
   decision (it answers DECIDED, and the coordinator adopts it), or no one can adopt an
   earlier decision any more.
4. Hence all members that adopt a decision for a round adopt the same list.  A member left
   out is sent EXCLUDED by every member that adopts it, so it cannot keep working with them;
   if it had adopted an older list before being left out, that list's communicator fails on
   first use and its ``shrink`` raises ``Excluded``.

Validity: members whose link had closed before the round reached the coordinator (through
anyone's dead set) are left out; members that answer within ``timeout`` are kept.  A member
whose death is noticed only during the round may still be listed (as in ULFM); the next
operation on the new communicator detects it.
Termination: each expiry adds a member to some ``dead`` set, so a round ends after at most
``size`` coordinator changes, each bounded by ``3 * timeout`` plus message delays.

Time: the caller passes ``now`` to every call and arms one timer for :attr:`Agreement.deadline`.
Before acting on an expiry, the caller must first process every message that has already
arrived (after a process is stopped and resumed, timers can otherwise fire before the input
that arrived meanwhile is read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeGuard

from ..errors import RemoteProtocolError

__all__ = [
    "Agreement",
    "Decide",
    "Exclude",
    "ExcludedSelf",
    "Send",
    "is_round_number",
    "parse_message",
]

PROPOSE = "propose"
REQUEST = "request"
DECIDED = "decided"
_TYPES = (PROPOSE, REQUEST, DECIDED)


@dataclass(frozen=True)
class Send:
    """Send ``message`` (a dict of codec-friendly values) to member ``dst``."""

    dst: int
    message: dict[str, Any]


@dataclass(frozen=True)
class Decide:
    """The round is decided: ``members`` (old ranks, ascending) form the new communicator."""

    members: tuple[int, ...]


@dataclass(frozen=True)
class Exclude:
    """Tell these members they are excluded, and ignore their links from now on."""

    ranks: tuple[int, ...]


@dataclass(frozen=True)
class ExcludedSelf:
    """This member was left out; ``by`` is the member whose message said so."""

    by: int


Action = Send | Decide | Exclude | ExcludedSelf


def is_round_number(key: Any) -> TypeGuard[int]:
    """Whether ``key`` (received from a peer) is a valid round number: an int in [0, 2**63)
    (larger ones are no round of ours, and too large to print in an error)."""
    return isinstance(key, int) and not isinstance(key, bool) and 0 <= key < 1 << 63


def parse_message(value: Any, *, size: int) -> dict[str, Any]:
    """Validate an agreement message received from a peer; return it normalized.

    Raises :class:`~cicada_async.errors.RemoteProtocolError` if it is malformed.
    """
    if not isinstance(value, dict):
        raise RemoteProtocolError("agreement message is not a dict")
    kind = value.get("t")
    key = value.get("k")
    dead = value.get("dead", [])
    if not isinstance(kind, str) or kind not in _TYPES:  # (an array's ``in`` would raise)
        shown = f"{kind!r:.40}" if isinstance(kind, str) else type(kind).__name__
        raise RemoteProtocolError(f"unknown agreement message type {shown}")
    if not is_round_number(key):
        raise RemoteProtocolError("agreement message lacks a valid round number")
    if not isinstance(dead, list) or not all(isinstance(r, int) and 0 <= r < size for r in dead):
        raise RemoteProtocolError("agreement message has an invalid dead set")
    message = {"t": kind, "k": key, "dead": dead}
    if kind == DECIDED:
        members = value.get("m")
        if (not isinstance(members, list) or not members
                or not all(isinstance(r, int) and 0 <= r < size for r in members)
                or sorted(set(members)) != members):
            raise RemoteProtocolError("agreement decision has an invalid member list")
        message["m"] = members
    return message


class Agreement:
    """One shrink round as seen by one member.

    Parameters
    ----------
    me:
        This member's rank in the communicator being shrunk.
    size:
        Number of members of that communicator.
    key:
        The round's number (the how-many-th shrink of that communicator); carried in every
        message so rounds never mix.
    dead:
        Ranks already known dead (their links closed).
    timeout:
        How long to wait for a member to answer.
    """

    def __init__(self, *, me: int, size: int, key: int, dead: set[int] | frozenset[int] = frozenset(),
                 timeout: float) -> None:
        if not 0 <= me < size:
            raise ValueError("me must be a rank of the communicator")
        if me in dead:
            raise ValueError("a member cannot start out dead")
        self.me = me
        self.size = size
        self.key = key
        self.timeout = timeout
        self.dead: set[int] = set(dead)
        self.entered = False  # the application called shrink
        self.decided: tuple[int, ...] | None = None
        self.excluded_by: int | None = None
        # Coordinator state.
        self.gathering = False
        self.heard: set[int] = set()
        self.gather_started = 0.0
        self.gather_deadline: float | None = None
        # Participant state.
        self.proposed_to: int | None = None
        self.proposed_dead: frozenset[int] = frozenset()
        self.wait_started = 0.0
        self.wait_factor = 1.0
        self.wait_deadline: float | None = None

    def __repr__(self) -> str:
        state = ("excluded" if self.excluded_by is not None else f"decided {list(self.decided)}"
                 if self.decided is not None else "gathering" if self.gathering else "waiting")
        return f"<Agreement me={self.me} key={self.key} dead={sorted(self.dead)} {state}>"

    # -- queries ---------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """True once the round is decided or this member is excluded."""
        return self.decided is not None or self.excluded_by is not None

    @property
    def coordinator(self) -> int:
        """The lowest rank not known dead (this member's view of the coordinator)."""
        for rank in range(self.size):
            if rank not in self.dead:
                return rank
        raise AssertionError("a member never lists itself as dead")

    @property
    def deadline(self) -> float | None:
        """When :meth:`on_timer` must next be called, or None."""
        if self.done:
            return None
        if self.gathering:
            return self.gather_deadline
        if self.entered:
            return self.wait_deadline
        return None

    # -- inputs ----------------------------------------------------------------------
    def set_timeout(self, timeout: float) -> None:
        """Use ``timeout`` from now on, also for waits already under way (the application's
        own ``shrink(timeout=...)`` arrives after its reader may have started the round)."""
        self.timeout = timeout
        if self.gathering:
            self.gather_deadline = self.gather_started + timeout
        if self.wait_deadline is not None:
            self.wait_deadline = self.wait_started + self.wait_factor * timeout

    def enter(self, now: float) -> list[Action]:
        """The application calls shrink."""
        self.entered = True
        if self.done:
            return []
        return self._step(now)

    def on_dead(self, rank: int, now: float) -> list[Action]:
        """The link to ``rank`` closed: it is dead for good."""
        if self.done or rank == self.me or rank in self.dead:
            return []
        self.dead.add(rank)
        return self._step(now)

    def on_message(self, src: int, message: dict[str, Any], now: float) -> list[Action]:
        """A message (validated by :func:`parse_message`) arrived from member ``src``."""
        if src in self.dead or src == self.me or self.excluded_by is not None:
            return []
        gossip = message["dead"]
        if self.me in gossip:
            return self._excluded(src)
        kind = message["t"]
        if self.decided is not None:
            if kind in (REQUEST, PROPOSE):
                return [Send(src, self._decided_message())]
            return []
        grew = self._merge(gossip)
        if kind == DECIDED:
            return self._adopt(message["m"], src)
        if kind == REQUEST:
            # src is alive and gathering; with its dead set merged, it is our coordinator.
            if self.coordinator != src:  # pragma: no cover - excluded by invariant 2
                return self._step(now) if grew else []
            self._wait(now, 2.0)
            if self.proposed_to == src and self.proposed_dead == self.dead:
                return []  # our PROPOSE is already on its way: the coordinator counts it
            return [self._propose(src)]
        # PROPOSE: src believes we coordinate; with its dead set merged, we do.
        actions = self._step(now)
        if self.gathering and not self.done:
            self.heard.add(src)
            actions += self._maybe_decide()
        return actions

    def on_timer(self, now: float) -> list[Action]:
        """The deadline passed (after pending input was processed)."""
        if self.done:
            return []
        if self.gathering and self.gather_deadline is not None and now >= self.gather_deadline:
            late = [rank for rank in self._alive() if rank not in self.heard]
            self.dead.update(late)
            return self._decide()
        if (not self.gathering and self.entered and self.wait_deadline is not None
                and now >= self.wait_deadline and self.proposed_to is not None):
            self.dead.add(self.proposed_to)
            return self._step(now)
        return []

    # -- internals -------------------------------------------------------------------
    def answer_late(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """The reply to a (parsed) question about this round that arrives after the member
        stopped taking part (it freed the communicator): the decision, if there is one."""
        if self.decided is not None and message["t"] in (PROPOSE, REQUEST):
            return self._decided_message()
        return None

    def _alive(self) -> list[int]:
        return [rank for rank in range(self.size) if rank not in self.dead]

    def _merge(self, gossip: list[int]) -> bool:
        before = len(self.dead)
        self.dead.update(rank for rank in gossip if rank != self.me)
        return len(self.dead) != before

    def _message(self, kind: str) -> dict[str, Any]:
        return {"t": kind, "k": self.key, "dead": sorted(self.dead)}

    def _decided_message(self) -> dict[str, Any]:
        assert self.decided is not None
        message = self._message(DECIDED)
        message["m"] = list(self.decided)
        return message

    def _propose(self, coordinator: int) -> Send:
        self.proposed_to = coordinator
        self.proposed_dead = frozenset(self.dead)
        return Send(coordinator, self._message(PROPOSE))

    def _step(self, now: float) -> list[Action]:
        """Re-evaluate after the dead set grew or the application entered."""
        if self.done:
            return []
        coordinator = self.coordinator
        if coordinator == self.me:
            if not self.gathering:
                self.gathering = True
                self.heard = {self.me}
                self.gather_started = now
                self.gather_deadline = now + self.timeout
                actions: list[Action] = [
                    Send(rank, self._message(REQUEST)) for rank in self._alive() if rank != self.me
                ]
                return actions + self._maybe_decide()
            return self._maybe_decide()
        if not self.entered:
            return []  # answer requests only; the application has not asked for a round yet
        if self.proposed_to != coordinator or self.proposed_dead != self.dead:
            if self.proposed_to != coordinator:
                self._wait(now, 1.0)
            return [self._propose(coordinator)]
        return []

    def _wait(self, now: float, factor: float) -> None:
        self.wait_started = now
        self.wait_factor = factor
        self.wait_deadline = now + factor * self.timeout

    def _maybe_decide(self) -> list[Action]:
        if all(rank in self.heard for rank in self._alive()):
            return self._decide()
        return []

    def _decide(self) -> list[Action]:
        self.decided = tuple(self._alive())
        return self._finish(announce=True, skip=None)

    def _adopt(self, members: list[int], src: int) -> list[Action]:
        if self.me not in members:
            return self._excluded(src)
        self.decided = tuple(members)
        self.dead.update(rank for rank in range(self.size) if rank not in self.decided)
        # A coordinator that learns of a decision re-announces it; participants need not.
        return self._finish(announce=self.gathering, skip=src)

    def _finish(self, *, announce: bool, skip: int | None) -> list[Action]:
        assert self.decided is not None
        actions: list[Action] = []
        if announce:
            message = self._decided_message()
            actions += [Send(rank, message) for rank in self.decided if rank not in (self.me, skip)]
        left_out = tuple(rank for rank in range(self.size) if rank not in self.decided)
        if left_out:
            actions.append(Exclude(left_out))
        actions.append(Decide(self.decided))
        self.gathering = False
        return actions

    def _excluded(self, by: int) -> list[Action]:
        self.excluded_by = by
        self.gathering = False
        return [ExcludedSelf(by)]

    def exclude(self, by: int) -> list[Action]:
        """An EXCLUDED notice arrived from ``by``: it adopted a decision without this member.

        Ignored if ``by`` is already given up on: its decision is stale (nobody alive in our
        view adopts it) and it is about to be left out itself.
        """
        if self.excluded_by is not None or by in self.dead:
            return []
        return self._excluded(by)
