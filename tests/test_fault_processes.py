"""Fault tolerance end to end: real player processes, real sockets, SIGKILL and SIGSTOP."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
import pathlib
import signal
import time

import numpy
import pytest
from programs import recover, stopped_player_is_excluded

from cicada_async import AsyncSocketCommunicator, PeerFailed, Revoked, Terminated
from cicada_async.communicator._membership import Membership
from cicada_async.shamir import ShamirBasicProtocolSuite

pytestmark = pytest.mark.processes
KILLED = Terminated(-signal.SIGKILL)


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def die_on_agreement(monkeypatch, rank, kind, after):
    """Make world player ``rank`` die as it sends its ``after``-th agreement message of ``kind``.

    Patched on the class in this (parent) process, so forked players have it from the start:
    a player's reader may answer the agreement before the player's own code even runs.
    """
    original = Membership.send_agreement
    sent = [0]  # per process: each forked player gets its own copy

    def send_agreement(self, dst, value):
        if value.get("t") == kind and self.endpoint.rank == rank:
            if sent[0] == after:
                die()
            sent[0] += 1
        return original(self, dst, value)

    monkeypatch.setattr(Membership, "send_agreement", send_agreement)


def die_before_any_agreement(monkeypatch, rank):
    """Make world player ``rank`` die rather than send any agreement message.

    For a player that is to die at a chosen point: without this, its reader could answer a
    shrink the others start before it dies, and the agreement may then (rightly) keep it.
    """
    original = Membership.send_agreement

    def send_agreement(self, dst, value):
        if self.endpoint.rank == rank:
            die()
        return original(self, dst, value)

    monkeypatch.setattr(Membership, "send_agreement", send_agreement)


def test_sigkill_during_a_collective_every_survivor_fails_at_the_same_step():
    async def fn(comm):
        failed_at = None
        for step in range(200):
            if comm.rank == 2 and step == 57:
                die()
            try:
                values = await comm.allgather(numpy.full(1000, step))
                assert all(int(v[0]) == step for v in values)
            except (PeerFailed, Revoked):
                failed_at = step
                break
        new, oldranks = await recover(comm)
        return failed_at, oldranks, await new.allgather(comm.rank)

    start = time.monotonic()
    results = AsyncSocketCommunicator.run(world_size=4, fn=fn, timeout=5)
    assert results[2] == KILLED
    survivors = [results[r] for r in (0, 1, 3)]
    assert {s[0] for s in survivors} == {57}
    assert all(s[1] == [0, 1, 3] and s[2] == [0, 1, 3] for s in survivors)
    assert time.monotonic() - start < 5  # detected at once, not at the 5 s deadline


def test_sigkill_in_the_middle_of_a_reveal_then_old_shares_open_after_shrink(monkeypatch):
    # Player 1 breaks its link to 3 at once: the others may start shrinking while it sleeps.
    # It must not answer that agreement: a member that has lost its link to player 3 may
    # rightly get player 3 excluded, and this test is about the other outcome.
    die_before_any_agreement(monkeypatch, rank=1)

    async def fn(comm):
        suite = ShamirBasicProtocolSuite(comm, threshold=2)
        secret = numpy.array([4.5, -1.25, 1e9])
        share = await suite.share(src=3, secret=secret if comm.rank == 3 else None, shape=(3,))
        if comm.rank == 1:
            # Hand our share to players 0 and 2 only, then die half-way through the reveal.
            comm.endpoint.links[3].abort()
            reveal = asyncio.ensure_future(suite.reveal(share))
            await asyncio.sleep(0.05)  # the reveal's frames to players 0 and 2 are out
            del reveal
            die()
        try:
            await suite.reveal(share)
            outcome = "revealed"
        except (PeerFailed, Revoked) as error:
            outcome = type(error).__name__
        new, oldranks = await recover(comm)
        after = ShamirBasicProtocolSuite(new, threshold=2, indices=suite.indices[oldranks])
        return outcome, oldranks, (await after.reveal(share)).tolist()

    results = AsyncSocketCommunicator.run(world_size=4, fn=fn, timeout=5)
    assert results[1] == KILLED
    # Players 0 and 2 got every share and may finish this one reveal; player 3 cannot.
    assert results[3][0] in ("PeerFailed", "Revoked")
    for rank in (0, 2, 3):
        outcome, oldranks, opened = results[rank]
        assert outcome in ("PeerFailed", "Revoked", "revealed")
        assert oldranks == [0, 2, 3]
        assert opened == [4.5, -1.25, 1e9]


@pytest.mark.parametrize("announced", [0, 1, 2, "all"])
def test_coordinator_killed_before_during_and_after_announcing(announced, monkeypatch):
    if announced != "all":
        die_on_agreement(monkeypatch, 0, "decided", after=announced)

    async def fn(comm):
        if comm.rank == 4:
            die()
        await asyncio.sleep(0.2)  # let everyone see player 4 go
        new, oldranks = await recover(comm)
        if comm.rank == 0:
            die()  # "all": the decision went out to everyone, then the coordinator dies
        try:
            values = await new.allgather(comm.rank)
        except (PeerFailed, Revoked):  # the decision listed the coordinator, which died
            new, again = await recover(new, name="again")
            oldranks = [oldranks[r] for r in again]
            values = await new.allgather(comm.rank)
        return oldranks, values

    results = AsyncSocketCommunicator.run(world_size=5, fn=fn, timeout=5)
    assert results[0] == KILLED and results[4] == KILLED
    assert [results[r] for r in (1, 2, 3)] == [([1, 2, 3], [1, 2, 3])] * 3


def test_participant_killed_after_proposing(monkeypatch):
    die_on_agreement(monkeypatch, 3, "propose", after=0)

    async def fn(comm):
        if comm.rank == 1:
            await asyncio.sleep(0.1)
        new, oldranks = await recover(comm)
        try:
            return oldranks, await new.allgather(comm.rank)
        except (PeerFailed, Revoked):
            new, again = await recover(new, name="again")
            return [oldranks[r] for r in again], await new.allgather(comm.rank)

    results = AsyncSocketCommunicator.run(world_size=4, fn=fn, timeout=5)
    assert results[3] == KILLED
    assert [results[r] for r in (0, 1, 2)] == [([0, 1, 2], [0, 1, 2])] * 3


def test_sigstopped_player_is_excluded_and_told_after_sigcont(watchdog):
    results = AsyncSocketCommunicator.run(world_size=4, fn=stopped_player_is_excluded, timeout=1)
    assert results[2] == "excluded", results
    for rank in (0, 1, 3):
        oldranks, values, elapsed = results[rank]
        assert oldranks == [0, 1, 3] and values == [0, 1, 3]
        assert elapsed < 0.5 + 0.5


def _load_example(name):
    path = pathlib.Path(__file__).resolve().parent.parent / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("players, pfail, seed", [(5, 0.05, 42), (6, 0.08, 3), (4, 0.1, 11)])
def test_fault_recovery_example_survivors_agree_on_every_total(players, pfail, seed):
    example = _load_example("fault_recovery")
    results = AsyncSocketCommunicator.run(world_size=players, fn=example.main, name="world-0",
                                          kwargs=dict(pfail=pfail, seed=seed, iterations=40))
    survivors = [r for r in results if isinstance(r, list)]
    assert survivors, results
    assert all(r == KILLED or isinstance(r, list) for r in results), results
    seen = {}
    for totals in survivors:
        for iteration, total in totals:
            seen.setdefault(iteration, set()).add(total)
    assert all(len(values) == 1 for values in seen.values()), seen
    # Totals only ever grow by whole increments: no garbage from inconsistent shares.
    ordered = [next(iter(seen[i])) for i in sorted(seen)]
    assert all(b - a in (0.0, 1.0, 2.0) for a, b in itertools.pairwise(ordered))
    assert all(float(t).is_integer() for t in ordered)


def test_fault_recovery_tutorial_log(capfd):
    import subprocess
    import sys

    path = pathlib.Path(__file__).resolve().parent.parent / "examples" / "fault_recovery.py"
    output = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert output.returncode == 0, output.stderr
    lines = [line for line in output.stderr.splitlines() if line.startswith("INFO:root:")]
    assert lines[0] == "INFO:root:Iteration 0 comm world-0 total: 1.0"
    assert lines[1] == "INFO:root:Iteration 1 shrank comm world-0 with 5 players to comm world-1 with 4 players."
    assert lines[2] == "INFO:root:Iteration 2 comm world-1 total: 2.0"
    assert lines[-1] == "INFO:root:Iteration 22 not enough players to continue."
    assert "agrees" in output.stdout


def test_two_players_revoking_at_once_while_traffic_races():
    async def fn(comm):
        sent = 0
        try:
            for step in range(200):
                if step == 30 and comm.rank in (1, 3):
                    await comm.revoke()  # two players revoke at the same step, mid-traffic
                await comm.allgather(numpy.full(2000, step))
                sent += 1
        except Revoked:
            pass
        assert comm.revoked
        new, oldranks = await recover(comm)
        return sent, oldranks, await new.allgather(comm.rank)

    results = AsyncSocketCommunicator.run(world_size=5, fn=fn, timeout=5)
    assert {r[0] for r in results} <= {30, 31}  # no one gets more than a step past the revoke
    assert all(r[1] == [0, 1, 2, 3, 4] and r[2] == [0, 1, 2, 3, 4] for r in results)
