"""Values to bytes and back, without pickle.  Sans-IO and deterministic.

What travels: ``None``, ``bool``, ``int`` (any size), ``float``, ``str``, ``bytes``,
``list``, ``tuple`` (kept distinct from lists), ``dict`` with ``str`` keys, numpy arrays of
bool, integer, floating and complex dtypes (any shape, 0-d included; dtype and shape kept)
and numpy scalars of those dtypes.  Anything else raises :class:`TypeError` from
:func:`encode`, before anything has been sent.  Subclasses of ``int``/``float``/``str``
(e.g. an ``IntEnum``) travel as the base type.

Layout: one type byte, then the type's fields, all little-endian::

    0x00 None     0x01 False    0x02 True
    0x03 int      int64
    0x04 bigint   u32 n, n bytes two's complement
    0x05 float    float64
    0x06 str      u32 n, n bytes UTF-8
    0x07 bytes    u64 n, n bytes
    0x08 list     u32 count, items
    0x09 tuple    u32 count, items
    0x0A dict     u32 count, (u32 n, n bytes UTF-8 key, value) * count
    0x0B array    u8 dtype, u8 ndim, u8 padding, u64 * ndim shape, padding, raw data
    0x0C scalar   u8 dtype, raw data

Array data starts on a 16-byte boundary of the payload, so a received array can be a view
on the payload buffer rather than a copy.  Large arrays (and bytes) are returned by
:func:`encode` as separate ``memoryview`` parts so they can be written to the socket
without a Python-level copy.

Decoding never executes anything, validates every length against the bytes actually present,
bounds nesting depth and the number of decoded items (so a small payload cannot expand into
a huge object graph), and raises only :class:`~cicada_async.errors.RemoteProtocolError`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy

from ..errors import RemoteProtocolError

__all__ = ["CHECK_EVERY", "MAX_DEPTH", "MAX_ITEMS", "DecodeStopped", "Encoded", "decode", "decode_counted", "encode",
           "is_bulk"]

MAX_DEPTH = 64
"""Deepest nesting of containers accepted (and produced)."""
MAX_ITEMS = 1 << 24
"""Most values (containers and scalars counted once each) in one message; use arrays for bulk."""
CHECK_EVERY = 1 << 14
"""How often (in values) a decode outside the event loop checks whether to stop."""
ZERO_COPY = 16 * 1024
"""Arrays and bytes at least this large are sent from the caller's buffer, not copied."""
ALIGN = 16

_NONE, _FALSE, _TRUE, _INT, _BIGINT, _FLOAT, _STR, _BYTES = range(8)
_LIST, _TUPLE, _DICT, _ARRAY, _SCALAR = range(8, 13)

_INT_BYTE = bytes([_INT])
_FLOAT_BYTE = bytes([_FLOAT])
_NONE_BYTES = bytes([_NONE])
_U8 = struct.Struct("<B")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_ARRAY_HEAD = struct.Struct("<BBB")

_DTYPES = [
    numpy.dtype(name).newbyteorder("<")
    for name in (
        "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64", "complex64", "complex128",
    )
]
_DTYPE_CODE = {dtype: code for code, dtype in enumerate(_DTYPES)}
_DTYPE_CODE.update({dtype.newbyteorder("="): code for code, dtype in enumerate(_DTYPES)})
_DTYPE_CODE.update({dtype.newbyteorder("|"): code for code, dtype in enumerate(_DTYPES)})

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1

# Small 1-d arrays of the wire dtypes (shares travel as these): their whole head, built once.
# Layout as in _encode_array: type, dtype code, ndim 1, padding 4, u64 length, 4 zero bytes.
_VECTOR_HEAD = 16
_VECTOR_PREFIX: dict[tuple[numpy.dtype, int], bytes] = {}
_VECTOR_DTYPE: dict[bytes, tuple[numpy.dtype, int]] = {}
for _code in (_DTYPES.index(numpy.dtype("<u8")), _DTYPES.index(numpy.dtype("<i8")), _DTYPES.index(numpy.dtype("<f8"))):
    _dtype = _DTYPES[_code]
    for _length in range(1, 65):
        _head = bytes([_ARRAY, _code, 1, 4]) + _U64.pack(_length) + bytes(4)
        for _variant in {_dtype, _dtype.newbyteorder("="), _dtype.newbyteorder("<")}:
            _VECTOR_PREFIX[(_variant, _length)] = _head
        _VECTOR_DTYPE[_head] = (_dtype, _length)


