"""Encodings: round trips, the signed interpretation, exactness limits and refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cicada_async.arithmetic import MersenneField, PrimeField
from cicada_async.encoding import Bits, Boolean, FixedPoint, Identity

P127 = 2**127 - 1
FIELDS = [MersenneField(), PrimeField(2**61 - 1), PrimeField(2**64 - 59)]
IDS = ["mersenne127", "prime61", "prime64"]
by_field = pytest.mark.parametrize("F", FIELDS, ids=IDS)
ENCODINGS = [FixedPoint(), FixedPoint(precision=8), Identity(), Boolean(), Bits()]


# -- common behaviour ---------------------------------------------------------------------------------


def test_equality_hash_and_repr():
    assert FixedPoint() == FixedPoint(16) == FixedPoint(precision=16)
    assert hash(FixedPoint()) == hash(FixedPoint(16))
    assert FixedPoint(8) != FixedPoint(16)
    assert FixedPoint() != Identity() and Identity() == Identity() and Boolean() != Bits()
    assert len({Identity(), Identity(), Boolean(), Bits(), Bits(), FixedPoint(), FixedPoint(16)}) == 4
    assert repr(FixedPoint()) == "FixedPoint(precision=16)"
    assert repr(FixedPoint(precision=3)) == "FixedPoint(precision=3)"
    assert [repr(e) for e in (Identity(), Boolean(), Bits())] == ["Identity()", "Boolean()", "Bits()"]
    assert FixedPoint().precision == 16 and FixedPoint(0).precision == 0


def test_fixed_point_rejects_bad_precision():
    with pytest.raises(ValueError):
        FixedPoint(-1)
    with pytest.raises(TypeError):
        FixedPoint(1.5)
    with pytest.raises(TypeError):
        FixedPoint(True)


@by_field
@pytest.mark.parametrize("encoding", ENCODINGS, ids=repr)
def test_none_passes_through(F, encoding):
    assert encoding.encode(None, F) is None
    assert encoding.decode(None, F) is None


@by_field
@pytest.mark.parametrize("encoding", ENCODINGS, ids=repr)
def test_decode_checks_the_storage_dtype(F, encoding):
    other = PrimeField(65521) if isinstance(F, MersenneField) else MersenneField()
    with pytest.raises(ValueError, match="dtype"):
        encoding.decode(other.zeros(3), F)
    with pytest.raises(ValueError, match="dtype"):
        encoding.decode(np.zeros(3, dtype=np.int64), F)
    with pytest.raises(ValueError):
        encoding.decode([0, 1], F)


# -- FixedPoint ----------------------------------------------------------------------------------------

VALUES = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    -0.25,
    3.14159,
    -2.71828,
    1e6,
    -1e6,
    2.0**40 + 0.3,
    -(2.0**40) - 0.7,
    2.0**-17,
    -(2.0**-15),
    1234.56789,
    8.0,
]


@by_field
@pytest.mark.parametrize("precision", [0, 8, 16, 20])
@pytest.mark.parametrize("shape", [(), (16,), (4, 4)])
def test_fixed_point_round_trip(F, precision, shape):
    encoding = FixedPoint(precision)
    fits = [v if abs(v) * 2**precision < 2 ** (F.bits - 2) else 0.75 for v in VALUES]
    x = np.array(fits).reshape(shape) if shape else np.array(VALUES[6])
    storage = encoding.encode(x, F)
    assert storage.shape == x.shape and storage.dtype == F.dtype
    y = encoding.decode(storage, F)
    assert isinstance(y, np.ndarray) and y.dtype == np.float64 and y.shape == x.shape
    assert np.all(np.abs(y - x) <= 2.0 ** -(precision + 1))
    # The encoding is the nearest integer to x * 2**precision, negative values as order - |v|.
    expected = [round(v * 2**precision) % F.order for v in np.ravel(x).tolist()]
    assert F.to_ints(storage).ravel().tolist() == expected


@by_field
def test_fixed_point_known_values(F):
    encoding = FixedPoint()
    assert F.to_ints(encoding.encode([1.0, -1.0, 0.5, 3 * 2.0**-17, 5 * 2.0**-17], F)).tolist() == [
        65536,
        F.order - 65536,
        32768,
        2,
        2,  # ties go to the even neighbour
    ]
    assert encoding.decode(F([65536, -32768, 1, -1, 0]), F).tolist() == [
        1.0,
        -0.5,
        2.0**-16,
        -(2.0**-16),
        0.0,
    ]
    # Values above order // 2 decode as negative.
    assert encoding.decode(F(F.order // 2 + 1), F) < 0 < encoding.decode(F(F.order // 2), F)
    # Integers, bools and lists are accepted.
    assert encoding.decode(encoding.encode(np.array([3, -4], dtype=np.int32), F), F).tolist() == [3.0, -4.0]
    assert encoding.decode(encoding.encode([True, False], F), F).tolist() == [1.0, 0.0]
    assert encoding.decode(encoding.encode(np.array([1.5, -2], dtype=object), F), F).tolist() == [1.5, -2.0]


@by_field
@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.floats(min_value=-(2.0**40), max_value=2.0**40, allow_nan=False), min_size=1, max_size=8
    )
)
def test_fixed_point_round_trip_is_within_half_a_step(F, values):
    encoding = FixedPoint()
    x = np.array(values)
    y = encoding.decode(encoding.encode(x, F), F)
    assert np.all(np.abs(y - x) <= 2.0**-17)


def test_fixed_point_large_values_in_the_127_bit_field_are_exact():
    F = MersenneField()
    encoding = FixedPoint()
    x = np.array([2.0**100, -(2.0**100) - 2.0**60, 2.0**47, 3.0, -(2.0**108) * 1.5])
    storage = encoding.encode(x, F)  # beyond int64 after scaling: the exact slow path
    assert F.to_ints(storage).tolist() == [int(v * 2**16) % P127 for v in x]
    assert encoding.decode(storage, F).tolist() == x.tolist()


@pytest.mark.parametrize(
    ("F", "largest_ok", "smallest_bad"),
    [
        (MersenneField(), 2.0**109 * (1 - 2.0**-52), 2.0**109),  # |x| * 2**16 < 2**125
        (PrimeField(2**61 - 1), 2.0**43 - 1, 2.0**43),  # |x| * 2**16 < 2**59
        (PrimeField(65521), 2.0**-2 * 3, 1.0),  # 2**-2 * 3 * 2**16 < 2**14 fails: precision too high
    ],
    ids=["mersenne127", "prime61", "prime16"],
)
def test_fixed_point_overflow_is_refused(F, largest_ok, smallest_bad):
    encoding = FixedPoint()
    if F.bits > 20:
        assert encoding.decode(encoding.encode([largest_ok, -largest_ok], F), F).tolist() == [
            largest_ok,
            -largest_ok,
        ]
    for bad in [smallest_bad, -smallest_bad, 1e300, -1e308]:
        with pytest.raises(ValueError, match="cannot encode") as info:
            encoding.encode(np.array([0.0, bad, 1.0]), F)
        assert repr(bad) in str(info.value) or str(bad) in str(info.value)
    assert FixedPoint(0).encode([4095.0], PrimeField(65521)) is not None  # fits without fraction bits


@by_field
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_fixed_point_refuses_non_finite_values(F, bad):
    with pytest.raises(ValueError, match="finite") as info:
        FixedPoint().encode(np.array([1.0, bad]), F)
    assert str(bad) in str(info.value)
    with pytest.raises(ValueError, match="finite"):
        FixedPoint().encode(bad, F)


@by_field
def test_fixed_point_refuses_non_numbers(F):
    for bad in [
        np.array(["1.5"]),
        np.array([1 + 2j]),
        np.array([object()], dtype=object),
        np.array([2**2000], dtype=object),
    ]:
        with pytest.raises(ValueError):
            FixedPoint().encode(bad, F)


# -- Identity ------------------------------------------------------------------------------------------


@by_field
def test_identity_round_trip(F):
    encoding = Identity()
    values = [0, 1, -1, 2**63 - 1, -(2**63), 12345, F.order - 1]
    for x in [np.array(values[:6], dtype=np.int64), np.array(values, dtype=object), values, -7]:
        storage = encoding.encode(x, F)
        assert storage.dtype == F.dtype and storage.shape == np.shape(x)
        decoded = encoding.decode(storage, F)
        assert decoded.dtype == object and decoded.shape == np.shape(x)
        assert all(type(v) is int for v in decoded.flat)
        assert decoded.tolist() == np.asarray(np.asarray(x, dtype=object) % F.order, dtype=object).tolist()
    huge = np.array([2**200 + 5, -(2**190)], dtype=object)
    assert encoding.decode(encoding.encode(huge, F), F).tolist() == [
        (2**200 + 5) % F.order,
        -(2**190) % F.order,
    ]
    assert encoding.decode(encoding.encode(np.array([2**64 - 1], dtype=np.uint64), F), F).tolist() == [
        (2**64 - 1) % F.order
    ]
    assert encoding.decode(encoding.encode(np.array([3.0, -2.0]), F), F).tolist() == [3, F.order - 2]


@by_field
@pytest.mark.parametrize(
    "bad", [np.array([1.5]), np.array([math.nan]), np.array([1, 2.5], dtype=object), np.array(["7"])]
)
def test_identity_refuses_non_integers(F, bad):
    with pytest.raises(ValueError, match="cannot encode"):
        Identity().encode(bad, F)


# -- Boolean and Bits ------------------------------------------------------------------------------------


@by_field
def test_boolean(F):
    encoding = Boolean()
    x = np.array([True, 0, 3, -1, 0.0, "", "x", None], dtype=object)
    storage = encoding.encode(x, F)
    assert F.to_ints(storage).tolist() == [1, 0, 1, 1, 0, 0, 1, 0]
    decoded = encoding.decode(storage, F)
    assert decoded.dtype == np.bool_ and decoded.tolist() == [
        True,
        False,
        True,
        True,
        False,
        False,
        True,
        False,
    ]
    assert encoding.decode(F([[5, 0], [F.order - 1, 1]]), F).tolist() == [[True, False], [True, True]]
    scalar = encoding.decode(encoding.encode(True, F), F)
    assert isinstance(scalar, np.ndarray) and scalar.shape == () and bool(scalar) is True
    assert encoding.decode(encoding.encode(np.zeros((2, 0)), F), F).shape == (2, 0)


@by_field
def test_bits(F):
    encoding = Bits()
    for x in [
        np.array([0, 1, 1, 0], dtype=np.int64),
        np.array([False, True, True, False]),
        [0.0, 1.0, 1.0, 0.0],
        np.array([0, 1, 1, 0], dtype=object),
        np.array([0, 1, 1, 0], dtype=np.uint8),
    ]:
        storage = encoding.encode(x, F)
        assert F.to_ints(storage).tolist() == [0, 1, 1, 0]
        decoded = encoding.decode(storage, F)
        assert decoded.dtype == np.uint8 and decoded.tolist() == [0, 1, 1, 0]
    assert encoding.decode(encoding.encode(np.eye(3, dtype=np.int64), F), F).tolist() == np.eye(3).tolist()
    assert encoding.decode(encoding.encode(1, F), F).shape == ()


@by_field
@pytest.mark.parametrize("bad", [[0, 2], [-1], [0.5], [1, None], np.array(["1"])])
def test_bits_refuses_other_values(F, bad):
    with pytest.raises(ValueError):
        Bits().encode(np.array(bad, dtype=object) if not isinstance(bad, np.ndarray) else bad, F)


@by_field
def test_bits_decode_refuses_other_values(F):
    for values in [[0, 1, 2], [F.order - 1], [0, 0, 1 << 40]]:
        with pytest.raises(ValueError, match="0 and 1"):
            Bits().decode(F(values), F)
