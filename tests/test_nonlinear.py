"""Comparisons, bits and what is built on them (ShamirProtocolSuite), against numpy."""

from __future__ import annotations

import asyncio

import numpy
import pytest

from cicada_async import CommunicatorError
from cicada_async.encoding import Bits, Boolean, Identity
from cicada_async.shamir import COMPARISON_BOUND, ShamirProtocolSuite
from cicada_async.shamir._bitwise import Raw
from cicada_async.testing import World

STEP = 2.0**-16
EDGES = numpy.array([0.0, STEP, -STEP, 0.5, -0.5, 0.25, -0.25, 1.0, -1.0, 2.1, -2.1, 3.0, -3.0,
                     2.0**40 - 1, -(2.0**40) + 1, 12345.678, -12345.678])
EDGES = numpy.round(EDGES * 2**16) / 2**16  # as encoded, so numpy's results are exact too


def values(seed: int, shape: tuple[int, ...]) -> numpy.ndarray:
    generator = numpy.random.default_rng(seed)
    x = numpy.asarray(generator.uniform(-1000, 1000, size=shape))
    return numpy.asarray(numpy.round(x * 2**16) / 2**16)  # exactly representable


async def on_players(players: int, threshold: int, fn, *secrets):
    """Run ``fn(suite, *shares)`` on every player, the secrets shared by rank 0; return rank 0's result."""
    async def player(comm):
        suite = ShamirProtocolSuite(comm, threshold=threshold)
        shares = [await suite.share(src=0, secret=secret if comm.rank == 0 else None, shape=secret.shape)
                  for secret in secrets]
        return await fn(suite, *shares)

    async with World(players, timeout=10) as world:
        results = await world.run(player)
    return results[0]


def configurations():
    return [pytest.param(3, 2, id="3-players"), pytest.param(5, 3, id="5-players")]


@pytest.mark.parametrize(("players", "threshold"), configurations())
async def test_comparisons_match_numpy(players, threshold):
    x = numpy.concatenate([EDGES, values(1, (40,))])
    y = numpy.concatenate([EDGES[::-1], values(2, (40,))])
    y[:5] = x[:5]  # equal pairs

    async def fn(suite, a, b):
        operations = await asyncio.gather(suite.less_zero(a), suite.less(a, b), suite.equal(a, b))
        return [await suite.reveal(share, encoding=Boolean()) for share in operations]

    less_zero, less, equal = await on_players(players, threshold, fn, x, y)
    numpy.testing.assert_array_equal(less_zero, x < 0)
    numpy.testing.assert_array_equal(less, x < y)
    numpy.testing.assert_array_equal(equal, x == y)


@pytest.mark.parametrize(("players", "threshold"), configurations())
async def test_functions_of_comparisons_match_numpy(players, threshold):
    x = numpy.concatenate([EDGES, values(3, (30,))])
    y = numpy.concatenate([EDGES[::-1], values(4, (30,))])

    async def fn(suite, a, b):
        shares = await asyncio.gather(suite.relu(a), suite.absolute(a), suite.maximum(a, b), suite.minimum(a, b),
                                      suite.floor(a), suite.zigmoid(a))
        return [await suite.reveal(share) for share in shares]

    relu, absolute, maximum, minimum, floor, zigmoid = await on_players(players, threshold, fn, x, y)
    # Exact: the results are the operands themselves, or sums of them, selected.
    numpy.testing.assert_array_equal(relu, numpy.maximum(x, 0))
    numpy.testing.assert_array_equal(absolute, numpy.abs(x))
    numpy.testing.assert_array_equal(maximum, numpy.maximum(x, y))
    numpy.testing.assert_array_equal(minimum, numpy.minimum(x, y))
    numpy.testing.assert_array_equal(floor, numpy.floor(x))
    numpy.testing.assert_array_equal(zigmoid, numpy.clip(x + 0.5, 0, 1))


async def test_cicadas_pinned_results():
    async def fn(suite, a, b, c):
        floor = await suite.reveal(await suite.floor(a))
        zigmoid = await suite.reveal(await suite.zigmoid(b))
        less = await suite.reveal(await suite.less(c[0], c[1]), encoding=Boolean())
        return floor, zigmoid, less

    floor, zigmoid, less = await on_players(3, 2, fn, numpy.array(-2.1), numpy.array([-0.5, 0.25]),
                                            numpy.array([0.0, STEP]))
    assert floor == -3.0
    assert list(zigmoid) == [0.0, 0.75]
    assert less == 1