class Encoded:
    """An encoded value: ``parts`` (bytes or memoryviews) whose concatenation is the payload.

    ``borrowed`` is true when some part is a view on the caller's memory (a large array or
    bytes object), which must not be modified until the payload has been written out.
    """

    __slots__ = ("borrowed", "nbytes", "parts")

    def __init__(self, parts: list[bytes | memoryview], nbytes: int, borrowed: bool) -> None:
        self.parts = parts
        self.nbytes = nbytes
        self.borrowed = borrowed

    def tobytes(self) -> bytes:
        """Return the payload as one bytes object (copies)."""
        return b"".join(self.parts)


class _Writer:
    __slots__ = ("borrowed", "items", "out", "parts", "position")

    def __init__(self) -> None:
        self.out = bytearray()
        self.parts: list[bytes | memoryview] = []
        self.position = 0  # bytes in finished parts
        self.items = 0
        self.borrowed = False

    def borrow(self, view: memoryview, mutable: bool = True) -> None:
        if self.out:
            self.parts.append(bytes(self.out))
            self.position += len(self.out)
            self.out = bytearray()
        self.parts.append(view)
        self.position += view.nbytes
        self.borrowed = self.borrowed or mutable

    def offset(self) -> int:
        return self.position + len(self.out)


def encode(value: Any) -> Encoded:
    """Encode ``value`` for the wire.

    Raises
    ------
    TypeError
        If ``value`` contains an object of a type that cannot travel (see module docs).
    ValueError
        If ``value`` nests deeper than :data:`MAX_DEPTH` or holds more than
        :data:`MAX_ITEMS` values.
    """
    kind = type(value)
    if kind is numpy.ndarray and value.ndim == 1 and value.nbytes < ZERO_COPY:
        prefix = _VECTOR_PREFIX.get((value.dtype, len(value)))
        if prefix is not None and value.flags.c_contiguous:  # a small vector: the commonest share
            data = prefix + value.tobytes()
            return Encoded([data], len(data), False)
    if kind is int and _INT64_MIN <= value <= _INT64_MAX:
        return Encoded([_INT_BYTE + _I64.pack(value)], 9, False)
    if kind is float:
        return Encoded([_FLOAT_BYTE + _F64.pack(value)], 9, False)
    if value is None:
        return Encoded([_NONE_BYTES], 1, False)
    writer = _Writer()
    _encode(writer, value, 0)
    if writer.out or not writer.parts:
        writer.parts.append(bytes(writer.out))
        writer.position += len(writer.out)
    return Encoded(writer.parts, writer.position, writer.borrowed)


def _encode(w: _Writer, value: Any, depth: int) -> None:
    w.items += 1
    if w.items > MAX_ITEMS:
        raise ValueError(f"value holds more than {MAX_ITEMS} items; send bulk data as a numpy array")
    out = w.out
    kind = type(value)
    if value is None:
        out.append(_NONE)
    elif kind is bool:
        out.append(_TRUE if value else _FALSE)
    elif kind is int or (isinstance(value, int) and not isinstance(value, (bool, numpy.integer))):
        value = int(value)
        if _INT64_MIN <= value <= _INT64_MAX:
            out.append(_INT)
            out += _I64.pack(value)
        else:
            size = (value.bit_length() + 8) // 8  # room for the sign bit
            out.append(_BIGINT)
            out += _U32.pack(size)
            out += value.to_bytes(size, "little", signed=True)
    elif kind is float or (isinstance(value, float) and not isinstance(value, numpy.floating)):
        out.append(_FLOAT)
        out += _F64.pack(value)
    elif isinstance(value, str):
        data = str.encode(value, "utf-8")
        out.append(_STR)
        out += _U32.pack(len(data))
        out += data
    elif kind is bytes or kind is bytearray or kind is memoryview:
        view = memoryview(value).cast("B") if kind is memoryview else memoryview(value)
        out.append(_BYTES)
        out += _U64.pack(view.nbytes)
        if view.nbytes >= ZERO_COPY:
            w.borrow(view, mutable=kind is not bytes)  # bytes are immutable: nothing to protect
        else:
            out += view
    elif kind is list or kind is tuple:
        if depth >= MAX_DEPTH:
            raise ValueError(f"value nests deeper than {MAX_DEPTH} levels")
        out.append(_LIST if kind is list else _TUPLE)
        out += _U32.pack(len(value))
        for item in value:
            _encode(w, item, depth + 1)
    elif kind is dict:
        if depth >= MAX_DEPTH:
            raise ValueError(f"value nests deeper than {MAX_DEPTH} levels")
        out.append(_DICT)
        out += _U32.pack(len(value))
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"dict keys must be str to travel, got {type(key).__name__}")
            data = str.encode(key, "utf-8")
            out += _U32.pack(len(data))
            out += data
            _encode(w, item, depth + 1)
            out = w.out
    elif kind is numpy.ndarray:
        _encode_array(w, value)
    elif isinstance(value, numpy.generic) and not isinstance(value, (numpy.void, numpy.object_)):
        code = _dtype_code(value.dtype)
        out.append(_SCALAR)
        out.append(code)
        out += numpy.asarray(value, dtype=_DTYPES[code]).tobytes()
    elif isinstance(value, (list, tuple, dict)):
        raise TypeError(f"{type(value).__name__} (a subclass of {kind.__mro__[1].__name__}) cannot travel")
    else:
        raise TypeError(f"values of type {kind.__module__}.{kind.__qualname__} cannot travel")


