"""The shrink agreement: scripted scenarios and >= 10,000 seeded random schedules."""

from __future__ import annotations

import random
import time

import pytest
from agreement_sim import Network

from cicada_async._core.agreement import Agreement, Decide, Exclude, ExcludedSelf, Send, parse_message
from cicada_async.errors import RemoteProtocolError

T = 1.0


def everyone_enters(net: Network, spread: float = 0.0, seed: int = 0) -> None:
    rng = random.Random(seed)
    for node in net.nodes:
        if node.crashed_at is None:
            net.enter_at(node.rank, rng.uniform(0, spread))


def outcome(net: Network) -> dict[int, object]:
    return {n.rank: ("excluded" if n.excluded else n.decided) for n in net.nodes if n.crashed_at is None}


def test_no_failure_two_messages_per_member():
    net = Network(5, 0)
    everyone_enters(net)
    net.run(10)
    net.check()
    assert set(outcome(net).values()) == {(0, 1, 2, 3, 4)}
    # REQUEST + PROPOSE from entering members (some duplicates) + DECIDED
    assert net.messages <= 4 * 4


def test_members_dead_before_the_round_are_left_out():
    net = Network(6, 1)
    net.dead_from_start(2, known_by=[3], late={0: 5.0, 1: 5.0, 4: 5.0, 5: 5.0})
    net.dead_from_start(0, known_by=[1, 2, 3, 4, 5], late={})
    everyone_enters(net, 0.1)
    net.run(20)
    net.check()
    assert set(outcome(net).values()) == {(1, 3, 4, 5)}


def test_participant_entering_late_is_still_included():
    net = Network(4, 2)
    for rank in (0, 1, 2):
        net.enter_at(rank, 0.0)
    net.enter_at(3, 3.0)  # busy elsewhere; its reader answers the coordinator meanwhile
    net.run(20)
    net.check()
    assert set(outcome(net).values()) == {(0, 1, 2, 3)}
    assert net.nodes[0].decided_at < 1.0


@pytest.mark.parametrize("sends", [0, 1, 2, 3, 4])
def test_coordinator_crashes_before_during_and_after_announcing(sends):
    net = Network(5, 3)
    net.crash_after_sends(0, 4 + sends)  # 4 REQUESTs, then `sends` of the 4 DECIDEDs
    everyone_enters(net)
    net.run(30)
    net.check()
    decisions = {n.decided for n in net.nodes[1:]}
    assert len(decisions) == 1
    (members,) = decisions
    assert members == ((0, 1, 2, 3, 4) if sends else (1, 2, 3, 4))


def test_participant_crash_during_round():
    net = Network(4, 4)
    net.crash_at(2, 0.001)
    everyone_enters(net)
    net.run(20)
    net.check()
    assert {v for k, v in outcome(net).items()} in ({(0, 1, 3)}, {(0, 1, 2, 3)})


def test_stalled_participant_is_excluded_and_told():
    net = Network(4, 5)
    net.stall(2, 0.0, 5 * T)
    everyone_enters(net)
    net.run(30)
    net.check()
    result = outcome(net)
    assert result[2] == "excluded"
    assert {result[0], result[1], result[3]} == {(0, 1, 3)}
    assert net.nodes[0].decided_at == pytest.approx(T, abs=0.1)


def test_stalled_coordinator_is_replaced_and_told():
    net = Network(4, 6)
    net.stall(0, 0.0, 10 * T)
    everyone_enters(net)
    net.run(40)
    net.check()
    result = outcome(net)
    assert result[0] == "excluded"
    assert {result[1], result[2], result[3]} == {(1, 2, 3)}
    assert max(n.decided_at for n in net.nodes[1:]) < 1.5 * T


def test_everyone_else_crashes():
    net = Network(3, 7)
    net.crash_at(0, 0.0)
    net.crash_at(2, 0.0)
    net.enter_at(1, 0.01)
    net.run(20)
    net.check()
    assert net.nodes[1].decided == (1,)


def test_parse_message_rejects_garbage():
    good = {"t": "decided", "k": 0, "dead": [1], "m": [0, 2]}
    assert parse_message(good, size=3)["m"] == [0, 2]
    for bad in [None, [], {"t": "x", "k": 0}, {"t": "propose", "k": -1}, {"t": "propose", "k": True},
                {"t": "propose", "k": 0, "dead": [5]}, {"t": "propose", "k": 0, "dead": "x"},
                {"t": "decided", "k": 0, "dead": [], "m": []},
                {"t": "decided", "k": 0, "dead": [], "m": [2, 1]},
                {"t": "decided", "k": 0, "dead": [], "m": [0, 0]}]:
        with pytest.raises(RemoteProtocolError):
            parse_message(bad, size=3)


