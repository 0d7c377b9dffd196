"""Drives the shrink agreement of one communicator: the I/O edge of ``_core.agreement``.

Agreement messages are CONTROL frames handled by the link reader as they arrive, so a member
answers its coordinator even while its application is busy elsewhere (in a receive that will
only fail at its deadline, say).  This module turns those frames, link failures and timer
expiries into calls on the round's :class:`~cicada_async._core.agreement.Agreement`, and
carries out what it returns: sending messages, excluding peers, resolving ``shrink``.

Before acting on a timer, it first lets the loop read whatever has already arrived on the
links (:meth:`Endpoint.settle`): after a process was stopped and resumed, an expired timer may
otherwise run before the input that came in meanwhile (an EXCLUDED notice, a DECIDED).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from .._core.agreement import Agreement, Decide, Exclude, ExcludedSelf, Send, is_round_number, parse_message
from .._core.framing import Control
from ..errors import Excluded, RemoteProtocolError

log = logging.getLogger(__name__)

__all__ = ["AgreementHost", "Rounds"]


class AgreementHost(Protocol):
    """What the shrink rounds need of their communicator."""

    @property
    def prefix(self) -> str:
        """Start of error messages (``"Comm world player 0"``)."""

    @property
    def rank(self) -> int: ...

    @property
    def world_size(self) -> int: ...

    @property
    def timeout(self) -> float: ...

    @property
    def excluded(self) -> bool:
        """True once the others agreed without this player."""

    def gone_ranks(self) -> set[int]:
        """Members known gone for good (their links closed or ignored)."""

    def send_agreement(self, dst: int, message: dict[str, Any]) -> None:
        """Send an agreement message to member ``dst``."""

    def exclude_member(self, rank: int, key: int) -> None:
        """Tell ``rank`` it was left out of round ``key``, and ignore it from now on."""

    def become_excluded(self, by: int) -> None:
        """The others agreed without this player (``by`` said so)."""

    async def settle(self) -> None:
        """Let the loop read the input that has already arrived on the links."""

MAX_ROUNDS_AHEAD = 16
"""How far ahead of our own shrink count a peer's round number may be (bounds memory)."""


