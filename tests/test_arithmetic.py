"""Field arithmetic against exact Python-int arithmetic: edge values, random values, shapes,
broadcasting, chunk boundaries, randomness, Shamir helpers and the wire format."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cicada_async import arithmetic
from cicada_async.arithmetic import MERSENNE_127, Field, MersenneField, PrimeField, field

P127 = 2**127 - 1
FIELDS = [MersenneField(), PrimeField(2**61 - 1), PrimeField(65521), PrimeField(2**64 - 59)]
IDS = ["mersenne127", "prime61", "prime16", "prime64"]
by_field = pytest.mark.parametrize("F", FIELDS, ids=IDS)
CHUNK = arithmetic._CHUNK

# Values that stress carries and limb boundaries: 26-, 32- and 16-bit limbs all ones, halves
# all ones, values next to 2**63, 2**64, 2**126, p.
EDGE_RAW = [
    0,
    1,
    2,
    P127 - 1,
    P127 - 2,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    2**64 + 1,
    2**126 - 1,
    2**126,
    2**126 + 1,
    2**26 - 1,
    2**32 - 1,
    2**52 - 1,
    2**78 - 1,
    2**96 - 1,
    2**104 - 1,
    2**112 - 1,
    P127 - 2**64,
    P127 - 2**104,
    (2**26 - 1) << 52,
    (2**32 - 1) << 64,
    0x5555_5555_5555_5555_5555_5555_5555_5555,
]
SETTINGS = settings(max_examples=40, deadline=None)
big_ints = st.integers(min_value=-(2**130), max_value=2**130)


def edge(F: Field) -> list[int]:
    return sorted(
        {v % F.order for v in EDGE_RAW} | {F.order - 1, F.order - 2, F.order // 2, F.order // 2 + 1}
    )


def obj(values) -> np.ndarray:
    return np.array(values, dtype=object)


def ints(F: Field, storage: np.ndarray) -> np.ndarray:
    """Storage as an object array of Python ints, checking shape-independent invariants."""
    assert isinstance(storage, np.ndarray) and storage.dtype == F.dtype
    values = F.to_ints(storage)
    assert values.shape == storage.shape and values.dtype == object
    assert all(type(v) is int and 0 <= v < F.order for v in values.flat)
    return values


def assert_field_equal(F: Field, storage: np.ndarray, expected) -> None:
    expected = np.asarray(np.asarray(expected, dtype=object) % F.order, dtype=object)
    got = ints(F, storage)
    assert got.shape == expected.shape
    assert got.tolist() == expected.tolist()


def random_ints(rng: random.Random, F: Field, shape) -> np.ndarray:
    return obj([rng.randrange(F.order) for _ in range(math.prod(shape))]).reshape(shape)


# -- construction and conversion -----------------------------------------------------------------


def test_field_factory_and_identity():
    assert isinstance(field(), MersenneField)
    assert isinstance(field(MERSENNE_127), MersenneField)
    assert field(None) == MersenneField() and hash(field()) == hash(MersenneField())
    g = field(65521)
    assert isinstance(g, PrimeField) and g.order == 65521 and g.bits == 16 and g.dtype == np.uint64
    assert g == PrimeField(65521) and g != PrimeField(65519) and g != MersenneField()
    assert {PrimeField(65521), PrimeField(65521)} == {g}
    assert repr(MersenneField()) == "MersenneField()" and repr(g) == "PrimeField(order=65521)"
    m = MersenneField()
    assert m.order == P127 and m.bits == 127
    assert m.dtype == np.dtype([("lo", "<u8"), ("hi", "<u8")])


@pytest.mark.parametrize("order", [0, 1, 2, 4, 65535, 2**61 + 1, 561, 3215031751, 2**64 - 1, -7])
def test_prime_field_rejects_non_primes(order):
    with pytest.raises(ValueError):
        PrimeField(order)


def test_prime_field_rejects_large_and_non_int_orders():
    with pytest.raises(ValueError, match="2\\*\\*64"):
        PrimeField(2**64 + 13)
    with pytest.raises(ValueError):
        PrimeField(P127)
    with pytest.raises(TypeError):
        PrimeField(7.0)
    for prime in [3, 5, 65521, 2**31 - 1, 2**32 + 15, 2**61 - 1, 2**64 - 59, 18446744073709551557]:
        assert PrimeField(prime).order == prime


@by_field
def test_conversion_of_every_input_kind(F):
    p = F.order
    values = [
        0,
        1,
        -1,
        5,
        -(2**63),
        2**63 - 1,
        2**64 - 1,
        2**64,
        -(2**64),
        2**200 + 7,
        -(3**100),
        p,
        p - 1,
        -p,
    ]
    assert_field_equal(F, F(obj(values)), obj(values))
    assert_field_equal(F, F(values), obj(values))  # a list with big ints becomes an object array
    for mixed in ([-1, 2**64 - 1], [[5, 0], [2**64 - 60, 1]], [2**63 - 1, -(2**63), 2**63]):
        assert_field_equal(F, F(mixed), obj(mixed))  # numpy alone would make these float64
    signed = np.array([0, 1, -1, -(2**63), 2**63 - 1, -12345], dtype=np.int64)
    assert_field_equal(F, F(signed), obj(signed.tolist()))
    assert_field_equal(F, F.from_signed(signed), obj(signed.tolist()))
    assert_field_equal(F, F.from_signed(np.int64(-(2**63))), -(2**63))
    assert_field_equal(F, F(signed.astype(np.int8)), obj(signed.astype(np.int8).tolist()))
    unsigned = np.array([0, 1, 2**63, 2**64 - 1], dtype=np.uint64)
    assert_field_equal(F, F(unsigned), obj(unsigned.tolist()))
    assert_field_equal(F, F(np.array([True, False])), obj([1, 0]))
    for scalar, expected in [
        (7, 7),
        (-7, -7),
        (True, 1),
        (np.int64(-3), -3),
        (np.uint64(2**64 - 1), 2**64 - 1),
    ]:
        s = F(scalar)
        assert s.shape == ()
        assert_field_equal(F, s, expected)
    assert_field_equal(F, F(obj(2**130)), 2**130)  # 0-d object array
    assert F(np.zeros((0, 3), dtype=np.int64)).shape == (0, 3)


@by_field
def test_conversion_keeps_shape_and_copies_storage(F):
    for shape in [(), (7,), (3, 4), (2, 0, 3)]:
        values = np.arange(math.prod(shape), dtype=np.int64).reshape(shape) - 3
        s = F(values)
        assert s.shape == shape and s.dtype == F.dtype
        assert_field_equal(F, s, values.astype(object))
    s = F([1, 2, 3])
    t = F(s)
    assert t is not s and np.array_equal(t, s)


@by_field
@pytest.mark.parametrize("bad", [1.5, [1.0, 2.0], np.array([0.5]), obj([1, 2.5]), "7", np.array(["a"])])
def test_conversion_rejects_non_integers(F, bad):
    with pytest.raises(TypeError):
        F(bad)


@by_field
def test_constructors(F):
    assert_field_equal(F, F.zeros((2, 3)), np.zeros((2, 3), dtype=object))
    assert_field_equal(F, F.ones(4), np.ones(4, dtype=object))
    assert_field_equal(F, F.full((2, 2), -1), np.full((2, 2), F.order - 1, dtype=object))
    assert_field_equal(F, F.full(3, 2**100), np.full(3, 2**100, dtype=object))
    a = F([[1, 2, 3]])
    assert_field_equal(F, F.zeros_like(a), np.zeros((1, 3), dtype=object))
    assert_field_equal(F, F.full_like(a, 9), np.full((1, 3), 9, dtype=object))
    assert F.zeros(()).shape == () and F.ones(()).shape == ()


# -- elementwise arithmetic ------------------------------------------------------------------------

BINARY = {
    "add": lambda x, y: x + y,
    "subtract": lambda x, y: x - y,
    "multiply": lambda x, y: x * y,
}


@by_field
@pytest.mark.parametrize("op", sorted(BINARY))
def test_binary_ops_on_all_pairs_of_edge_values(F, op):
    values = obj(edge(F))
    a = F(values.reshape(-1, 1))
    b = F(values.reshape(1, -1))
    before_a, before_b = a.copy(), b.copy()
    result = getattr(F, op)(a, b)  # broadcasting (E, 1) with (1, E)
    assert result.shape == (len(values), len(values))
    assert_field_equal(F, result, BINARY[op](values.reshape(-1, 1), values.reshape(1, -1)))
    assert np.array_equal(a, before_a) and np.array_equal(b, before_b)  # inputs untouched


@by_field
def test_unary_ops_on_edge_values(F):
    values = obj(edge(F))
    a = F(values)
    assert_field_equal(F, F.negative(a), -values)
    assert_field_equal(F, F.multiply(a, a), values * values)  # the squaring path
    for e in [0, 1, 2, 3, 5, 65537, 2**70 + 3, F.order - 1]:
        assert_field_equal(F, F.power(a, e), obj([pow(int(v), e, F.order) for v in values]))
    nonzero = values[values != 0]
    assert_field_equal(F, F.inverse(F(nonzero)), obj([pow(int(v), -1, F.order) for v in nonzero]))
    assert_field_equal(F, F.sum(a), sum(values))
    assert_field_equal(F, F.sum(F(np.stack([values, values[::-1]])), axis=0), values + values[::-1])
    assert_field_equal(F, F.dot(a, F(values[::-1])), int(np.dot(values, values[::-1])))
    assert_field_equal(F, F.dot(F(np.outer(values, values)), a), np.dot(np.outer(values, values), values))


@by_field
@pytest.mark.parametrize("shape", [(), (7,), (3, 4)])
def test_every_shape(F, shape):
    rng = random.Random(hash((F.order, shape)))
    x, y = random_ints(rng, F, shape), random_ints(rng, F, shape)
    a, b = F(x), F(y)
    for op, reference in BINARY.items():
        result = getattr(F, op)(a, b)
        assert result.shape == shape
        assert_field_equal(F, result, reference(x, y))
    assert F.negative(a).shape == shape
    assert_field_equal(F, F.negative(a), -x)
    assert_field_equal(F, F.power(a, 3), x * x * x)


@by_field
def test_broadcasting_scalars_and_arrays(F):
    rng = random.Random(7)
    x = random_ints(rng, F, (3, 4))
    a = F(x)
    s = rng.randrange(F.order)
    for op, reference in BINARY.items():
        f = getattr(F, op)
        assert_field_equal(F, f(a, s), reference(x, s))  # Python int
        assert_field_equal(F, f(s, a), reference(s, x))
        assert_field_equal(F, f(F(s), a), reference(s, x))  # 0-d storage
        assert_field_equal(F, f(a, F(x[0])), reference(x, x[0]))  # (3, 4) with (4,)
        assert_field_equal(F, f(F(x[:, :1]), F(x[:1])), reference(x[:, :1], x[:1]))  # (3, 1) with (1, 4)
        assert f(F(s), F(s)).shape == ()
        assert_field_equal(F, f(F(s), F(5)), reference(s, 5))
    with pytest.raises(ValueError):
        F.add(F.zeros(3), F.zeros(4))


@by_field
@SETTINGS
@given(data=st.lists(st.tuples(big_ints, big_ints, big_ints), min_size=1, max_size=12))
def test_arithmetic_matches_python_ints(F, data):
    x, y, z = (obj(column) for column in zip(*data, strict=True))
    a, b, c = F(x), F(y), F(z)
    assert_field_equal(F, F.add(a, b), x + y)
    assert_field_equal(F, F.subtract(a, b), x - y)
    assert_field_equal(F, F.multiply(a, b), x * y)
    assert_field_equal(F, F.negative(a), -x)
    assert_field_equal(F, F.sum(a), sum(x))
    assert_field_equal(F, F.dot(a, b), int(np.dot(x, y)))
    # Ring laws.
    assert np.array_equal(F.multiply(a, F.add(b, c)), F.add(F.multiply(a, b), F.multiply(a, c)))
    assert np.array_equal(F.multiply(a, b), F.multiply(b, a))
    assert np.array_equal(F.add(F.subtract(a, b), b), a)
    assert np.array_equal(F.multiply(F.multiply(a, b), c), F.multiply(a, F.multiply(b, c)))


@by_field
@SETTINGS
@given(value=big_ints, exponent=st.integers(min_value=0, max_value=2**130))
def test_power_and_inverse_match_python(F, value, exponent):
    a = F(value)
    assert_field_equal(F, F.power(a, exponent), pow(value, exponent, F.order))
    if value % F.order:
        assert_field_equal(F, F.inverse(a), pow(value, -1, F.order))


@by_field
def test_large_arrays_cross_chunk_boundaries(F):
    rng = random.Random(3)
    n = 2 * CHUNK + 123
    x = random_ints(rng, F, (n,))
    x[:50] = obj(edge(F) * 2)[:50]
    y = x[::-1].copy()
    a, b = F(x), F(y)
    for op, reference in BINARY.items():
        assert_field_equal(F, getattr(F, op)(a, b), reference(x, y))
    assert_field_equal(F, F.multiply(a, a), x * x)
    assert_field_equal(F, F.multiply(a, 12345678901234567), x * 12345678901234567)
    assert_field_equal(F, F.negative(a), -x)
    assert_field_equal(F, F.sum(a), sum(x))
    assert_field_equal(F, F.dot(a, b), int(np.dot(x, y)))


@by_field
def test_non_contiguous_inputs(F):
    rng = random.Random(4)
    x = random_ints(rng, F, (6, 10))
    a = F(x)
    assert_field_equal(F, F.add(a.T, a.T), x.T + x.T)
    assert_field_equal(F, F.multiply(a[::2, 1::3], a[1::2, 1::3]), x[::2, 1::3] * x[1::2, 1::3])
    assert_field_equal(F, F.sum(a.T, axis=1), x.T.sum(axis=1))
    assert_field_equal(F, F.dot(a.T, a), np.dot(x.T, x))
    assert_field_equal(F, F.power(a[:, ::4], 5), x[:, ::4] ** 5)
    assert_field_equal(F, F.negative(a.T), -x.T)
    assert F.to_float_signed(a.T).tolist() == F.to_float_signed(F(x.T)).tolist()
    shares = F.polynomial_shares(a.T, 2, [1, 2, 3])
    assert np.array_equal(F.recombine(shares, F.lagrange_coefficients([1, 2, 3])), F(x.T))
    odd = shares[:, ::2, 1:]  # non-contiguous shares
    assert np.array_equal(F.recombine(odd, F.lagrange_coefficients([1, 2, 3])), F(x.T[::2, 1:]))


@pytest.mark.parametrize("n", [0, 1, 5, 1025])
def test_inverse(n):
    F = MersenneField()
    rng = random.Random(n)
    x = obj([rng.randrange(1, P127) for _ in range(n)])
    inv = F.inverse(F(x))  # n > 1024 takes the vectorized Fermat path
    assert_field_equal(F, F.multiply(inv, F(x)), np.ones(n, dtype=object))
    with pytest.raises(ZeroDivisionError):
        F.inverse(F(np.append(x, 0)))
    with pytest.raises(ZeroDivisionError):
        F.inverse(0)


@by_field
def test_power_rejects_negative_exponents(F):
    with pytest.raises(ValueError):
        F.power(F(3), -1)
    assert_field_equal(F, F.power(F([0, 3]), 0), obj([1, 1]))


# -- sum and dot ---------------------------------------------------------------------------------------


@by_field
def test_sum_over_axes(F):
    rng = random.Random(5)
    x = random_ints(rng, F, (5, 7, 2))
    a = F(x)
    for axis in [None, 0, 1, 2, -1, (0, 1), (0, 2), (1, 2), (0, 1, 2), (-1, 0)]:
        expected = x.sum(axis=axis) if axis is not None else x.sum()
        result = F.sum(a, axis=axis)
        assert result.shape == np.shape(expected)
        assert_field_equal(F, result, expected)
    assert_field_equal(F, F.sum(F(9)), 9)
    assert_field_equal(F, F.sum(F.zeros((0, 3)), axis=0), np.zeros(3, dtype=object))
    assert_field_equal(F, F.sum(F.zeros((0,))), 0)
    with pytest.raises((ValueError, IndexError)):
        F.sum(a, axis=3)


@by_field
def test_sum_of_maximal_values_does_not_overflow(F):
    n = 3 * CHUNK + 1
    a = F.full(n, F.order - 1)
    assert_field_equal(F, F.sum(a), n * (F.order - 1))
    b = F.full((n, 2), F.order - 1)
    assert_field_equal(F, F.sum(b, axis=0), np.full(2, n * (F.order - 1), dtype=object))
    assert_field_equal(F, F.sum(b, axis=1), np.full(n, 2 * (F.order - 1), dtype=object))


@by_field
@pytest.mark.parametrize(
    "shapes",
    [
        ((5,), (5,)),
        ((3, 5), (5,)),
        ((5,), (5, 4)),
        ((3, 5), (5, 4)),
        ((2, 3, 5), (5, 4)),
        ((2, 5), (3, 5, 4)),
        ((0,), (0,)),
        ((3, 0), (0, 2)),
        ((), (4,)),
        ((4,), ()),
    ],
)
def test_dot_has_numpy_semantics(F, shapes):
    rng = random.Random(str(shapes))
    x, y = (random_ints(rng, F, shape) for shape in shapes)
    result = F.dot(F(x), F(y))
    expected = (
        np.dot(x, y)
        if x.size and y.size
        else np.zeros(np.dot(np.zeros(x.shape), np.zeros(y.shape)).shape, dtype=object)
    )
    assert result.shape == np.shape(expected)
    assert_field_equal(F, result, expected)


@by_field
def test_dot_misaligned(F):
    with pytest.raises(ValueError):
        F.dot(F.zeros((3, 4)), F.zeros((3, 4)))


def test_recombine_of_many_maximal_values_does_not_overflow():
    F = MersenneField()
    k = 300
    shares = F.full((k, 4), P127 - 1)
    coefficients = F.full(k, P127 - 1)
    assert_field_equal(F, F.recombine(shares, coefficients), np.full(4, k, dtype=object))  # (-1)(-1) = 1


def test_dot_longer_than_one_exact_float_accumulation():
    F = MersenneField()
    k = (1 << 21) + (1 << 12)  # float64 sums of 2**21 limb products are exact, not more
    a = F.full(k, P127 - 1)
    b = a.copy()
    b[-1] = F(P127 - 1 - 2**16)  # makes a limb-product sum odd, so float rounding would show
    assert_field_equal(F, F.dot(a, b), (k - 1) + (P127 - 1) * (P127 - 1 - 2**16))


def test_dot_exactness_with_maximal_values_and_blocking():
    F = MersenneField()
    k = 40000  # more than one contraction chunk
    a = F.full(k, P127 - 1)
    assert_field_equal(F, F.dot(a, a), k * (P127 - 1) ** 2)
    rng = random.Random(11)
    x = random_ints(rng, F, (70, 9))  # several output blocks
    y = random_ints(rng, F, (9, 70))
    assert_field_equal(F, F.dot(F(x), F(y)), np.dot(x, y))
    v = random_ints(rng, F, (300, 3))
    w = random_ints(rng, F, (3,))
    assert_field_equal(F, F.dot(F(v), F(w)), np.dot(v, w))
    assert_field_equal(F, F.dot(F(w), F(v.T)), np.dot(w, v.T))


# -- signed views --------------------------------------------------------------------------------------


@by_field
def test_to_float_signed_and_from_signed(F):
    p = F.order
    half = p // 2
    values = obj([0, 1, -1, 5, -5, 2**40 + 3, -(2**40), half, half + 1, p - 1])
    got = F.to_float_signed(F(values))
    expected = [float(v % p) if v % p <= half else float(v % p - p) for v in values]
    assert got.dtype == np.float64 and got.tolist() == expected
    if F.bits > 100:
        big = obj([2**70, -(2**70), 2**100 + 1, -(2**125)])
        assert F.to_float_signed(F(big)).tolist() == [float(v) for v in big]
    assert F.to_float_signed(F(-3)).shape == ()
    assert F.to_float_signed(F.zeros((2, 0))).shape == (2, 0)
    n = CHUNK + 5
    signed = np.arange(n, dtype=np.int64) - n // 2
    assert F.to_float_signed(F.from_signed(signed)).tolist() == signed.astype(np.float64).tolist()


# -- randomness ---------------------------------------------------------------------------------------


@by_field
def test_uniform_range_shape_and_freshness(F):
    for shape in [(), 5, (3, 4), (0,)]:
        u = F.uniform(shape)
        assert u.shape == ((shape,) if isinstance(shape, int) else shape) and u.dtype == F.dtype
        ints(F, u)  # checks 0 <= value < order
    a, b = F.uniform(64), F.uniform(64)
    assert not np.array_equal(a, b)


@by_field
def test_uniform_generator_is_reproducible(F):
    a = F.uniform((4, 5), generator=np.random.default_rng(42))
    b = F.uniform((4, 5), generator=np.random.default_rng(42))
    c = F.uniform((4, 5), generator=np.random.default_rng(43))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    ints(F, a)
    with pytest.raises(TypeError):
        F.uniform(3, generator=42)


def test_uniform_bits_are_balanced():
    F = MersenneField()
    n = 20000
    values = F.uniform(n)
    lo, hi = values["lo"], values["hi"]
    counts = [np.count_nonzero((lo >> np.uint64(i)) & np.uint64(1)) for i in range(64)]
    counts += [np.count_nonzero((hi >> np.uint64(i)) & np.uint64(1)) for i in range(63)]
    sigma = math.sqrt(n * 0.25)
    assert all(abs(c - n / 2) < 5 * sigma for c in counts), counts
    assert np.all(hi >> np.uint64(63) == 0)
    # Large requests (several chunks) are as balanced and in range.
    big = F.uniform(3 * CHUNK)
    ones = np.count_nonzero(big["hi"] & np.uint64(1 << 62))
    assert abs(ones - 1.5 * CHUNK) < 5 * math.sqrt(3 * CHUNK * 0.25)


def test_uniform_small_field_is_unbiased():
    F = PrimeField(5)
    counts = np.bincount(F.uniform(50000).astype(np.int64), minlength=5)
    assert counts.size == 5 and all(abs(c - 10000) < 5 * math.sqrt(50000 * 0.16) for c in counts), counts


@pytest.mark.parametrize("F", [MersenneField(), PrimeField(65521)], ids=["mersenne127", "prime16"])
def test_uniform_rejects_out_of_range_draws(F, monkeypatch):
    """The first draw is all ones (>= order after masking); rejection must draw again."""
    real = arithmetic._random_words
    calls = []

    def rigged(count, generator):
        calls.append(count)
        if len(calls) == 1:
            return np.full(count, 2**64 - 1, dtype=np.uint64)
        return real(count, generator)

    monkeypatch.setattr(arithmetic._random, "_random_words", rigged)
    u = F.uniform(10)
    assert len(calls) >= 2
    ints(F, u)  # every value below the order


# -- Shamir helpers -------------------------------------------------------------------------------------


@by_field
@pytest.mark.parametrize("degree", [0, 1, 2, 3, 4])
def test_shares_reconstruct_from_any_large_enough_subset(F, degree):
    rng = np.random.default_rng(degree)
    secret = F.uniform((2, 3), generator=rng)
    xs = [1, 2, 3, 4, 5, 6]
    shares = F.polynomial_shares(secret, degree, xs)
    assert shares.shape == (len(xs), 2, 3) and shares.dtype == F.dtype
    ints(F, shares)
    for subset in itertools.combinations(range(len(xs)), degree + 1):
        coefficients = F.lagrange_coefficients([xs[i] for i in subset])
        assert coefficients.shape == (degree + 1,)
        assert np.array_equal(F.recombine(shares[list(subset)], coefficients), secret)
        assert np.array_equal(Field.recombine(F, shares[list(subset)], coefficients), secret)
    if degree:
        # degree shares reveal nothing: interpolating through them misses the secret.
        secret = F.uniform(20)
        shares = F.polynomial_shares(secret, degree, xs)
        for subset in itertools.combinations(range(len(xs)), degree):
            guess = F.recombine(shares[list(subset)], F.lagrange_coefficients([xs[i] for i in subset]))
            assert not np.array_equal(guess, secret)
    else:
        assert all(np.array_equal(share, secret) for share in shares)


@by_field
def test_shares_are_fresh_and_generator_reproducible(F):
    secret = F([1, 2, 3])
    a = F.polynomial_shares(secret, 2, [1, 2, 3])
    b = F.polynomial_shares(secret, 2, [1, 2, 3])
    assert not np.array_equal(a, b)
    c = F.polynomial_shares(secret, 2, [1, 2, 3], generator=np.random.default_rng(5))
    d = F.polynomial_shares(secret, 2, [1, 2, 3], generator=np.random.default_rng(5))
    assert np.array_equal(c, d)


@by_field
def test_shares_at_unusual_points_and_high_degree(F):
    secret = F.uniform(50)
    xs = np.array([1, 7, 2**31 + 11, 2**40 + 3, 64], dtype=np.int64)  # large x: general path
    shares = F.polynomial_shares(secret, 4, xs)
    assert np.array_equal(F.recombine(shares, F.lagrange_coefficients(xs)), secret)
    xs = list(range(1, 42))  # degree 40 at x up to 41: lazy limbs must be carried mid-way
    shares = F.polynomial_shares(secret, 40, xs)
    assert np.array_equal(F.recombine(shares, F.lagrange_coefficients(xs)), secret)
    # x = 0 reveals the secret itself.
    assert np.array_equal(F.polynomial_shares(secret, 2, [0])[0], secret)
    with pytest.raises(ValueError):
        F.polynomial_shares(secret, -1, [1])


def test_shares_evaluate_the_polynomial():
    """Shares interpolate a polynomial whose value at another point is consistent."""
    F = MersenneField()
    n = 2 * CHUNK + 17  # chunked sharing
    secret = F.uniform(n)
    xs = [1, 2, 3, 4]
    shares = F.polynomial_shares(secret, 3, xs)
    assert np.array_equal(F.recombine(shares, F.lagrange_coefficients(xs)), secret)
    at5 = F.recombine(shares, F.lagrange_coefficients(xs, at=5))
    again = F.recombine(
        np.stack([shares[1], shares[2], shares[3], at5]), F.lagrange_coefficients([2, 3, 4, 5])
    )
    assert np.array_equal(again, secret)


@by_field
def test_lagrange_coefficients(F):
    # Known values: f(0) = 3 f(1) - 3 f(2) + f(3) for quadratics.
    assert_field_equal(F, F.lagrange_coefficients([1, 2, 3]), obj([3, -3, 1]))
    assert_field_equal(F, F.lagrange_coefficients(np.array([1, 2])), obj([2, -1]))
    assert_field_equal(F, F.lagrange_coefficients([4], at=0), obj([1]))
    assert_field_equal(F, F.lagrange_coefficients([1, 2, 3], at=2), obj([0, 1, 0]))
    with pytest.raises(ValueError, match="distinct"):
        F.lagrange_coefficients([1, 2, 1])
    with pytest.raises(ValueError, match="distinct"):
        F.lagrange_coefficients([1, F.order + 1])


@by_field
def test_recombine_many_shares_and_checks_shapes(F):
    secret = F.uniform(7)
    xs = list(range(1, 71))  # more than one accumulation group
    shares = F.polynomial_shares(secret, 69, xs)
    assert np.array_equal(F.recombine(shares, F.lagrange_coefficients(xs)), secret)
    rng = random.Random(9)
    k = 40
    x = random_ints(rng, F, (k, 5))
    c = random_ints(rng, F, (k,))
    c[3] = 0
    assert_field_equal(F, F.recombine(F(x), F(c)), np.dot(c, x))
    assert_field_equal(F, F.recombine(F(x[:, 0]), F(c)), np.dot(c, x[:, 0]))  # 0-d secrets
    with pytest.raises(ValueError):
        F.recombine(F(x), F(c[:-1]))


# -- wire format ---------------------------------------------------------------------------------------


@by_field
@pytest.mark.parametrize("shape", [(), (7,), (3, 4), (0,), (2, 0)])
def test_wire_round_trip(F, shape):
    a = F.uniform(shape)
    wire = F.to_wire(a)
    assert wire.dtype == np.uint64 and wire.ndim == 1 and wire.flags.c_contiguous
    assert wire.size == math.prod(shape) * (2 if isinstance(F, MersenneField) else 1)
    wire.setflags(write=False)
    back = F.from_wire(wire, shape)
    assert back.shape == shape and back.dtype == F.dtype and back.flags.writeable
    assert np.array_equal(back, a)
    assert np.array_equal(F.from_wire(wire.tobytes(), shape), a)
    assert np.array_equal(F.from_wire(bytearray(wire.tobytes()), list(shape)), a)


@by_field
def test_wire_is_a_copy_and_accepts_non_contiguous_storage(F):
    a = F(np.arange(12).reshape(3, 4))
    wire = F.to_wire(a.T)
    wire[...] = 0
    assert_field_equal(F, a, np.arange(12).reshape(3, 4).astype(object))
    assert np.array_equal(F.from_wire(F.to_wire(a.T), (4, 3)), a.T)


@by_field
def test_from_wire_rejects_bad_data(F):
    words_per = 2 if isinstance(F, MersenneField) else 1
    good = F.to_wire(F([1, 2, 3]))
    with pytest.raises(ValueError):
        F.from_wire(good, (4,))
    with pytest.raises(ValueError):
        F.from_wire(good[:-1], (3,))
    with pytest.raises(ValueError):
        F.from_wire(good.astype(np.int64), (3,))
    with pytest.raises(ValueError):
        F.from_wire(good.tobytes()[:-1], (3,))
    if isinstance(F, MersenneField):
        bad_values = [(2**64 - 1, 2**63 - 1), (0, 2**63), (5, 2**64 - 1)]  # p, >= 2**127
    else:
        bad_values = [(F.order,), (2**64 - 1,)]
    for bad in bad_values:
        wire = good.copy()
        wire[words_per : 2 * words_per] = bad
        with pytest.raises(ValueError, match="order"):
            F.from_wire(wire, (3,))
    largest = np.array([2**64 - 2, 2**63 - 1] if words_per == 2 else [F.order - 1], dtype=np.uint64)
    assert_field_equal(F, F.from_wire(largest, ()), F.order - 1)
