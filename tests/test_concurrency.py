"""Concurrent operations get the right values or a clear exception, never a wrong value.

Mostly in-process worlds whose links pause and resume at random (``World.jitter``), so that
frames of different operations reach each player in orders that differ between players,
plus random delays between and inside operations.
"""

from __future__ import annotations

import asyncio
import logging
import random

import numpy
import pytest

import cicada_async
from cicada_async import ConcurrencyError, Logger, PeerFailed, RemoteProtocolError, Revoked
from cicada_async.encoding import Identity
from cicada_async.shamir import ShamirArrayShare, ShamirBasicProtocolSuite, ShamirProtocolSuite
from cicada_async.testing import World

SIZES = [(3, 2), (5, 3)]  # (players, threshold)


async def shared_vectors(protocol: ShamirProtocolSuite, count: int) -> tuple[list, list]:
    """Shares of x_i = i (from player 0) and y_i = 0.5 + i % 3 (from player 1), one op each."""
    comm = protocol.communicator
    xs = await asyncio.gather(*(protocol.share(src=0, secret=numpy.array(float(i)) if comm.rank == 0 else None,
                                               shape=()) for i in range(count)))
    ys = await asyncio.gather(*(protocol.share(src=1, secret=numpy.array(0.5 + i % 3) if comm.rank == 1 else None,
                                               shape=()) for i in range(count)))
    return list(xs), list(ys)


def expected(count: int) -> list[float]:
    return [i * (0.5 + i % 3) for i in range(count)]


def close(values, reference) -> bool:
    return numpy.allclose(numpy.asarray(values, dtype=float), reference, atol=1e-3)


@pytest.mark.parametrize("players, threshold", SIZES)
@pytest.mark.parametrize("seed", [1, 2])
async def test_the_issue_programs_give_the_right_values(players, threshold, seed):
    count = 40
    async with World(players) as world:
        world.jitter(seed=seed)

        async def player(comm):
            protocol = ShamirProtocolSuite(comm, threshold=threshold)
            xs, ys = await shared_vectors(protocol, count)

            @cicada_async.operation
            async def one(i):
                return await protocol.reveal(await protocol.multiply(xs[i], ys[i]))

            first = await asyncio.gather(*(one(i) for i in range(count)))
            products = await asyncio.gather(*(protocol.multiply(x, y) for x, y in zip(xs, ys, strict=True)))
            second = await asyncio.gather(*(protocol.reveal(z) for z in products))
            return [float(v) for v in first], [float(v) for v in second]

        for first, second in await world.run(player):
            assert close(first, expected(count)) and close(second, expected(count))


async def test_an_undecorated_coroutine_raises_at_the_call_and_says_what_to_do():
    async with World(3) as world:
        async def player(comm):
            protocol = ShamirProtocolSuite(comm, threshold=2)
            xs, ys = await shared_vectors(protocol, 5)

            async def one(i):  # not decorated: communicates after its first await
                return await protocol.reveal(await protocol.multiply(xs[i], ys[i]))

            return await asyncio.gather(*(one(i) for i in range(5)), return_exceptions=True)

        for results in await world.run(player):
            assert all(isinstance(result, ConcurrencyError) for result in results)
            message = str(results[0])
            assert "multiply()" in message and "@cicada_async.operation" in message
            assert "cicada_async.scope(key)" in message


async def test_collectives_called_from_a_task_that_does_not_own_the_scope_raise():
    async with World(2) as world:
        async def player(comm):
            await comm.barrier()

            async def late():
                await asyncio.sleep(0)
                return await comm.allgather(comm.rank)

            results = await asyncio.gather(late(), late(), return_exceptions=True)
            assert all(isinstance(result, ConcurrencyError) for result in results)
            return await comm.allgather(comm.rank)  # the owner itself still goes on, in step

        assert await world.run(player) == [[0, 1], [0, 1]]


