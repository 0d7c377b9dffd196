"""The value codec: every type SPEC lists, round trips, refusals, and fuzzing."""

from __future__ import annotations

import enum
import math
import struct

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cicada_async._core import codec
from cicada_async._core.codec import decode, encode
from cicada_async.errors import RemoteProtocolError


def roundtrip(value):
    encoded = encode(value)
    assert encoded.nbytes == sum(memoryview(p).nbytes for p in encoded.parts)
    return decode(encoded.tobytes())


@pytest.mark.parametrize(
    "value",
    [
        None, True, False, 0, 1, -1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**200, -(3**150),
        0.0, -0.0, 1.5, float("inf"), -float("inf"), "", "héllo ✓", b"", b"\x00\xff" * 10,
        [], (), {}, [1, "a", None], (1, (2, (3,))), {"a": [1, 2], "b": {"c": (None,)}},
        [[], [()], ((),)],
    ],
)
def test_scalars_and_containers(value):
    result = roundtrip(value)
    assert result == value
    assert type(result) is type(value)


def test_nan_and_negative_zero():
    assert math.isnan(roundtrip(float("nan")))
    assert math.copysign(1, roundtrip(-0.0)) == -1


def test_tuples_and_lists_stay_distinct():
    value = [(1, [2, (3,)]), [4]]
    result = roundtrip(value)
    assert result == value
    assert isinstance(result[0], tuple) and isinstance(result[0][1], list) and isinstance(result[1], list)


DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64", "complex64", "complex128"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (1,), (7,), (3, 4), (2, 0, 3), (2, 3, 4, 5)])
def test_arrays_keep_dtype_and_shape(dtype, shape):
    rng = numpy.random.default_rng(0)
    array = numpy.asarray(rng.random(shape) * 100).astype(dtype)
    result = roundtrip(array)
    assert isinstance(result, numpy.ndarray)
    assert result.dtype == numpy.dtype(dtype)
    assert result.shape == shape
    numpy.testing.assert_array_equal(result, array)


def test_big_endian_and_non_contiguous_arrays():
    big = numpy.arange(10, dtype=">i4")
    result = roundtrip(big)
    numpy.testing.assert_array_equal(result, big)
    assert result.dtype == numpy.dtype("int32")
    strided = numpy.arange(100.0).reshape(10, 10)[::2, 1::3]
    numpy.testing.assert_array_equal(roundtrip(strided), strided)
    fortran = numpy.asfortranarray(numpy.arange(12).reshape(3, 4))
    numpy.testing.assert_array_equal(roundtrip(fortran), fortran)


def test_numpy_scalars_keep_their_type():
    for value in [numpy.float64(1.25), numpy.int32(-7), numpy.uint64(2**64 - 1), numpy.bool_(True),
                  numpy.complex64(1 + 2j), numpy.float16(0.5)]:
        result = roundtrip(value)
        assert type(result) is type(value)
        assert result == value


def test_large_arrays_are_sent_from_the_callers_buffer():
    array = numpy.arange(1 << 16, dtype=numpy.float64)
    encoded = encode({"x": array, "y": 1})
    views = [part for part in encoded.parts if isinstance(part, memoryview)]
    assert len(views) == 1 and numpy.shares_memory(numpy.asarray(views[0]), array)
    assert encoded.borrowed
    assert not encode(numpy.arange(10)).borrowed
    assert not encode(b"x" * (1 << 20)).borrowed  # bytes are immutable: nothing to protect
    numpy.testing.assert_array_equal(decode(encoded.tobytes())["x"], array)


def test_received_arrays_are_views_on_the_payload_and_aligned():
    array = numpy.arange(1000, dtype=numpy.float64)
    payload = bytearray(encode(["pad", array]).tobytes())
    result = decode(payload)[1]
    assert numpy.shares_memory(result, numpy.frombuffer(payload, dtype=numpy.uint8))
    base = numpy.frombuffer(payload, numpy.uint8).__array_interface__["data"][0]
    offset = result.__array_interface__["data"][0] - base
    assert offset % 16 == 0
    read_only = decode(bytes(payload))[1]
    assert not read_only.flags.writeable