@pytest.mark.parametrize("shape", [(), (7,), (3, 4), (0,)])
async def test_shapes_are_kept(shape):
    x = values(5, shape)

    async def fn(suite, a):
        relu = await suite.relu(a)
        negative = await suite.less_zero(a)
        return relu.shape, negative.shape, await suite.reveal(relu), await suite.reveal(negative, encoding=Boolean())

    relu_shape, negative_shape, relu, negative = await on_players(3, 2, fn, x)
    assert relu_shape == negative_shape == shape
    numpy.testing.assert_array_equal(relu, numpy.maximum(x, 0))
    numpy.testing.assert_array_equal(negative, x < 0)


async def test_right_shift_and_the_bound():
    bound = COMPARISON_BOUND
    ints = numpy.array([0, 1, -1, 5, -5, 2**20 + 3, -(2**20) - 3, bound - 1, -bound], dtype=object)

    async def fn(suite, a):
        shifted = [await suite.reveal(await suite.right_shift(a, bits=bits), encoding=Identity())
                   for bits in (0, 1, 7, 40)]
        negative = await suite.reveal(await suite.less_zero(a), encoding=Boolean())
        return shifted, negative

    async def player(comm):
        suite = ShamirProtocolSuite(comm, threshold=2)
        a = await suite.share(src=0, secret=ints if comm.rank == 0 else None, shape=ints.shape, encoding=Identity())
        return await fn(suite, a)

    async with World(3) as world:
        shifted, negative = (await world.run(player))[0]
    order = 2**127 - 1
    for bits, result in zip((0, 1, 7, 40), shifted, strict=True):
        signed = [int(v) - order if int(v) > order // 2 else int(v) for v in result]
        assert signed == [int(v) >> bits for v in ints], bits
    numpy.testing.assert_array_equal(negative, [int(v) < 0 for v in ints])


@pytest.mark.parametrize(("players", "threshold"), configurations())
async def test_logic_powers_and_inverses(players, threshold):
    bits_a = numpy.array([0, 0, 1, 1])
    bits_b = numpy.array([0, 1, 0, 1])

    async def player(comm):
        suite = ShamirProtocolSuite(comm, threshold=threshold)
        a = await suite.share(src=0, secret=bits_a if comm.rank == 0 else None, shape=(4,), encoding=Bits())
        b = await suite.share(src=1, secret=bits_b if comm.rank == 1 else None, shape=(4,), encoding=Bits())
        logic = await asyncio.gather(suite.logical_and(a, b), suite.logical_or(a, b), suite.logical_xor(a, b))
        logic = [await suite.reveal(share, encoding=Bits()) for share in (*logic, suite.logical_not(a))]
        x = await suite.share(src=0, secret=numpy.array([2, 3, 7, 1]) if comm.rank == 0 else None, shape=(4,),
                              encoding=Identity())
        powers = await suite.reveal(await suite.field_power(x, numpy.array([0, 1, 5, 100])), encoding=Identity())
        inverse = await suite.multiplicative_inverse(x)
        product = await suite.reveal(await suite.field_multiply(inverse, x), encoding=Identity())
        real = await suite.share(src=0, secret=numpy.array([1.5, -0.5, 2.0]) if comm.rank == 0 else None,
                                 shape=(3,))
        power = await suite.reveal(await suite.power(real, 3))
        try:
            await suite.multiplicative_inverse(await suite.field_multiply(x, suite.logical_not(a)))
        except ZeroDivisionError as error:
            zero = str(error)
        return logic, powers, product, power, zero

    async with World(players) as world:
        logic, powers, product, power, zero = (await world.run(player))[0]
    assert [list(v) for v in logic] == [[0, 0, 0, 1], [0, 1, 1, 1], [0, 1, 1, 0], [1, 1, 0, 0]]
    order = 2**127 - 1
    assert list(powers) == [1, 3, pow(7, 5, order), 1]
    assert list(product) == [1, 1, 1, 1]
    numpy.testing.assert_allclose(power, [3.375, -0.125, 8.0], atol=8 * STEP)
    assert "zero" in zero


async def test_random_bitwise_secret_and_bit_compose():
    async def player(comm):
        suite = ShamirProtocolSuite(comm, threshold=2)
        bits, value = await suite.random_bitwise_secret(bits=10, shape=(500,))
        opened_bits = await suite.reveal(bits, encoding=Bits())
        opened = await suite.reveal(value, encoding=Identity())
        composed = await suite.reveal(suite.bit_compose(bits), encoding=Identity())
        return bits.shape, opened_bits, opened, composed

    async with World(3) as world:
        shape, bits, value, composed = (await world.run(player))[0]
    assert shape == (500, 10)
    weights = 2 ** numpy.arange(9, -1, -1)
    assert [int(v) for v in value] == list((bits * weights).sum(axis=1))
    assert list(value) == list(composed)
    assert 0.4 < bits.mean() < 0.6  # the bits are random, not constant
    assert len(set(value)) > 300


async def test_concurrent_operations_under_gather():
    x = values(6, (20,))
    y = values(7, (20,))

    async def fn(suite, a, b):
        shares = await asyncio.gather(*(suite.less(a[i], b[i]) for i in range(20)), suite.maximum(a, b),
                                      *(suite.relu(a[i]) for i in range(5)))
        return [await suite.reveal(share, encoding=Boolean()) for share in shares[:20]], \
            await suite.reveal(shares[20]), [await suite.reveal(share) for share in shares[21:]]

    less, maximum, relu = await on_players(3, 2, fn, x, y)
    assert list(less) == list(x < y)
    numpy.testing.assert_array_equal(maximum, numpy.maximum(x, y))
    numpy.testing.assert_array_equal(relu, numpy.maximum(x[:5], 0))


async def test_rounds_do_not_grow_with_the_array():
    async def player(comm):
        suite = ShamirProtocolSuite(comm, threshold=2)
        counts = []
        for size in (1, 10_000):
            a = await suite.share(src=0, secret=values(8, (size,)) if comm.rank == 0 else None, shape=(size,))
            before = comm.stats["player"][1]["sent"]["messages"] if comm.rank == 0 else 0
            await suite.less(a, a)
            if comm.rank == 0:
                counts.append(comm.stats["player"][1]["sent"]["messages"] - before)
        return counts

    async with World(3, timeout=30) as world:
        counts = (await world.run(player))[0]
    assert counts[0] == counts[1], counts
    assert counts[0] <= 10, counts  # share of the masks, XOR, one opening, 6 levels of prefix OR


async def test_results_after_a_shrink_use_the_survivors_indices():
    x = numpy.array([-1.5, 0.0, 2.25, -3.0])

    async def player(comm):
        suite = ShamirProtocolSuite(comm, threshold=2)
        a = await suite.share(src=0, secret=x if comm.rank == 0 else None, shape=x.shape)
        await comm.revoke()
        new, oldranks = await comm.shrink(name="survivors")
        survivors = ShamirProtocolSuite(new, threshold=2, indices=suite.indices[oldranks])
        relu = await survivors.reveal(await survivors.relu(a))
        less = await survivors.reveal(await survivors.less_zero(a), encoding=Boolean())
        return relu, less

    async with World(4, timeout=2) as world:
        world.kill(1)
        results = await world.run(player, return_exceptions=True)
    assert len(results) == 3  # players 0, 2 and 3
    for relu, less in results:
        numpy.testing.assert_array_equal(relu, numpy.maximum(x, 0))
        numpy.testing.assert_array_equal(less, x < 0)


async def test_players_calling_different_functions_at_the_same_point_fail_instead_of_mixing():
    x = values(9, (4,))

    async def player(comm):
        suite = ShamirProtocolSuite(comm, threshold=2)
        a = await suite.share(src=0, secret=x if comm.rank == 0 else None, shape=x.shape)
        operation = suite.less_zero(a) if comm.rank == 0 else suite.relu(a)
        return await suite.reveal(await operation)

    async with World(3, timeout=0.5) as world:
        results = await world.run(player, return_exceptions=True)
    assert all(isinstance(result, CommunicatorError) for result in results), results


async def test_openings_are_masked_and_fresh():
    """What every player sees opened inside ``less_zero`` and ``multiplicative_inverse``: a
    sharing of degree threshold - 1 (not a bare product) whose value does not follow the secret."""
    count = 2000
    opened: dict[int, list[numpy.ndarray]] = {}

    async def player(comm):
        suite = ShamirProtocolSuite(comm, threshold=2)
        reveal = suite.reveal

        def recording(share, **kwargs):
            if isinstance(kwargs.get("encoding"), Raw):
                opened.setdefault(comm.rank, []).append(share.storage.copy())
            return reveal(share, **kwargs)

        suite.reveal = recording
        for secret in (numpy.zeros(count), numpy.full(count, -7.5)):
            a = await suite.share(src=0, secret=secret if comm.rank == 0 else None, shape=(count,))
            await suite.less_zero(a)
        x = await suite.share(src=0, secret=numpy.full(count, 3) if comm.rank == 0 else None, shape=(count,),
                              encoding=Identity())
        await suite.multiplicative_inverse(x)

    async with World(3) as world:
        await world.run(player)
    order = 2**127 - 1
    for index in range(3):
        rows = [[int.from_bytes(element.tobytes(), "little") for element in opened[rank][index]] for rank in range(3)]
        # Three points (x = 1, 2, 3) on a line: a degree-1 (threshold - 1) sharing.
        for s1, s2, s3 in zip(*rows, strict=True):
            assert (s1 - 2 * s2 + s3) % order == 0
        # The opened values: s(0) = 2 s1 - s2.
        values_opened = [(2 * s1 - s2) % order for s1, s2 in zip(rows[0], rows[1], strict=True)]
        low = numpy.array([[(v >> bit) & 1 for bit in range(0, 60, 6)] for v in values_opened])
        frequencies = low.mean(axis=0)
        assert numpy.all(numpy.abs(frequencies - 0.5) < 0.06), (index, frequencies)  # ~5 sigma at 2,000
    assert len(opened[0]) == 3


@pytest.mark.parametrize(("players", "threshold"), configurations())
async def test_bit_decompose_gives_the_field_elements_bits_big_endian(players, threshold):
    order = 2**127 - 1
    ints = numpy.array([0, 1, 2, 5, 2**64 + 3, order - 1, order - 5, -1, -(2**70), 2**126 + 12345], dtype=object)

    async def player(comm):
        suite = ShamirProtocolSuite(comm, threshold=threshold)
        a = await suite.share(src=0, secret=ints.reshape(2, 5) if comm.rank == 0 else None, shape=(2, 5),
                              encoding=Identity())
        every, low = await asyncio.gather(suite.bit_decompose(a), suite.bit_decompose(a, bits=8))
        composed = await suite.reveal(suite.bit_compose(every), encoding=Identity())
        return every.shape, await suite.reveal(every, encoding=Bits()), await suite.reveal(low, encoding=Bits()), \
            composed

    async with World(players) as world:
        shape, every, low, composed = (await world.run(player))[0]
    assert shape == (2, 5, 127)
    for element, bits, eight in zip(ints, every.reshape(10, 127), low.reshape(10, 8), strict=True):
        value = int(element) % order
        assert [int(b) for b in bits] == [(value >> (126 - i)) & 1 for i in range(127)], element
        assert [int(b) for b in eight] == [(value >> (7 - i)) & 1 for i in range(8)], element
    assert [int(v) for v in composed.reshape(-1)] == [int(v) % order for v in ints]


async def test_cicadas_bit_decompose_layout():
    async def fn(suite, a):
        return await suite.reveal(await suite.bit_decompose(a, bits=4), encoding=Bits())

    async def player(comm):
        suite = ShamirProtocolSuite(comm, threshold=2)
        a = await suite.share(src=0, secret=numpy.array([5, 6]) if comm.rank == 0 else None, shape=(2,),
                              encoding=Identity())
        return await fn(suite, a)

    async with World(3) as world:
        bits = (await world.run(player))[0]
    assert bits.tolist() == [[0, 1, 0, 1], [0, 1, 1, 0]]  # big-endian, on a new last axis


@pytest.mark.parametrize(("players", "threshold"), configurations())
async def test_divide_matches_numpy_within_its_bounds(players, threshold):
    generator = numpy.random.default_rng(11)
    x = numpy.concatenate([[1.0, -7.5, 1000.0, 2.0**23, 0.5, 0.0, 3.0, -(2.0**23) + 1],
                           generator.uniform(-1e4, 1e4, size=30)])
    y = numpy.concatenate([[3.0, 2.5, -7.0, 3.0, 2.0**-10, 5.0, 2.0**-16, 2.0**31],
                           generator.choice([-1, 1], size=30) * 10 ** generator.uniform(-4, 9, size=30)])
    x, y = numpy.round(x * 2**16) / 2**16, numpy.round(y * 2**16) / 2**16

    async def fn(suite, a, b):
        quotient, public = await asyncio.gather(suite.divide(a, b), suite.divide(a, numpy.array(-7.25)))
        return await suite.reveal(quotient), await suite.reveal(public)

    quotient, public = await on_players(players, threshold, fn, x, y)
    exact = x / y
    allowed = numpy.maximum(4 * STEP, numpy.abs(exact) * 2.0**-29)
    assert numpy.all(numpy.abs(quotient - exact) <= allowed), numpy.max(numpy.abs(quotient - exact) / allowed)
    assert numpy.all(numpy.abs(public - x / -7.25) <= numpy.maximum(4 * STEP, numpy.abs(x) * 2.0**-28))


async def test_divide_by_zero():
    async def fn(suite, a, b):
        return await suite.reveal(await suite.divide(a, b))

    assert list(await on_players(3, 2, fn, numpy.array([5.0, -2.0]), numpy.array([0.0, 0.0]))) == [0.0, 0.0]

    async def public(comm):
        suite = ShamirProtocolSuite(comm, threshold=2)
        a = await suite.share(src=0, secret=numpy.array(1.0) if comm.rank == 0 else None, shape=())
        with pytest.raises(ZeroDivisionError):
            suite.divide(a, 0.0)
        return True

    async with World(3) as world:
        assert await world.run(public) == [True] * 3