def _dtype_code(dtype: numpy.dtype) -> int:
    code = _DTYPE_CODE.get(dtype)
    if code is None:
        code = _DTYPE_CODE.get(dtype.newbyteorder("<")) if dtype.byteorder == ">" else None
    if code is None:
        raise TypeError(f"numpy arrays of dtype {dtype} cannot travel (numeric and bool only)")
    return code


def _encode_array(w: _Writer, array: numpy.ndarray) -> None:
    code = _dtype_code(array.dtype)
    if array.ndim > 32:
        raise ValueError("arrays with more than 32 dimensions cannot travel")
    wire_dtype = _DTYPES[code]
    if array.dtype != wire_dtype or not array.flags.c_contiguous:
        array = numpy.ascontiguousarray(array, dtype=wire_dtype)
    out = w.out
    start = w.offset() + 1 + _ARRAY_HEAD.size + 8 * array.ndim
    padding = -start % ALIGN
    out.append(_ARRAY)
    out += _ARRAY_HEAD.pack(code, array.ndim, padding)
    for extent in array.shape:
        out += _U64.pack(extent)
    out += bytes(padding)
    view = memoryview(array.reshape(-1).view(numpy.uint8))  # type: ignore[arg-type]
    if view.nbytes >= ZERO_COPY:
        w.borrow(view)
    else:
        out += view


def decode(payload: bytes | bytearray | memoryview, *, max_items: int = MAX_ITEMS) -> Any:
    """Decode one value from ``payload``.

    Arrays are views on ``payload`` where alignment allows: read-only when ``payload`` is
    ``bytes``.  Raises :class:`~cicada_async.errors.RemoteProtocolError` on malformed input,
    or if the value holds more than ``max_items`` values (see :data:`MAX_ITEMS`).
    """
    return decode_counted(payload, max_items=max_items)[0]