class Color(enum.IntEnum):
    RED = 3


class MyList(list):
    pass


@pytest.mark.parametrize(
    "value, message",
    [
        (object(), "cannot travel"),
        ({1: "a"}, "keys must be str"),
        ({1, 2}, "cannot travel"),
        (numpy.array(["a", "b"]), "dtype"),
        (numpy.array([object()]), "dtype"),
        (numpy.zeros(2, dtype=[("a", "i4")]), "dtype"),
        (numpy.ma.array([1, 2]), "cannot travel"),
        ([1, 2, lambda: 0], "cannot travel"),
        (MyList([1]), "cannot travel"),
        (1 + 2j, "cannot travel"),
        (numpy.datetime64("2020-01-01"), "dtype"),
    ],
)
def test_refusals_at_the_sender(value, message):
    with pytest.raises(TypeError, match=message):
        encode(value)


def test_subclasses_of_builtin_scalars_travel_as_the_base_type():
    assert roundtrip(Color.RED) == 3 and type(roundtrip(Color.RED)) is int
    assert type(roundtrip(numpy.str_("x"))) is str


def test_depth_and_item_limits(monkeypatch):
    deep: list = []
    for _ in range(codec.MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(ValueError, match="deeper"):
        encode(deep)
    monkeypatch.setattr(codec, "MAX_ITEMS", 100)
    with pytest.raises(ValueError, match="items"):
        encode(list(range(200)))


def test_decoder_rejects_deep_nesting_and_lying_counts():
    deep = bytes([8]) + struct.pack("<I", 1)
    with pytest.raises(RemoteProtocolError, match="deeper"):
        decode(deep * (codec.MAX_DEPTH + 5) + b"\x00")
    with pytest.raises(RemoteProtocolError, match="count"):
        decode(bytes([8]) + struct.pack("<I", 2**31))  # a list claiming 2**31 items in 5 bytes


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "truncated"),
        (b"\x03\x01", "truncated"),
        (b"\x63", "unknown type"),
        (b"\x00\x00", "trailing"),
        (b"\x06" + struct.pack("<I", 2) + b"\xff\xfe", "malformed"),
        (b"\x0b\x63\x01\x00" + struct.pack("<Q", 1), "dtype"),
        (b"\x0b\x0b\x01\x00" + struct.pack("<Q", 2**60), "truncated"),
        (b"\x0b\x0b\x30\x00", "dimensions"),
        (b"\x0c\x63", "dtype"),
        (b"\x0a" + struct.pack("<I", 1) + struct.pack("<I", 5) + b"ab", "truncated"),
    ],
)
def test_malformed_payloads(payload, message):
    with pytest.raises(RemoteProtocolError, match=message):
        decode(payload)


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary()
    | hnp.arrays(st.sampled_from([numpy.int64, numpy.float32, numpy.uint8, numpy.bool_]),
                 hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)),
    lambda children: st.lists(children, max_size=4) | st.tuples(children, children)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


def assert_same(a, b):
    if isinstance(a, numpy.ndarray):
        assert isinstance(b, numpy.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        numpy.testing.assert_array_equal(a, b)
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, dict):
        assert type(b) is dict and a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    else:
        assert type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(values)
def test_round_trip_property(value):
    assert_same(roundtrip(value), value)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_decoder_only_raises_remote_protocol_error(data):
    try:
        decode(data)
    except RemoteProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(values, st.data())
def test_fuzz_mutated_valid_payloads(value, data):
    payload = bytearray(encode(value).tobytes())
    if payload:
        for _ in range(data.draw(st.integers(1, 4))):
            index = data.draw(st.integers(0, len(payload) - 1))
            payload[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(payload)))
    try:
        decode(bytes(payload[:cut]))
    except RemoteProtocolError:
        pass
