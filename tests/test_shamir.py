"""Shamir suites in one event loop, checked against plaintext numpy."""

from __future__ import annotations

import logging

import numpy
import pytest

from cicada_async import Logger, PeerFailed, Revoked
from cicada_async.arithmetic import PrimeField
from cicada_async.encoding import Bits, Boolean, FixedPoint, Identity
from cicada_async.shamir import ShamirArrayShare, ShamirBasicProtocolSuite, ShamirProtocolSuite
from cicada_async.testing import World

ULP = 2.0**-16


def fixed(x):
    """What FixedPoint(16) represents for x."""
    return numpy.round(numpy.asarray(x, dtype=float) * 2**16) / 2**16


def inputs(seed, shape):
    rng = numpy.random.default_rng(seed)
    values = rng.uniform(-1000, 1000, size=shape)
    flat = values.reshape(-1)
    if flat.size >= 3:
        flat[0], flat[1], flat[2] = 0.0, -0.0, 2.0**40  # zero, negative zero, large
    return values


SHAPES = [(), (7,), (3, 4)]


@pytest.mark.parametrize("world_size", [2, 3, 5])
async def test_share_reveal_and_local_operations(world_size):
    async with World(world_size) as world:
        async def player(comm):
            suite = ShamirBasicProtocolSuite(comm, threshold=2)
            for shape in SHAPES:
                x, y = inputs(1, shape), inputs(2, shape)
                a = await suite.share(src=0, secret=x if comm.rank == 0 else None, shape=shape)
                b = await suite.share(src=world_size - 1, secret=y if comm.rank == world_size - 1 else None,
                                      shape=shape)
                assert a.shape == shape and a.storage.dtype == suite.field.dtype
                numpy.testing.assert_array_equal(await suite.reveal(a), fixed(x))
                numpy.testing.assert_array_equal(await suite.reveal(suite.add(a, b)), fixed(x) + fixed(y))
                numpy.testing.assert_array_equal(await suite.reveal(suite.subtract(a, b)), fixed(x) - fixed(y))
                numpy.testing.assert_array_equal(await suite.reveal(suite.negative(a)), -fixed(x))
                numpy.testing.assert_array_equal(await suite.reveal(suite.add(a, numpy.full(shape, 0.5))),
                                                 fixed(x) + 0.5)
                numpy.testing.assert_array_equal(await suite.reveal(suite.subtract(3.25, a)), 3.25 - fixed(x))
                exact_sum = sum(int(v) for v in numpy.round(numpy.asarray(x) * 2**16).reshape(-1)) / 2**16
                assert await suite.reveal(suite.sum(a)) == exact_sum
                fresh = await suite.reshare(a)
                assert not numpy.array_equal(fresh.storage, a.storage)
                numpy.testing.assert_array_equal(await suite.reveal(fresh), fixed(x))
            return True

        assert await world.run(player) == [True] * world_size


async def test_reveal_to_a_subset_and_indexing():
    async with World(4) as world:
        async def player(comm):
            suite = ShamirBasicProtocolSuite(comm, threshold=3)
            x = numpy.arange(12.0).reshape(3, 4)
            a = await suite.share(src=2, secret=x if comm.rank == 2 else None, shape=(3, 4))
            only_one = await suite.reveal(a, dst=1)
            some = await suite.reveal(a[1], dst=[0, 3])
            everyone = await suite.reveal(a[:, 2])
            return only_one, some, everyone

        results = await world.run(player)
        x = numpy.arange(12.0).reshape(3, 4)
        for rank, (only_one, some, everyone) in enumerate(results):
            assert (only_one is not None) == (rank == 1)
            assert (some is not None) == (rank in (0, 3))
            numpy.testing.assert_array_equal(everyone, x[:, 2])
        numpy.testing.assert_array_equal(results[1][0], x)
        numpy.testing.assert_array_equal(results[3][1], x[1])


