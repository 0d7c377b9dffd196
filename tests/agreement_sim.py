"""A discrete-event network for driving shrink agreements through seeded failure schedules.

Models what the real I/O layer does around :class:`~cicada_async._core.agreement.Agreement`:
FIFO links with random delays, crash failures (a crashed member's links report EOF to the
others after everything it sent), stalled members (SIGSTOP: nothing is processed until they
resume; then queued input is handled before timers, as the library's settle step does), and
the EXCLUDED notice / ignored link that follows every adopted decision.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from cicada_async._core.agreement import (
    Agreement,
    Decide,
    Exclude,
    ExcludedSelf,
    Send,
    parse_message,
)


@dataclass
class Node:
    rank: int
    machine: Agreement
    crashed_at: float | None = None
    send_budget: int | None = None  # crash after this many sends
    stalled_until: float = 0.0
    deferred: list = field(default_factory=list)
    ignoring: set = field(default_factory=set)
    decided: tuple | None = None
    decided_at: float | None = None
    excluded: bool = False
    entered_at: float | None = None
    timer_at: float | None = None
    stalled_ever: bool = False


class Network:
    def __init__(self, size: int, seed: int, *, timeout: float = 1.0, max_delay: float = 0.05):
        self.size = size
        self.rng = random.Random(seed)
        self.timeout = timeout
        self.max_delay = max_delay
        self.now = 0.0
        self.events: list = []
        self.counter = 0
        self.last_delivery: dict[tuple[int, int], float] = {}
        self.nodes = [Node(rank, Agreement(me=rank, size=size, key=0, timeout=timeout))
                      for rank in range(size)]
        self.known_dead_before_round: set[int] = set()
        self.round_started_at: float | None = None
        self.messages = 0
        self.last_resume = 0.0

    # -- scheduling --------------------------------------------------------------------
    def at(self, time: float, kind: str, *payload) -> None:
        self.counter += 1
        heapq.heappush(self.events, (time, self.counter, kind, payload))

    def link_time(self, src: int, dst: int, extra: float = 0.0) -> float:
        delay = self.rng.uniform(0.0001, self.max_delay) + extra
        time = max(self.now + delay, self.last_delivery.get((src, dst), 0.0) + 1e-6)
        self.last_delivery[(src, dst)] = time
        return time

    # -- scenario set-up ---------------------------------------------------------------
    def crash_at(self, rank: int, time: float) -> None:
        self.at(time, "crash", rank)

    def crash_after_sends(self, rank: int, sends: int) -> None:
        self.nodes[rank].send_budget = sends

    def dead_from_start(self, rank: int, known_by: list[int], late: dict[int, float]) -> None:
        """``rank`` died before the round; ``known_by`` saw its link close already."""
        node = self.nodes[rank]
        node.crashed_at = 0.0
        for other in known_by:
            self.nodes[other].machine.dead.add(rank)
            self.known_dead_before_round.add(rank)
        for other, time in late.items():
            self.at(time, "dead", other, rank)

    def enter_at(self, rank: int, time: float) -> None:
        self.at(time, "enter", rank)

    def stall(self, rank: int, start: float, duration: float) -> None:
        self.at(start, "stall", rank, start + duration)

    # -- running -----------------------------------------------------------------------
    def run(self, until: float) -> None:
        while self.events and self.events[0][0] <= until:
            time, _, kind, payload = heapq.heappop(self.events)
            self.now = time
            getattr(self, f"_on_{kind}")(*payload)
        self.now = until

    def alive(self, rank: int) -> bool:
        return self.nodes[rank].crashed_at is None

    def _busy(self, node: Node, event: tuple) -> bool:
        if node.stalled_until > self.now:
            node.deferred.append(event)
            return True
        return False

    def _on_crash(self, rank: int) -> None:
        node = self.nodes[rank]
        if node.crashed_at is not None:
            return
        node.crashed_at = self.now
        for other in range(self.size):
            if other != rank:
                # EOF arrives after everything the crashed member sent on that link.
                self.at(self.link_time(rank, other, extra=self.rng.uniform(0, 0.01)), "dead", other, rank)

    def _on_dead(self, rank: int, dead: int) -> None:
        node = self.nodes[rank]
        if node.crashed_at is not None or self._busy(node, ("dead", rank, dead)):
            return
        self._apply(node, node.machine.on_dead(dead, self.now))

    def _on_enter(self, rank: int) -> None:
        node = self.nodes[rank]
        if node.crashed_at is not None or self._busy(node, ("enter", rank)):
            return
        if self.round_started_at is None:
            self.round_started_at = self.now
        node.entered_at = self.now
        self._apply(node, node.machine.enter(self.now))

    def _on_deliver(self, dst: int, src: int, message: dict) -> None:
        node = self.nodes[dst]
        if node.crashed_at is not None or src in node.ignoring:
            return
        if self._busy(node, ("deliver", dst, src, message)):
            return
        if self.round_started_at is None:
            self.round_started_at = self.now
        self._apply(node, node.machine.on_message(src, parse_message(message, size=self.size), self.now))

    def _on_excluded(self, dst: int, src: int) -> None:
        node = self.nodes[dst]
        if node.crashed_at is not None or src in node.ignoring:
            return
        if self._busy(node, ("excluded", dst, src)):
            return
        self._apply(node, node.machine.exclude(src))

    def _on_timer(self, rank: int, deadline: float) -> None:
        node = self.nodes[rank]
        if node.crashed_at is not None or node.timer_at != deadline:
            return
        if self._busy(node, ("timer", rank, deadline)):
            return
        node.timer_at = None
        self._apply(node, node.machine.on_timer(self.now))

    def _on_stall(self, rank: int, until: float) -> None:
        node = self.nodes[rank]
        self.last_resume = max(self.last_resume, until)
        node.stalled_until = until
        node.stalled_ever = True
        self.at(until, "resume", rank)

    def _on_resume(self, rank: int) -> None:
        node = self.nodes[rank]
        if node.crashed_at is not None:
            return
        node.stalled_until = 0.0
        deferred, node.deferred = node.deferred, []
        # Settle: input that arrived during the stall first, timers last.
        for event in sorted(deferred, key=lambda e: e[0] == "timer"):
            getattr(self, f"_on_{event[0]}")(*event[1:])

    def _apply(self, node: Node, actions: list) -> None:
        for action in actions:
            if node.crashed_at is not None:
                return
            if isinstance(action, Send):
                if node.send_budget is not None:
                    if node.send_budget == 0:
                        self._on_crash(node.rank)
                        return
                    node.send_budget -= 1
                self.messages += 1
                arrival = self.link_time(node.rank, action.dst)
                self.at(arrival, "deliver", action.dst, node.rank, action.message)
            elif isinstance(action, Decide):
                assert node.decided is None or node.decided == action.members
                node.decided = action.members
                node.decided_at = self.now
            elif isinstance(action, Exclude):
                for rank in action.ranks:
                    if rank not in node.ignoring:
                        self.at(self.link_time(node.rank, rank), "excluded", rank, node.rank)
                        node.ignoring.add(rank)
            elif isinstance(action, ExcludedSelf):
                node.excluded = True
        deadline = node.machine.deadline
        if deadline is not None and deadline != node.timer_at:
            node.timer_at = deadline
            self.at(max(deadline, self.now), "timer", node.rank, deadline)

    # -- checks ------------------------------------------------------------------------
    def check(self, *, must_finish: bool = True) -> None:
        survivors = [n for n in self.nodes if n.crashed_at is None]
        returned = [n for n in survivors if n.decided is not None and not n.excluded]
        lists = {n.decided for n in returned}
        assert len(lists) <= 1, f"agreement violated: {[(n.rank, n.decided) for n in returned]}"
        for n in returned:
            assert n.rank in n.decided
        if lists:
            (members,) = lists
            for rank in self.known_dead_before_round:
                assert rank not in members, f"validity: {rank} was known dead before the round, got {members}"
            for n in survivors:
                if not n.stalled_ever and n.entered_at is not None:
                    assert n.rank in members, f"validity: live member {n.rank} left out of {members}"
        if must_finish:
            # Each coordinator change costs at most 3 timeouts (plus message delays).
            bound = (self.size + 1) * (3 * self.timeout + 4 * self.max_delay)
            for n in survivors:
                if n.entered_at is not None and not n.stalled_ever:
                    assert n.decided is not None or n.excluded, f"termination: member {n.rank} did not finish"
                    assert n.decided_at <= max(n.entered_at, self.last_resume) + bound, (
                        f"termination: member {n.rank} took {n.decided_at - n.entered_at:.2f}")
                    assert not n.excluded, f"member {n.rank} never stalled but was excluded"
            for n in survivors:
                if n.stalled_ever and n.entered_at is not None:
                    assert n.decided is not None or n.excluded, f"stalled member {n.rank} never finished"
        # A stalled member never ends up alone while others carried on without it.
        for n in survivors:
            if n.decided == (n.rank,) and not n.excluded:
                others = [m for m in survivors if m is not n and m.decided is not None and not m.excluded]
                assert not others, f"member {n.rank} formed a group of its own"