class Rounds:
    """The shrink rounds of one communicator (usually just one)."""

    def __init__(self, comm: AgreementHost) -> None:
        self.comm = comm
        self.started = 0  # local shrink calls so far
        self.rounds: dict[int, Agreement] = {}
        self.timers: dict[int, asyncio.TimerHandle] = {}
        self.waiters: dict[int, asyncio.Future[tuple[int, ...]]] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def round(self, key: int) -> Agreement:
        """The round ``key``, created on first use (by a message or a local call)."""
        machine = self.rounds.get(key)
        if machine is None:
            if key > self.started + MAX_ROUNDS_AHEAD:
                raise RemoteProtocolError(f"{self.comm.prefix}: agreement round {key} is too far ahead")
            comm = self.comm
            machine = Agreement(me=comm.rank, size=comm.world_size, key=key, dead=comm.gone_ranks(),
                                timeout=comm.timeout)
            self.rounds[key] = machine
        return machine

    def decided(self, key: int) -> tuple[int, ...] | None:
        """The members round ``key`` decided, if it did."""
        machine = self.rounds.get(key)
        return None if machine is None else machine.decided

    def answer_late(self, src: int, value: Any) -> None:
        """An agreement message after the communicator was freed: answer from the record."""
        message = parse_message(value, size=self.comm.world_size)
        machine = self.rounds.get(message["k"])
        reply = None if machine is None else machine.answer_late(message)
        if reply is not None:
            self.comm.send_agreement(src, reply)

    # -- inputs ----------------------------------------------------------------------
    def on_control(self, src: int, code: int, value: Any) -> None:
        """An AGREEMENT or EXCLUDED control frame from ``src`` (reader context)."""
        if self.comm.excluded:
            return
        now = asyncio.get_running_loop().time()
        if code == Control.AGREEMENT:
            message = parse_message(value, size=self.comm.world_size)
            key = message["k"]
            self.apply(key, self.round(key).on_message(src, message, now))
        elif code == Control.EXCLUDED:
            key = value.get("k") if isinstance(value, dict) else None
            if not is_round_number(key):
                raise RemoteProtocolError(f"{self.comm.prefix}: malformed EXCLUDED from player {src}")
            self.apply(key, self.round(key).exclude(src))
        else:
            raise RemoteProtocolError(f"{self.comm.prefix}: player {src} sent unknown control code {code}",
                                      rank=src)

    def on_dead(self, rank: int) -> None:
        """Link evidence: ``rank`` is gone for good."""
        now = asyncio.get_running_loop().time()
        for key, machine in list(self.rounds.items()):
            if not machine.done:
                self.apply(key, machine.on_dead(rank, now))

    async def shrink(self, timeout: float) -> tuple[int, ...]:
        """Run (or join) the next round; return the agreed members (old ranks)."""
        key = self.started
        self.started += 1
        machine = self.round(key)
        machine.set_timeout(timeout)
        if machine.excluded_by is not None:
            raise self._excluded_error(machine.excluded_by)
        if machine.decided is None:
            loop = asyncio.get_running_loop()
            waiter = self.waiters[key] = loop.create_future()
            self.apply(key, machine.enter(loop.time()))
            # Each coordinator change costs at most three timeouts: this bound is a safety net.
            bound = (self.comm.world_size + 2) * 3 * timeout + 1
            try:
                async with asyncio.timeout(bound):
                    await waiter
            except TimeoutError:
                if waiter.done():
                    raise
                raise RuntimeError(f"{self.comm.prefix}: shrink round {key} did not end "
                                   f"within {bound:g}s (a bug)") from None
            finally:
                self.waiters.pop(key, None)
        if machine.excluded_by is not None:
            raise self._excluded_error(machine.excluded_by)
        assert machine.decided is not None
        return machine.decided

    # -- outputs ---------------------------------------------------------------------
    def apply(self, key: int, actions: list[Any]) -> None:
        comm = self.comm
        for action in actions:
            if isinstance(action, Send):
                comm.send_agreement(action.dst, action.message)
            elif isinstance(action, Exclude):
                for rank in action.ranks:
                    comm.exclude_member(rank, key)
            elif isinstance(action, Decide):
                log.debug("%s: round %s decided %s", comm.prefix, key, list(action.members))
                self._resolve(key, None)
            elif isinstance(action, ExcludedSelf):
                comm.become_excluded(action.by)
                self._resolve(key, self._excluded_error(action.by))
        self._arm(key)

    def _resolve(self, key: int, error: BaseException | None) -> None:
        waiter = self.waiters.get(key)
        if waiter is not None and not waiter.done():
            if error is None:
                decided = self.rounds[key].decided
                assert decided is not None  # resolved without error only once decided
                waiter.set_result(decided)
            else:
                waiter.set_exception(error)

    def _excluded_error(self, by: int) -> Excluded:
        return Excluded(f"{self.comm.prefix}: player {by} agreed on a new communicator without "
                        "this player (it was too slow to answer, or thought dead)")

    def _arm(self, key: int) -> None:
        machine = self.rounds[key]
        deadline = machine.deadline
        timer = self.timers.get(key)
        if timer is not None:
            if deadline is not None and timer.when() == deadline:
                return
            timer.cancel()
            del self.timers[key]
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self.timers[key] = loop.call_at(deadline, self._expired, key, deadline)

    def _expired(self, key: int, deadline: float) -> None:
        self.timers.pop(key, None)
        task = asyncio.get_running_loop().create_task(self._settle_then_fire(key, deadline))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _settle_then_fire(self, key: int, deadline: float) -> None:
        await self.comm.settle()
        machine = self.rounds[key]
        if machine.done or machine.deadline is None:
            return
        now = asyncio.get_running_loop().time()
        if now < machine.deadline:  # input that arrived meanwhile moved the deadline
            self._arm(key)
            return
        self.apply(key, machine.on_timer(now))

    def close(self) -> None:
        """Stop every timer (the communicator is freed; decisions stay available)."""
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        for task in self.tasks:
            task.cancel()
        for waiter in self.waiters.values():
            if not waiter.done():
                waiter.cancel()
        self.waiters.clear()