def decode_counted(payload: bytes | bytearray | memoryview, *, max_items: int = MAX_ITEMS,
                   stop: Callable[[], bool] | None = None) -> tuple[Any, int]:
    """:func:`decode`, also returning how many values (containers and scalars, an array
    counting as one) the result holds: what it costs in memory beyond the payload's bytes.

    ``stop``, if given, is called every :data:`CHECK_EVERY` values; decoding raises
    :class:`DecodeStopped` when it returns true (for a decode running outside the event loop
    that nobody waits for any more).
    """
    size = len(payload)
    if size > _VECTOR_HEAD and type(payload) is bytes and payload[0] == _ARRAY and payload[2] == 1:
        known = _VECTOR_DTYPE.get(payload[:_VECTOR_HEAD])  # a small vector of a known length
        if known is not None and size == _VECTOR_HEAD + known[1] * known[0].itemsize:
            return numpy.frombuffer(payload, dtype=known[0], offset=_VECTOR_HEAD), 1
    if size == 9 and type(payload) is bytes:  # fast paths for the commonest small values
        code = payload[0]
        if code == _INT:
            return _I64.unpack_from(payload, 1)[0], 1
        if code == _FLOAT:
            return _F64.unpack_from(payload, 1)[0], 1
    elif size == 1 and type(payload) is bytes:
        code = payload[0]
        if code == _NONE:
            return None, 1
        if code == _TRUE or code == _FALSE:
            return code == _TRUE, 1
    view = memoryview(payload)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    reader = _Reader(view, min(max_items, MAX_ITEMS), stop)
    try:
        value = reader.value(0)
    except RemoteProtocolError:
        raise
    except (struct.error, IndexError, ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise RemoteProtocolError(f"malformed payload: {exc}") from exc
    if reader.position != len(view):
        raise RemoteProtocolError(f"malformed payload: {len(view) - reader.position} trailing bytes")
    return value, reader.items


def is_bulk(payload: bytes | bytearray | memoryview) -> bool:
    """Whether ``payload`` encodes one array or one bytes object: decoding it costs the same
    whatever its size (a view, or one copy), never one step per element."""
    return len(payload) > 0 and payload[0] in (_ARRAY, _BYTES)


class DecodeStopped(Exception):
    """A decode was stopped by its ``stop`` callback (see :func:`decode_counted`)."""


class _Reader:
    __slots__ = ("items", "limit", "position", "stop", "view")

    def __init__(self, view: memoryview, limit: int = MAX_ITEMS, stop: Callable[[], bool] | None = None) -> None:
        self.view = view
        self.position = 0
        self.items = 0
        self.limit = limit
        self.stop = stop

    def take(self, count: int) -> int:
        """Reserve ``count`` bytes; return their start offset."""
        start = self.position
        end = start + count
        if end > len(self.view):
            raise RemoteProtocolError(
                f"malformed payload: truncated (needs {end} bytes, has {len(self.view)})"
            )
        self.position = end
        return start

    def count(self) -> int:
        (number,) = _U32.unpack_from(self.view, self.take(4))
        # Every item takes at least one byte: a count beyond the remaining bytes is a lie.
        if number > len(self.view) - self.position:
            raise RemoteProtocolError(f"malformed payload: count {number} exceeds the payload")
        return number

    def value(self, depth: int) -> Any:
        self.items += 1
        if self.items > self.limit:
            raise RemoteProtocolError(f"payload holds more than {self.limit} items")
        if self.stop is not None and not self.items % CHECK_EVERY and self.stop():
            raise DecodeStopped
        view = self.view
        code = view[self.take(1)]
        if code == _INT:
            return _I64.unpack_from(view, self.take(8))[0]
        if code == _NONE:
            return None
        if code == _FALSE:
            return False
        if code == _TRUE:
            return True
        if code == _FLOAT:
            return _F64.unpack_from(view, self.take(8))[0]
        if code == _STR:
            size = _U32.unpack_from(view, self.take(4))[0]
            start = self.take(size)
            return str(view[start : start + size], "utf-8")
        if code == _ARRAY:
            return self.array()
        if code == _LIST or code == _TUPLE:
            if depth >= MAX_DEPTH:
                raise RemoteProtocolError(f"payload nests deeper than {MAX_DEPTH} levels")
            items = [self.value(depth + 1) for _ in range(self.count())]
            return items if code == _LIST else tuple(items)
        if code == _DICT:
            if depth >= MAX_DEPTH:
                raise RemoteProtocolError(f"payload nests deeper than {MAX_DEPTH} levels")
            result = {}
            for _ in range(self.count()):
                size = _U32.unpack_from(view, self.take(4))[0]
                start = self.take(size)
                key = str(view[start : start + size], "utf-8")
                result[key] = self.value(depth + 1)
            return result
        if code == _BYTES:
            size = _U64.unpack_from(view, self.take(8))[0]
            start = self.take(size)
            return bytes(view[start : start + size])
        if code == _BIGINT:
            size = _U32.unpack_from(view, self.take(4))[0]
            start = self.take(size)
            return int.from_bytes(view[start : start + size], "little", signed=True)
        if code == _SCALAR:
            dtype = self.dtype()
            start = self.take(dtype.itemsize)
            return numpy.frombuffer(self.view, dtype=dtype, count=1, offset=start)[0]
        raise RemoteProtocolError(f"malformed payload: unknown type code {code}")

    def dtype(self) -> numpy.dtype:
        code = self.view[self.take(1)]
        if code >= len(_DTYPES):
            raise RemoteProtocolError(f"malformed payload: unknown dtype code {code}")
        return _DTYPES[code]

    def array(self) -> numpy.ndarray:
        view = self.view
        code, ndim, padding = _ARRAY_HEAD.unpack_from(view, self.take(3))
        if code >= len(_DTYPES):
            raise RemoteProtocolError(f"malformed payload: unknown dtype code {code}")
        if ndim > 32:
            raise RemoteProtocolError(f"malformed payload: array with {ndim} dimensions")
        dtype = _DTYPES[code]
        shape = struct.unpack_from(f"<{ndim}Q", view, self.take(8 * ndim))
        count = 1
        for extent in shape:
            count *= extent
        self.take(padding)
        nbytes = count * dtype.itemsize
        start = self.take(nbytes)
        array = numpy.frombuffer(self.view, dtype=dtype, count=count, offset=start)
        return array.reshape(shape)