async def test_field_operations_uniform_and_encodings():
    async with World(3) as world:
        async def player(comm):
            suite = ShamirBasicProtocolSuite(comm, threshold=2)
            field = suite.field
            ints = numpy.array([0, 1, -5, 2**62])
            a = await suite.share(src=0, secret=ints, shape=(4,), encoding=Identity())
            revealed = await suite.reveal(a, encoding=Identity())
            assert [int(v) for v in revealed] == [int(v) % field.order for v in ints]
            public = field(numpy.array([1, 2, 3, 4]))
            summed = await suite.reveal(suite.field_add(a, public), encoding=Identity())
            expected = [(int(v) + w) % field.order for v, w in zip(ints, [1, 2, 3, 4], strict=True)]
            assert [int(v) for v in summed] == expected
            diff = await suite.reveal(suite.field_subtract(a, a), encoding=Identity())
            assert [int(v) for v in diff] == [0] * 4
            u1 = await suite.field_uniform(shape=(1000,))
            u2 = await suite.field_uniform(shape=1000)
            r1, r2 = await suite.reveal(u1, encoding=Identity()), await suite.reveal(u2, encoding=Identity())
            assert r1.shape == (1000,) and len(set(r1)) == 1000 and not (r1 == r2).any()
            flags = await suite.share(src=1, secret=numpy.array([True, False, True]), shape=3, encoding=Boolean())
            assert (await suite.reveal(flags, encoding=Boolean())).tolist() == [True, False, True]
            bits = await suite.share(src=1, secret=numpy.array([1, 0]), shape=2, encoding=Bits())
            assert (await suite.reveal(bits, encoding=Bits())).tolist() == [1, 0]
            return True

        assert await world.run(player) == [True] * 3