@pytest.mark.parametrize("players, threshold", SIZES)
async def test_create_task_wait_for_and_nesting(players, threshold):
    async with World(players) as world:
        world.jitter(seed=3)

        async def player(comm):
            protocol = ShamirProtocolSuite(comm, threshold=threshold)
            xs, ys = await shared_vectors(protocol, 6)

            @cicada_async.operation
            async def square_then_reveal(x):
                return await protocol.reveal(await protocol.multiply(x, x))

            @cicada_async.operation
            async def nested(i):  # operations inside operations inside operations
                inner = await asyncio.gather(square_then_reveal(xs[i]), square_then_reveal(ys[i]))
                return float(inner[0]) + float(inner[1])

            tasks = [asyncio.create_task(nested(i)) for i in range(3)]  # decorated: fine in tasks
            waited = await asyncio.wait_for(nested(3), 10)  # wait_for wraps it in a task too
            direct = await nested(4)
            suite_task = asyncio.create_task(protocol.multiply(xs[5], ys[5]))  # a suite operation as a task
            suite_waited = await asyncio.wait_for(protocol.multiply(xs[5], ys[5]), 10)
            revealed = await asyncio.gather(protocol.reveal(await suite_task), protocol.reveal(suite_waited))
            return [await task for task in tasks] + [waited, direct] + [float(v) for v in revealed]

        want = [i * i + (0.5 + i % 3) ** 2 for i in range(5)] + [5 * 2.5] * 2
        for result in await world.run(player):
            assert close(result, want)


@pytest.mark.parametrize("seed", range(6))
async def test_random_schedules_with_delays_between_and_inside_operations(seed):
    players, threshold = SIZES[seed % 2]
    count = 12
    async with World(players) as world:
        world.jitter(seed=seed, delay=0.003)

        async def player(comm):
            rng = random.Random(seed * 100 + comm.rank)  # every player sleeps differently
            protocol = ShamirProtocolSuite(comm, threshold=threshold)
            xs, ys = await shared_vectors(protocol, count)

            @cicada_async.operation
            async def step(i):
                await asyncio.sleep(rng.uniform(0, 0.002))
                product = await protocol.multiply(xs[i], ys[i])
                await asyncio.sleep(rng.uniform(0, 0.002))
                twice = protocol.add(product, product)
                field = await protocol.field_multiply(xs[i], protocol.field.ones(()))  # public: local
                value = await protocol.reveal(twice)
                return float(value) / 2 + float(await protocol.reveal(field, encoding=Identity())) * 0

            pending = []
            for i in range(count):  # a mix of gathered, tasked and awaited calls
                call = step(i)
                pending.append(asyncio.create_task(call) if i % 3 == 0 else call)
                if i % 4 == 1:
                    await asyncio.sleep(rng.uniform(0, 0.002))
            return await asyncio.gather(*pending)

        for result in await world.run(player):
            assert close(result, expected(count))


async def test_cancelling_one_of_several_operations_leaves_the_others_right():
    async with World(3) as world:
        async def player(comm):
            protocol = ShamirProtocolSuite(comm, threshold=2)
            xs, ys = await shared_vectors(protocol, 6)
            products = [protocol.multiply(x, y) for x, y in zip(xs, ys, strict=True)]
            if comm.rank == 0:
                products[2].cancel()  # only player 0 gives up on operation 2
            results = await asyncio.gather(*products, return_exceptions=True)
            kept = [protocol.reveal(z) for i, z in enumerate(results) if i != 2]
            return [float(v) for v in await asyncio.gather(*kept)]

        want = [v for i, v in enumerate(expected(6)) if i != 2]
        for result in await world.run(player):
            assert close(result, want)


async def test_a_timed_out_collective_leaves_nothing_behind_for_the_next_one():
    """The caller's own timeout: before identities, the late message was taken by the next
    collective on that player, silently (a wrong value)."""
    async with World(3, timeout=5) as world:
        async def player(comm):
            if comm.rank == 0:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await comm.allgather("first")  # the others are late: give up
                await asyncio.sleep(0.2)  # ... their "first" values arrive after that
            else:
                await asyncio.sleep(0.1)
                # Player 0 sent its value before it gave up, so the others complete this one.
                assert await comm.allgather("first") == ["first"] * 3
            return await comm.allgather(f"second from {comm.rank}")

        results = await world.run(player)
        assert results == [[f"second from {rank}" for rank in range(3)]] * 3
        # Player 0 dropped the two late "first" values of the operation it had given up on.
        assert world.comms[0].stats["total"]["discarded"] == {"messages": 2}


@pytest.mark.parametrize("cancel_after", [0.0, 0.02])
async def test_cancelled_operations_late_frames_are_dropped(cancel_after):
    async with World(2, timeout=5) as world:
        a, b = world.comms

        async def late_reveal():
            await asyncio.sleep(0.1)
            return await asyncio.gather(b.allgather(1), b.allgather(2))

        task = asyncio.ensure_future(a.allgather(10))
        await asyncio.sleep(cancel_after)
        task.cancel()
        results = await asyncio.gather(late_reveal(), a.allgather(20))
        # b's first allgather matched a's cancelled one: it gets a's frame (sent before the
        # cancel) or times out; a's second allgather never takes b's first value.
        assert results[1] == [20, 2]
        assert results[0][1] == [20, 2]


