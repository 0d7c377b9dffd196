"""Revoke, shrink and split in one event loop, with links cut, players killed and stalled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import numpy
import pytest

from cicada_async import Excluded, Logger, NotRunning, PeerFailed, Revoked, Tag, Timeout
from cicada_async._core.codec import encode
from cicada_async._core.framing import Kind, encode_header
from cicada_async.operations import spawn_with_own_root
from cicada_async.shamir import ShamirBasicProtocolSuite
from cicada_async.testing import World


async def shrink_all(world, ranks=None, name="fallback", timeout=None):
    async def player(comm):
        await comm.revoke()
        new, oldranks = await comm.shrink(name=name, timeout=timeout)
        return new, oldranks

    return await world.run(player, ranks)


@pytest.mark.both_loops
async def test_shrink_after_a_kill_keeps_the_survivors():
    async with World(4, timeout=2) as world:
        world.kill(1)
        start = time.monotonic()
        results = await shrink_all(world)
        assert time.monotonic() - start < 0.5
        assert [oldranks for _, oldranks in results] == [[0, 2, 3]] * 3
        comms = [new for new, _ in results]
        assert [c.rank for c in comms] == [0, 1, 2] and {c.world_size for c in comms} == {3}
        assert {c.name for c in comms} == {"fallback"}
        assert len({c.comm_id for c in comms}) == 1 and comms[0].comm_id != world.comms[0].comm_id
        assert comms[0].endpoint is world.comms[0].endpoint  # same links, no reconnect
        assert comms[0].timeout == 2  # inherited
        gathered = await asyncio.gather(*(c.allgather(c.rank * 10) for c in comms))
        assert gathered == [[0, 10, 20]] * 3


async def test_shrink_with_nobody_dead_and_not_revoked():
    async with World(3) as world:
        results = await world.run(lambda comm: comm.shrink(name="same"))
        assert [oldranks for _, oldranks in results] == [[0, 1, 2]] * 3
        comms = [new for new, _ in results]
        assert await asyncio.gather(*(c.allgather(c.rank) for c in comms)) == [[0, 1, 2]] * 3
        assert not world.comms[0].revoked


async def test_coordinator_killed_before_the_round():
    async with World(5) as world:
        world.kill(0)
        results = await shrink_all(world)
        assert [oldranks for _, oldranks in results] == [[1, 2, 3, 4]] * 4


async def test_repeated_shrinks_8_7_5_2():
    async with World(8, timeout=2) as world:
        comms = {rank: world.comms[rank] for rank in range(8)}
        sizes = []
        for victims in ([3], [0, 6], [1, 4, 7]):
            for victim in victims:
                world.kill(victim)
                comms.pop(victim)

            async def player(comm):
                try:
                    await comm.allgather(1)
                except (PeerFailed, Revoked):
                    pass
                await comm.revoke()
                new, oldranks = await comm.shrink(name="next")
                await comm.free()
                return new, oldranks

            # Each player numbers its operations from a root of its own (as in its own process).
            tasks = {world_rank: spawn_with_own_root(("shrinks", *victims), player, comm)
                     for world_rank, comm in comms.items()}
            results = {world_rank: await task for world_rank, task in tasks.items()}
            oldranks = {tuple(r[1]) for r in results.values()}
            assert len(oldranks) == 1
            comms = {world_rank: new for world_rank, (new, _) in results.items()}
            sizes.append(next(iter(comms.values())).world_size)
            values = await asyncio.gather(*(c.allgather(world_rank) for world_rank, c in comms.items()))
            assert values == [sorted(comms)] * len(comms)
        assert sizes == [7, 5, 2]


async def test_receive_timeout_alone_excludes_nobody():
    async with World(3, timeout=0.2) as world:
        async def player(comm):
            try:
                # Player 2 never sends: players 0 and 1 time out; 2 times out waiting on 1.
                if comm.rank == 2:
                    await comm.recv(src=1, tag=0)
                else:
                    await comm.recv(src=2, tag=0)
            except Timeout:
                pass
            await comm.revoke()
            return (await comm.shrink(name="all"))[1]

        assert await world.run(player) == [[0, 1, 2]] * 3


async def test_a_member_busy_elsewhere_is_answered_for_by_its_reader():
    async with World(4, timeout=3) as world:
        world.kill(3)

        async def player(comm):
            if comm.rank == 2:
                # Busy in a receive that only fails at its deadline (player 1 never sends).
                with pytest.raises((Revoked, Timeout)):
                    with comm.override(timeout=1.0):
                        await comm.recv(src=1, tag=5)
            start = time.monotonic()
            await comm.revoke()
            _, oldranks = await comm.shrink(name="n", timeout=0.3)
            return oldranks, time.monotonic() - start

        results = await world.run(player, ranks=[0, 1, 2])
        assert [r[0] for r in results] == [[0, 1, 2]] * 3  # 2 was slow to enter but included


@pytest.mark.both_loops
async def test_stalled_player_is_excluded_and_told_after_it_resumes():
    async with World(4, timeout=0.3) as world:
        gate = asyncio.Event()
        world.stall(2)

        async def player(comm):
            if comm.rank == 2:
                await gate.wait()  # "stopped": its own code does not run
                # Input is handled in arrival order: the revoke marker, then EXCLUDED.
                with pytest.raises((Revoked, Excluded)):
                    await comm.recv(src=0, tag=0)
                await comm.revoke()
                with pytest.raises(Excluded):
                    await comm.shrink(name="x")
                with pytest.raises(Excluded):
                    await comm.barrier()
                return "excluded"
            with pytest.raises((Timeout, Revoked)):
                await comm.allgather(comm.rank)
            await comm.revoke()
            new, oldranks = await comm.shrink(name="without-2", timeout=0.3)
            values = await new.allgather(comm.rank)
            return oldranks, values

        task = asyncio.ensure_future(world.run(player))
        await asyncio.sleep(1.5)
        world.resume(2)
        gate.set()
        results = await asyncio.wait_for(task, 10)
        assert results[2] == "excluded"
        assert [results[r] for r in (0, 1, 3)] == [([0, 1, 3], [0, 1, 3])] * 3
        # The excluded player's frames do not reach the survivors any more.
        assert world.link(0, 2).ignoring


async def test_frames_of_an_excluded_player_do_not_disturb_the_new_communicator():
    async with World(3, timeout=0.3) as world:
        world.stall(2)

        async def survivor(comm):
            with pytest.raises((Timeout, Revoked)):
                await comm.allgather(1)
            await comm.revoke()
            new, _ = await comm.shrink(name="two")
            return new

        new0, new1 = await world.run(survivor, ranks=[0, 1])
        world.resume(2)
        stale = world.comms[2]
        # Before it has read EXCLUDED, the stale player keeps sending: on the old communicator,
        # and even frames naming the survivors' new communicator.
        payload = encode("intruder").tobytes()
        for peer in (0, 1):
            stale.endpoint.links[peer].write(encode_header(Kind.DATA, 0, new0.comm_id, len(payload)),
                                             [payload], len(payload))
        with contextlib.suppress(Revoked, Excluded):
            await stale.send(value="stale", dst=0, tag=0)
        await asyncio.sleep(0.1)
        assert await asyncio.gather(new0.allgather("a"), new1.allgather("b")) == [["a", "b"]] * 2
        assert new0.stats["total"]["received"]["messages"] == 1
        # And it learns it was excluded.
        with pytest.raises(Excluded):
            await stale.shrink(name="x")


async def test_shrink_survives_members_dying_during_the_round():
    async with World(6, timeout=1) as world:
        async def player(comm):
            await comm.revoke()
            if comm.rank == 0:
                await asyncio.sleep(0.001)
                world.kill(0)  # the coordinator dies just after starting the round
                await asyncio.sleep(10)
            if comm.rank == 4:
                world.kill(4)
                await asyncio.sleep(10)
            new, oldranks = await comm.shrink(name="n")
            try:
                # Members that died during the round may be listed: the next operation tells.
                await new.allgather(comm.rank)
                return oldranks, oldranks
            except PeerFailed:
                await new.revoke()
                _, again = await new.shrink(name="again")
                return oldranks, [oldranks[r] for r in again]

        results = await world.run(player)
        survivors = [r for r in results if r is not None]
        assert len(survivors) == 4
        assert len({tuple(first) for first, _ in survivors}) == 1  # agreement
        assert all({1, 2, 3, 5} <= set(first) for first, _ in survivors)  # survivors kept
        assert {tuple(final) for _, final in survivors} == {(1, 2, 3, 5)}


async def test_free_after_shrink_and_late_questions_are_answered():
    async with World(3) as world:
        results = await shrink_all(world)
        for comm in world.comms:
            await comm.free()
        news = [new for new, _ in results]
        assert await asyncio.gather(*(c.allgather(c.rank) for c in news)) == [[0, 1, 2]] * 3
        with pytest.raises(NotRunning):
            await world.comms[0].shrink(name="again")


async def test_split_after_shrink_and_split_opt_out():
    async with World(4) as world:
        world.kill(3)
        results = await shrink_all(world)

        async def player(new):
            sub = await new.split(name=None if new.rank == 1 else "pair")
            return None if sub is None else (sub.rank, await sub.allgather(new.rank))

        assert await asyncio.gather(*(player(new) for new, _ in results)) == [(0, [0, 2]), None, (1, [0, 2])]


async def test_revoke_from_two_players_at_once_and_racing_traffic():
    async with World(4, timeout=2) as world:
        async def player(comm):
            if comm.rank in (0, 3):
                await comm.revoke()
            outcome = []
            for i in range(20):
                try:
                    outcome.append(sum(await comm.allgather(numpy.full(100, i))).sum())
                except Revoked:
                    outcome.append("revoked")
                    break
            return outcome

        results = await world.run(player)
        assert all(r[-1] == "revoked" for r in results)
        assert all(comm.revoked for comm in world.comms)


async def test_receive_only_roles_still_complete_after_a_revoke_when_the_data_came_first():
    """A late player entering a collective where it only receives must get data that arrived
    before the sender's revoke marker: otherwise survivors fail at different operations (it
    would miss a share the others added) -- found by the fault-recovery stress run."""
    async with World(3, timeout=2) as world:
        a, b, c = world.comms
        # Every member calls the same collectives in the same order, at different times.
        await c.scatter(src=2, values=[10, 11, 12])  # the root sends, before any revoke
        await c.broadcast(src=2, value="b")
        assert await c.gatherv(src=[1], value=None, dst=0) is None
        assert await b.scatter(src=2, values=None) == 11
        assert await b.broadcast(src=2, value=None) == "b"
        await b.gatherv(src=[1], value="g", dst=0)
        await b.revoke()
        await asyncio.sleep(0.05)  # every marker has arrived
        assert a.revoked
        assert await a.scatter(src=2, values=None) == 10  # arrived before c's marker
        assert await a.broadcast(src=2, value=None) == "b"
        assert await a.gatherv(src=[1], value=None, dst=0) == ["g"]
        with pytest.raises(Revoked):
            await a.scatter(src=2, values=None)  # nothing more came before c's marker
        with pytest.raises(Revoked):
            await a.allgather(1)  # a player that must send raises at once
        with pytest.raises(Revoked):
            await a.scatter(src=0, values=[1, 2, 3])
        with pytest.raises(Revoked):
            await a.gatherv(src=[0], value=1, dst=1)


async def test_suite_and_logger_receivers_still_complete_after_a_revoke_when_the_data_came_first():
    """The same rule for operations built on ``exchange``: a player that only receives in a
    ``share`` (or waits for a synchronised log's release) must get what arrived before the
    sender's marker.  Raising there at once made it miss an increment the others added, and
    the survivors revealed garbage after the shrink (found by the fault-recovery stress run)."""
    async with World(3, timeout=2) as world:
        a, b, _ = world.comms
        suites = [ShamirBasicProtocolSuite(comm, threshold=2) for comm in world.comms]
        logs = [Logger(logging.getLogger(__name__), comm) for comm in world.comms]
        # c and b run ahead: c contributes and releases the log, b receives; then b revokes.
        share_c = await suites[2].share(src=2, secret=numpy.array(5.0), shape=())
        share_b = await suites[1].share(src=2, secret=None, shape=())
        await logs[2].info("released", src=2)
        await logs[1].info("released", src=2)
        await b.revoke()
        await asyncio.sleep(0.05)  # every marker has arrived
        assert a.revoked
        share_a = await suites[0].share(src=2, secret=None, shape=())  # came before c's marker
        await logs[0].info("released", src=2)
        with pytest.raises(Revoked):
            await suites[0].share(src=2, secret=None, shape=())  # nothing more came before it
        with pytest.raises(Revoked):
            await suites[0].reveal(share_a)  # a round that sends raises at once
        with pytest.raises(Revoked):
            await a.exchange(a.begin(Tag.LOGSYNC), send={}, recv=[1])  # b's marker, no data
        # All three still hold shares of the same secret: it opens after the shrink.
        results = await shrink_all(world)
        assert [oldranks for _, oldranks in results] == [[0, 1, 2]] * 3
        survivors = [ShamirBasicProtocolSuite(new, threshold=2, indices=suites[rank].indices)
                     for rank, (new, _) in enumerate(results)]
        revealed = await asyncio.gather(*(survivor.reveal(share) for survivor, share
                                          in zip(survivors, [share_a, share_b, share_c], strict=True)))
        assert revealed == [5.0] * 3


async def test_members_that_freed_after_the_round_still_answer_it():
    """The coordinator dies mid-announce; the members it told return and free the old
    communicator.  A late member must adopt their decision (their tombstones answer), not
    take their FREED for death and form a group of its own (found by a stress run)."""
    async with World(4, timeout=2) as world:
        coordinator = world.comms[0]
        membership = coordinator._membership  # white box: intercept the agreement's sends
        original = membership.send_agreement
        told = []

        def send_agreement(dst, value):
            if isinstance(value, dict) and value.get("t") == "decided":
                if dst == 3:
                    world.stall(3)  # player 3 answered the round, but reads nothing for now
                    world.kill(0)  # and the coordinator dies before telling it
                    return False
                told.append(dst)
            return original(dst, value)

        membership.send_agreement = send_agreement

        async def player(comm):
            await comm.revoke()
            _, oldranks = await comm.shrink(name="new")
            await comm.free()
            return oldranks

        tasks = {rank: asyncio.ensure_future(player(world.comms[rank])) for rank in (1, 2, 3)}
        assert await tasks[1] == await tasks[2] == [0, 1, 2, 3] and sorted(told) == [1, 2]
        assert not tasks[3].done()
        world.resume(3)  # it now reads: FREED from 1 and 2, and player 0's link closing
        assert await asyncio.wait_for(tasks[3], 10) == [0, 1, 2, 3]


async def test_held_frames_are_delivered_even_if_replaying_them_leaves_their_sender_out():
    """Frames for a communicator not created yet are held.  Replaying an agreement message
    among them may decide a round that leaves a dead peer out; data that peer sent before,
    held too, must still be delivered (found by a stress run: a lost LOGSYNC)."""
    from cicada_async._core.codec import encode
    from cicada_async._core.framing import Control, Frame
    from cicada_async._core.identity import Numbering, Scope, ScopeState
    from cicada_async._core.ids import child_id

    async with World(3) as world:
        me = world.comms[0]
        new_id = child_id(me.comm_id, "split", 0, "late", [0, 1, 2])
        propose = encode({"t": "propose", "k": 0, "dead": [1]}).tobytes()
        data = encode("last words").tobytes()
        world.kill(1)  # player 1 is dead; its last message arrived before anything else
        await asyncio.sleep(0.05)
        endpoint = me.endpoint
        # Arrival order across links: player 2's agreement message first, then player 1's data.
        # The matching key of tag 5 in the root scope of the communicator to come.
        key = ScopeState(Scope.root().path(Numbering(new_id, None))).p2p_key(5)
        endpoint._hold(2, Frame(int(Kind.CONTROL), 0, int(Control.AGREEMENT), new_id, 0, propose))
        endpoint._hold(1, Frame(int(Kind.DATA), 0, 5, new_id, key, data))
        late = me._child("split", 0, "late", [0, 1, 2])
        assert late.comm_id == new_id
        assert await late.recv(src=1, tag=5) == "last words"
        with pytest.raises(PeerFailed):
            await late.recv(src=1, tag=5)


async def test_a_partitioned_player_with_a_quorum_gets_excluded_instead_of_a_communicator_of_its_own():
    """Player 3's links go silent both ways for longer than its own shrink takes to give up on
    everyone: without a quorum it would agree with itself alone; with min_survivors=3 it raises
    Excluded, and the other three go on."""
    async def fn(comm):
        if comm.rank == 3:
            for peer in range(3):
                world.link(peer, 3).transport.pause_reading()
            world.stall(3)
        try:
            new, oldranks = await comm.shrink(name="quorum", timeout=0.3, min_survivors=3)
        except Excluded as error:
            return "excluded", str(error)
        return "member", oldranks, await new.allgather(new.rank)

    async with World(4, timeout=1) as world:
        results = await world.run(fn)
    assert results[:3] == [("member", [0, 1, 2], [0, 1, 2])] * 3
    assert results[3][0] == "excluded" and "min_survivors=3" in results[3][1], results[3]


async def test_without_a_quorum_a_long_partition_gives_a_communicator_of_one():
    async def fn(comm):
        if comm.rank == 3:
            for peer in range(3):
                world.link(peer, 3).transport.pause_reading()
            world.stall(3)
        _, oldranks = await comm.shrink(name="no-quorum", timeout=0.3)
        return oldranks

    async with World(4, timeout=1) as world:
        results = await world.run(fn)
    assert results == [[0, 1, 2]] * 3 + [[3]]  # as in ULFM: min_survivors is the cure


async def test_min_survivors_is_checked():
    async def fn(comm):
        for bad in (0, 5, 1.5, True):
            with pytest.raises(ValueError, match="min_survivors"):
                await comm.shrink(name="x", min_survivors=bad)
        return True

    async with World(4) as world:
        assert await world.run(fn) == [True] * 4