@pytest.mark.parametrize("world_size, threshold", [(3, 2), (5, 2), (5, 3)])
async def test_multiply_dot_matvec_against_numpy(world_size, threshold):
    async with World(world_size) as world:
        async def player(comm):
            suite = ShamirProtocolSuite(comm, threshold=threshold)
            rng = numpy.random.default_rng(7)
            x = rng.uniform(-300, 300, size=(4, 5))
            y = rng.uniform(-300, 300, size=(4, 5))
            x[0, 0], y[0, 1] = 0.0, 0.0
            v = rng.uniform(-10, 10, size=5)
            a = await suite.share(src=0, secret=x if comm.rank == 0 else None, shape=x.shape)
            b = await suite.share(src=1, secret=y if comm.rank == 1 else None, shape=y.shape)
            c = await suite.share(src=comm.world_size - 1, secret=v if comm.rank == comm.world_size - 1 else None,
                                  shape=v.shape)
            product = await suite.reveal(await suite.multiply(a, b))
            scaled = await suite.reveal(await suite.multiply(a, numpy.full((4, 5), -2.5)))
            dotted = await suite.reveal(await suite.dot(a[1], b[2]))
            matvec = await suite.reveal(await suite.matvec(a, c))
            square = await suite.reveal(await suite.multiply(c, c))
            return product, scaled, dotted, matvec, square

        results = await world.run(player)
        rng = numpy.random.default_rng(7)
        x = fixed(rng.uniform(-300, 300, size=(4, 5)))
        y = fixed(rng.uniform(-300, 300, size=(4, 5)))
        x[0, 0], y[0, 1] = 0.0, 0.0
        v = fixed(rng.uniform(-10, 10, size=5))
        tolerance = (threshold // 2 + 2) * ULP
        for product, scaled, dotted, matvec, square in results:
            numpy.testing.assert_allclose(product, x * y, rtol=0, atol=tolerance)
            numpy.testing.assert_allclose(scaled, x * -2.5, rtol=0, atol=tolerance)
            assert dotted == pytest.approx(numpy.dot(x[1], y[2]), abs=tolerance)
            numpy.testing.assert_allclose(matvec, x @ v, rtol=0, atol=tolerance)
            numpy.testing.assert_allclose(square, v * v, rtol=0, atol=tolerance)
        assert all(numpy.array_equal(results[0][0], other[0]) for other in results)


async def test_field_multiply_and_field_dot_are_exact():
    async with World(3) as world:
        async def player(comm):
            suite = ShamirProtocolSuite(comm, threshold=2)
            field = suite.field
            x = numpy.array([3, -4, 2**60, 0])
            y = numpy.array([5, 6, 2**60, 9])
            a = await suite.share(src=0, secret=x, shape=4, encoding=Identity())
            b = await suite.share(src=2, secret=y, shape=4, encoding=Identity())
            product = await suite.reveal(await suite.field_multiply(a, b), encoding=Identity())
            public = await suite.reveal(await suite.field_multiply(a, field(numpy.array([2, 2, 2, 2]))),
                                        encoding=Identity())
            dot = await suite.reveal(await suite.field_dot(a, b), encoding=Identity())
            return product.tolist(), public.tolist(), int(dot)

        p = 2**127 - 1
        x, y = [3, -4, 2**60, 0], [5, 6, 2**60, 9]
        for product, public, dot in await world.run(player):
            assert product == [(a * b) % p for a, b in zip(x, y, strict=False)]
            assert public == [(2 * a) % p for a in x]
            assert dot == sum(a * b for a, b in zip(x, y, strict=False)) % p


def test_one_players_shares_of_a_fixed_secret_look_uniform():
    """Shares at one index of many sharings of the same secret: every bit is a fair coin."""
    import asyncio

    async def run():
        async with World(3) as world:
            async def player(comm):
                suite = ShamirBasicProtocolSuite(comm, threshold=2)
                secret = numpy.zeros(20000)
                return (await suite.share(src=0, secret=secret if comm.rank == 0 else None, shape=(20000,))).storage
            return await world.run(player)

    shares = asyncio.run(run())
    for storage in shares:
        values = storage["lo"], storage["hi"]
        for limb, top in ((values[0], 64), (values[1], 63)):
            for bit in range(top):
                frequency = float(((limb >> numpy.uint64(bit)) & numpy.uint64(1)).mean())
                assert abs(frequency - 0.5) < 5 * 0.5 / numpy.sqrt(20000), (bit, frequency)


def test_threshold_bounds_and_argument_errors():
    import asyncio

    async def run():
        async with World(3) as world:
            comm = world.comms[0]
            with pytest.raises(ValueError, match="threshold must be >= 2"):
                ShamirBasicProtocolSuite(comm, threshold=1)
            with pytest.raises(ValueError, match="threshold must be <= world_size"):
                ShamirBasicProtocolSuite(comm, threshold=4)
            with pytest.raises(ValueError, match=r"2\*threshold - 1"):
                ShamirProtocolSuite(comm, threshold=3)
            with pytest.raises(ValueError, match="indices"):
                ShamirBasicProtocolSuite(comm, threshold=2, indices=numpy.array([1, 1, 2]))
            with pytest.raises(ValueError, match="indices"):
                ShamirBasicProtocolSuite(comm, threshold=2, indices=numpy.array([1, 2]))
            with pytest.raises(ValueError, match="communicator"):
                ShamirBasicProtocolSuite(object(), threshold=2)
            suite = ShamirBasicProtocolSuite(comm, threshold=2)
            with pytest.raises(ValueError, match="ShamirArrayShare"):
                await suite.reveal(numpy.zeros(3))
            with pytest.raises(NotImplementedError):
                suite.add(numpy.zeros(2), numpy.zeros(2))
            with pytest.raises(ValueError, match="shape"):
                await suite.share(src=0, secret=numpy.zeros(2), shape=(3,))
            small = ShamirProtocolSuite(world.comms[0], threshold=2, order=2**61 - 1)
            assert isinstance(small.field, PrimeField)
            share = ShamirArrayShare(small.field.zeros((2,)))
            with pytest.raises(ValueError, match="default field"):
                await small.multiply(share, numpy.ones(2))

    asyncio.run(run())


async def test_seeded_suites_are_reproducible():
    async def once():
        async with World(3) as world:
            async def player(comm):
                suite = ShamirBasicProtocolSuite(comm, threshold=2, seed=1234)
                share = await suite.share(src=0, secret=numpy.arange(5.0), shape=5)
                return share.storage.tobytes()
            return await world.run(player)

    assert await once() == await once()


async def test_old_shares_open_after_a_shrink_with_the_survivors_indices():
    async with World(5, timeout=2) as world:
        x = numpy.array([1.5, -2.0, 1e6])

        async def player(comm):
            suite = ShamirProtocolSuite(comm, threshold=2)
            share = await suite.share(src=3, secret=x if comm.rank == 3 else None, shape=3)
            if comm.rank == 1:
                world.kill(1)
            try:
                await suite.reveal(share)
            except (PeerFailed, Revoked):
                pass
            await comm.revoke()
            new, oldranks = await comm.shrink(name="after")
            after = ShamirProtocolSuite(new, threshold=2, indices=suite.indices[oldranks])
            assert after.indices.tolist() == [o + 1 for o in oldranks]
            opened = await after.reveal(share)
            doubled = await after.reveal(await after.multiply(share, numpy.full(3, 2.0)))
            return oldranks, opened, doubled

        results = [r for r in await world.run(player) if r is not None]
        assert len(results) == 4
        for oldranks, opened, doubled in results:
            assert oldranks == [0, 2, 3, 4]
            numpy.testing.assert_array_equal(opened, x)
            numpy.testing.assert_allclose(doubled, 2 * x, atol=3 * ULP)


async def test_shares_do_not_depend_on_the_suite_that_made_them():
    async with World(3) as world:
        async def player(comm):
            first = ShamirBasicProtocolSuite(comm, threshold=2, encoding=FixedPoint(precision=8))
            second = ShamirBasicProtocolSuite(comm, threshold=2)
            share = await first.share(src=0, secret=numpy.array(2.5), shape=())
            return await second.reveal(share, encoding=FixedPoint(precision=8))

        assert await world.run(player) == [2.5] * 3


async def test_logger_writes_in_rank_order_and_filters(caplog):
    caplog.set_level(logging.INFO, logger="ordered")
    async with World(4) as world:
        async def player(comm):
            log = Logger(logging.getLogger("ordered"), comm)
            for round_ in range(3):
                await log.info(f"round {round_} player {comm.rank}")
            await log.warning("only two", src=2)
            await log.error("zero and three: %s", comm.rank, src=[3, 0])
            before = comm.stats["total"]["sent"]["messages"]
            with log.override(sync=False):
                await log.info("local", src=1)
            assert log.sync
            log.sync = False
            await log.debug("dropped by level")
            return comm.stats["total"]["sent"]["messages"] - before

        assert await world.run(player) == [0, 0, 0, 0]  # unsynchronized logging never communicates
    messages = [record.getMessage() for record in caplog.records if record.name == "ordered"]
    expected = [f"round {r} player {p}" for r in range(3) for p in range(4)]
    expected += ["only two", "zero and three: 0", "zero and three: 3", "local"]
    assert messages == expected
    levels = [record.levelname for record in caplog.records if record.name == "ordered"][-4:]
    assert levels == ["WARNING", "ERROR", "ERROR", "INFO"]


async def test_logger_all_return_together_and_validates_src():
    async with World(3) as world:
        log = Logger(logging.getLogger("x"), world.comms[0])
        with pytest.raises(ValueError):
            await log.info("bad", src=[5])
        with pytest.raises(ValueError):
            Logger(logging.getLogger("x"), object())