def test_machine_basics():
    machine = Agreement(me=1, size=3, key=4, dead={0}, timeout=1.0)
    assert machine.coordinator == 1
    actions = machine.enter(0.0)
    assert [a.dst for a in actions if isinstance(a, Send)] == [2]
    assert machine.deadline == 1.0
    actions = machine.on_timer(1.0)  # player 2 never answered
    assert Decide((1,)) in actions and Exclude((0, 2)) in actions
    assert machine.on_message(2, {"t": "propose", "k": 4, "dead": []}, 2.0) == []  # too late: ignored
    late = Agreement(me=0, size=3, key=4, timeout=1.0)
    late.enter(0.0)
    late.on_message(1, {"t": "propose", "k": 4, "dead": []}, 0.1)
    late.on_message(2, {"t": "propose", "k": 4, "dead": []}, 0.2)
    assert late.decided == (0, 1, 2)
    (answer,) = late.on_message(1, {"t": "request", "k": 4, "dead": []}, 3.0)  # after returning
    assert answer.message["m"] == [0, 1, 2]
    other = Agreement(me=2, size=3, key=4, timeout=1.0)
    assert other.on_message(1, {"t": "decided", "k": 4, "dead": [0], "m": [0, 1]}, 0.0) == [ExcludedSelf(1)]
    with pytest.raises(ValueError):
        Agreement(me=0, size=2, key=0, dead={0}, timeout=1.0)


def random_schedule(seed: int) -> Network:
    rng = random.Random(seed)
    size = rng.randint(2, 8)
    net = Network(size, seed, max_delay=rng.choice([0.001, 0.05, 0.2]))
    family = seed % 8
    ranks = list(range(size))
    if family in (1, 5):  # dead before the round, known by some members, learnt late by others
        for rank in rng.sample(ranks, rng.randint(0, size - 1)):
            others = [r for r in ranks if r != rank]
            known = rng.sample(others, rng.randint(0, len(others)))
            net.dead_from_start(rank, known_by=[r for r in known if net.nodes[r].crashed_at is None],
                                late={r: rng.uniform(0, 3) for r in others if r not in known})
    if family in (2, 5):  # crashes at random times during the round
        for rank in rng.sample(ranks, rng.randint(1, size - 1)):
            net.crash_at(rank, rng.uniform(0, 4))
    if family in (3, 5):  # crashes after a random number of sends (mid-announce etc.)
        for rank in rng.sample(ranks, rng.randint(1, max(1, size // 2))):
            net.crash_after_sends(rank, rng.randint(0, 2 * size))
    if family in (4, 5):  # stalls: short ones and ones long enough to be excluded
        for rank in rng.sample(ranks, rng.randint(1, max(1, size // 3))):
            net.stall(rank, rng.uniform(0, 2), rng.choice([0.2, 0.9, 1.5, 3.0, 8.0]) * T)
    if family in (6, 7):  # stalls of coordinators ending right around the timeouts, slow links
        net.max_delay = rng.uniform(0.05, 0.3)
        for rank in rng.sample(ranks[: max(1, size // 2)], rng.randint(1, max(1, size // 2))):
            start = rng.choice([0.0, rng.uniform(0, 0.2), rng.uniform(0.8, 1.2)])
            net.stall(rank, start, rng.uniform(0.8, 3.3) * T)
        if family == 7 and size > 2:
            net.crash_at(rng.choice(ranks), rng.uniform(0, 3))
    for node in net.nodes:
        if node.crashed_at is None:
            net.enter_at(node.rank, rng.uniform(0, rng.choice([0.01, 0.5, 2.0])))
    net.run(200)
    return net


@pytest.mark.parametrize("block", range(12))
def test_random_schedules(block):
    """12 blocks x 1,000 seeded schedules: crashes of any member at any step, coordinator
    crashes before/mid/after announcing, delays, stalls (false suspicion)."""
    start = time.process_time()
    for seed in range(block * 1000, (block + 1) * 1000):
        net = random_schedule(seed)
        try:
            net.check()
        except AssertionError as error:
            raise AssertionError(f"seed {seed}: {error}") from None
    assert time.process_time() - start < 20