async def test_operations_of_players_running_different_programs_raise_naming_both():
    async with World(2) as world:
        a, b = world.comms
        results = await asyncio.gather(a.broadcast(src=0, value="x"), b.allgather("y"), return_exceptions=True)
        assert results[0] == "x"  # the root of a broadcast receives nothing
        assert isinstance(results[1], RemoteProtocolError)
        assert "BROADCAST" in str(results[1]) and "ALLGATHER" in str(results[1]) and results[1].rank == 0


@pytest.mark.parametrize("diverge", ["share", "broadcast", "logger"])
async def test_players_that_disagree_on_a_root_never_compute_on_each_others_data(diverge):
    """Player 0 shares (or broadcasts, or logs) from rank 0, player 1 from rank 1: each side only
    sends, so nothing can fail there.  Their next operation must not match (it would combine
    shares of unrelated secrets into a wrong value): it times out instead."""
    async with World(2, timeout=0.5) as world:
        async def player(comm):
            protocol = ShamirBasicProtocolSuite(comm, threshold=2)
            root = comm.rank  # the bug under test: a root that differs between the players
            if diverge == "share":
                await protocol.share(src=root, secret=numpy.array(1.0), shape=())
            elif diverge == "broadcast":
                await comm.broadcast(src=root, value="mine")
            else:
                await Logger(logging.getLogger(__name__), comm).info("x", src=root)
            mine = await protocol.share(src=0, secret=numpy.array(2.0) if comm.rank == 0 else None, shape=())
            return await protocol.reveal(mine)

        results = await world.run(player, return_exceptions=True)
        assert all(isinstance(result, cicada_async.Timeout) for result in results), results


async def test_shares_of_different_shapes_raise_naming_the_peer():
    async with World(3) as world:
        async def player(comm):
            protocol = ShamirProtocolSuite(comm, threshold=2)
            shape = (3,) if comm.rank == 0 else (2,)  # player 0's program differs
            outcomes = []
            try:
                outcomes.append(await protocol.share(src=0, secret=numpy.ones(3) if comm.rank == 0 else None,
                                                     shape=shape))
            except RemoteProtocolError as error:
                outcomes.append(error)
            operand = ShamirArrayShare(protocol.field.zeros(shape))
            try:
                outcomes.append(await protocol.multiply(operand, operand))
            except RemoteProtocolError as error:
                outcomes.append(error)
            return outcomes

        results = await world.run(player)
        for rank in (1, 2):
            shared, multiplied = results[rank]
            assert isinstance(shared, RemoteProtocolError) and shared.rank == 0 and "player 0" in str(shared)
            assert isinstance(multiplied, RemoteProtocolError) and multiplied.rank == 0
            assert "sent 18 values of uint64 for multiply() (TRUNCATE), where this player expects 12" in str(multiplied)
        assert isinstance(results[0][0], ShamirArrayShare)  # player 0 shared, as it wanted
        assert isinstance(results[0][1], RemoteProtocolError)  # it sees the others' shorter messages


async def test_keyed_scopes_match_requests_that_reach_players_in_different_orders():
    async with World(3) as world:
        world.jitter(seed=11)

        async def player(comm):
            protocol = ShamirProtocolSuite(comm, threshold=2)
            rng = random.Random(comm.rank)
            requests = list(range(8))
            rng.shuffle(requests)  # every player sees the requests in another order

            async def handle(request):
                with cicada_async.scope(("request", request)):
                    await asyncio.sleep(rng.uniform(0, 0.003))
                    share = await protocol.share(src=request % 3, secret=numpy.array(float(request))
                                                 if comm.rank == request % 3 else None, shape=())
                    square = await protocol.multiply(share, share)
                    return request, float(await protocol.reveal(square))

            return dict(await asyncio.gather(*(asyncio.create_task(handle(r)) for r in requests)))

        for answers in await world.run(player):
            assert sorted(answers) == list(range(8))
            assert close([answers[r] for r in range(8)], [float(r * r) for r in range(8)])


async def test_a_key_still_open_in_the_same_parent_cannot_be_opened_again():
    opened = asyncio.Event()

    async def first():
        with cicada_async.scope("request-1"):
            opened.set()
            await asyncio.sleep(0.01)

    async def second():
        await opened.wait()
        with pytest.raises(ValueError, match="already in use"):
            with cicada_async.scope("request-1"):
                pass
        with cicada_async.scope("request-2"), cicada_async.scope("request-1"):  # another parent: fine
            pass

    await asyncio.gather(first(), second())
    with cicada_async.scope("request-1"):  # closed: may be used again
        pass
    with pytest.raises(TypeError):
        with cicada_async.scope(1.5):
            pass


async def test_point_to_point_in_concurrent_scopes_with_the_same_tag_stay_apart():
    async with World(2) as world:
        async def player(comm):
            async def conversation(key):
                with cicada_async.scope(key):
                    if comm.rank == 0:
                        await comm.send(value=f"{key}-1", dst=1, tag=7)
                        await asyncio.sleep(0.001 * (key == "b"))
                        await comm.send(value=f"{key}-2", dst=1, tag=7)
                        return None
                    return [await comm.recv(src=0, tag=7), await comm.recv(src=0, tag=7)]

            keys = ["a", "b"] if comm.rank == 0 else ["b", "a"]
            return await asyncio.gather(*(asyncio.create_task(conversation(k)) for k in keys))

        _, received = await world.run(player)
        assert received == [["b-1", "b-2"], ["a-1", "a-2"]]


async def test_a_synchronised_logger_beside_a_computation(caplog):
    caplog.set_level("INFO", logger="concurrent")
    async with World(3) as world:
        async def player(comm):
            protocol = ShamirProtocolSuite(comm, threshold=2)
            log = Logger(__import__("logging").getLogger("concurrent"), comm)

            @cicada_async.operation
            async def logging_task():
                for i in range(3):
                    await log.info(f"tick {i} from {comm.rank}")

            @cicada_async.operation
            async def computing_task():
                xs, ys = await shared_vectors(protocol, 4)
                products = await asyncio.gather(*(protocol.multiply(x, y) for x, y in zip(xs, ys, strict=True)))
                return [float(v) for v in await asyncio.gather(*(protocol.reveal(z) for z in products))]

            _, values = await asyncio.gather(logging_task(), computing_task())
            return values

        for values in await world.run(player):
            assert close(values, expected(4))
    ticks = [record.getMessage() for record in caplog.records if record.name == "concurrent"]
    assert ticks == [f"tick {i} from {rank}" for i in range(3) for rank in range(3)]


async def test_revoke_fails_every_operation_in_flight():
    async with World(3, timeout=5) as world:
        async def player(comm):
            protocol = ShamirProtocolSuite(comm, threshold=2)
            xs, ys = await shared_vectors(protocol, 10)
            if comm.rank == 2:
                await comm.revoke()  # instead of multiplying
                return "revoked"
            results = await asyncio.gather(*(protocol.multiply(x, y) for x, y in zip(xs, ys, strict=True)),
                                           return_exceptions=True)
            return [type(result).__name__ for result in results]

        first, second, third = await world.run(player)
        assert first == second == ["Revoked"] * 10 and third == "revoked"


@pytest.mark.parametrize("players, threshold", [(4, 2), (5, 2)])
async def test_survivors_of_a_kill_in_the_middle_of_a_gather_shrink_and_go_on_concurrently(players, threshold):
    victim = players - 1
    async with World(players, timeout=2) as world:
        world.jitter(seed=5)

        async def player(comm):
            protocol = ShamirProtocolSuite(comm, threshold=threshold)
            xs, ys = await shared_vectors(protocol, 30)
            if comm.rank == victim:
                asyncio.get_running_loop().call_later(0.005, world.kill, victim)
            outcomes = await asyncio.gather(*(protocol.multiply(x, y) for x, y in zip(xs, ys, strict=True)),
                                            return_exceptions=True)
            failed = [isinstance(outcome, PeerFailed | Revoked) for outcome in outcomes]
            if any(failed):
                await comm.revoke()
            new, oldranks = await comm.shrink(name="survivors")
            after = ShamirProtocolSuite(new, threshold=threshold, indices=protocol.indices[oldranks])
            products = await asyncio.gather(*(after.multiply(x, y) for x, y in zip(xs, ys, strict=True)))
            revealed = await asyncio.gather(*(after.reveal(z) for z in products))
            return oldranks, [float(v) for v in revealed]

        results = [result for result in await world.run(player) if result is not None]
        assert len(results) == players - 1
        for oldranks, values in results:
            assert oldranks == list(range(players - 1))
            assert close(values, expected(30))
