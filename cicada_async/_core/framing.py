"""Frames on a link: a fixed header followed by a payload.  Sans-IO: bytes in, frames out.

Every frame starts with a 32-byte little-endian header::

    offset  size  field
    0       1     magic, always 0xCA
    1       1     kind (DATA, CONTROL, HELLO, GOODBYE, BATCH)
    2       2     round: the step of the operation this frame belongs to (DATA, BATCH)
    4       4     tag, a signed 32-bit integer: for DATA, the operation's kind (a library
                  tag < 0) or a user tag (>= 0, point to point); for BATCH, the operations'
                  kind; for CONTROL, the control code
    8       8     communicator id (unsigned 64 bits; 0 for link-level frames)
    16      8     ident: the operation's identity, or the point-to-point matching key
                  (see :mod:`cicada_async._core.identity`); 0 for other kinds
    24      8     payload length in bytes

A DATA payload is one value (:mod:`cicada_async._core.codec`).  A BATCH frame carries the
messages of several operations of one kind and round at once (operations started together
by one player, see :mod:`cicada_async.shamir`): its payload is the codec value
``(idents, offsets, data)`` where ``idents`` is a uint64 array of the K identities,
``offsets`` an int64 array of K + 1 element offsets, and ``data`` a 1-d array whose elements
``offsets[j]:offsets[j+1]`` are operation j's message (:func:`encode_batch`,
:func:`decode_batch`).  Frames of other kinds must have round and ident zero.

:class:`FrameDecoder` mirrors asyncio's :class:`~asyncio.BufferedProtocol`: the caller asks
for a buffer with :meth:`~FrameDecoder.get_buffer`, lets the socket fill it, and reports
how many bytes arrived with :meth:`~FrameDecoder.buffer_updated`, which returns the frames
that are now complete.  Small frames are parsed out of one reusable staging buffer; a large
payload is received straight into a single buffer allocated once, at its final size, so a
large array crosses the link without an extra copy.  :meth:`~FrameDecoder.feed` wraps the
same two calls for callers (and tests) that hold plain bytes.

Every header is validated before anything is allocated for its payload: an unknown magic,
kind or flag, or a length over ``max_payload``, raises
:class:`~cicada_async.errors.RemoteProtocolError`.  The decoder never allocates more than
``max_payload`` bytes for one frame, never loops without consuming input, and never raises
anything else.
"""

from __future__ import annotations

import enum
import itertools
import operator
import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy

from ..errors import RemoteProtocolError

__all__ = [
    "DEFAULT_MAX_FRAME",
    "HEADER",
    "HEADER_SIZE",
    "MAGIC",
    "Control",
    "Frame",
    "FrameDecoder",
    "Kind",
    "decode_batch",
    "encode_batch",
    "encode_header",
    "header",
]

MAGIC = 0xCA
HEADER = struct.Struct("<BBHiQQQ")
HEADER_SIZE = HEADER.size  # 32
DEFAULT_MAX_FRAME = 1 << 30  # 1 GiB
TAG_MIN = -(1 << 31)
TAG_MAX = (1 << 31) - 1

# Payloads at or below this size are parsed from the staging buffer and copied out; larger
# ones get a buffer of their own that the socket fills directly.
LARGE_PAYLOAD = 64 * 1024
STAGING_SIZE = 256 * 1024
_MIN_STAGING = 4 * 1024


class Kind(enum.IntEnum):
    """What a frame carries."""

    DATA = 1
    """A value for the communicator's mailbox, matched by (source, tag)."""
    CONTROL = 2
    """Out-of-band message for a communicator (revoke, shrink agreement, free); the tag
    field holds the control code.  Handled by the reader as it arrives."""
    HELLO = 3
    """Connection set-up (handshake) messages; only valid before the link is established."""
    GOODBYE = 4
    """The sender closes the link cleanly: it sends nothing more on it."""
    BATCH = 5
    """The messages of several operations of one kind and round (see the module docstring)."""


_KINDS = frozenset(int(kind) for kind in Kind)


class Control(enum.IntEnum):
    """The tag of a CONTROL frame: what the message tells the communicator it names."""

    REVOKE = 1
    """The sender revoked the communicator; a marker behind everything it sent before."""
    FREED = 2
    """The sender freed the communicator; it sends nothing more on it."""
    AGREEMENT = 3
    """A message of the shrink agreement (see :mod:`cicada_async._core.agreement`)."""
    EXCLUDED = 4
    """The other survivors agreed on a communicator without the receiver."""


_OPERATION_KINDS = frozenset((int(Kind.DATA), int(Kind.BATCH)))


class Frame(NamedTuple):
    """One decoded frame.  ``payload`` is bytes-like (``bytes`` or a ``memoryview``)."""

    kind: int
    round: int
    tag: int
    comm: int
    ident: int
    payload: bytes | memoryview


_pack = HEADER.pack


_FIELDS = (  # (name, smallest, largest) of each packed field after the magic
    ("kind", 0, 0xFF),
    ("round", 0, 0xFFFF),
    ("tag", TAG_MIN, TAG_MAX),
    ("comm", 0, (1 << 64) - 1),
    ("ident", 0, (1 << 64) - 1),
    ("length", 0, (1 << 64) - 1),
)


def _field_error(values: tuple[Any, ...]) -> ValueError:
    """The ``ValueError`` for header fields that ``struct`` refused: which field, and its range."""
    for (name, low, high), value in zip(_FIELDS, values, strict=True):
        try:
            number = operator.index(value)
        except TypeError:
            number = None
        if number is None or not low <= number <= high:
            return ValueError(f"frame header field {name} must be an integer in {low} ... {high}, got {value!r}")
    return ValueError(f"invalid frame header fields {values!r}")  # pragma: no cover - struct refused nothing


def header(kind: int, round: int, tag: int, comm: int, ident: int, length: int) -> bytes:
    """Return the 32-byte header of a frame (the only place headers are packed).

    Raises
    ------
    ValueError
        If a field does not fit (e.g. a tag outside ``-2**31 ... 2**31 - 1``); the message
        names the field and its range.
    """
    try:
        return _pack(MAGIC, kind, round, tag, comm, ident, length)
    except struct.error:
        raise _field_error((kind, round, tag, comm, ident, length)) from None


def encode_header(kind: int, tag: int, comm: int, length: int) -> bytes:
    """The header of a frame that belongs to no operation (round and ident zero).

    Raises
    ------
    ValueError
        If a field does not fit, as :func:`header`.
    """
    try:
        return _pack(MAGIC, kind, 0, tag, comm, 0, length)
    except struct.error:
        raise _field_error((kind, 0, tag, comm, 0, length)) from None


def encode_batch(idents: Sequence[int], offsets: Sequence[int], data: numpy.ndarray) -> tuple[Any, ...]:
    """The codec value of a BATCH payload (see the module docstring)."""
    return (numpy.asarray(idents, dtype=numpy.uint64), numpy.asarray(offsets, dtype=numpy.int64), data)


def decode_batch(value: Any) -> tuple[list[int], list[int], numpy.ndarray]:
    """Check a decoded BATCH payload; return ``(idents, offsets, data)``.

    Raises
    ------
    RemoteProtocolError
        If the value is not a well-formed batch.
    """
    if not isinstance(value, tuple) or len(value) != 3:
        raise RemoteProtocolError("a batch must be a tuple (idents, offsets, data)")
    idents, offsets, data = value
    if not (isinstance(idents, numpy.ndarray) and idents.dtype == numpy.uint64 and idents.ndim == 1
            and isinstance(offsets, numpy.ndarray) and offsets.dtype == numpy.int64
            and offsets.shape == (len(idents) + 1,) and isinstance(data, numpy.ndarray) and data.ndim == 1):
        raise RemoteProtocolError("malformed batch (idents, offsets or data)")
    bounds = offsets.tolist()
    if not idents.size or bounds[0] != 0 or bounds[-1] != len(data) or any(
            low > high for low, high in itertools.pairwise(bounds)):
        raise RemoteProtocolError("malformed batch offsets")
    return idents.tolist(), bounds, data


class FrameDecoder:
    """Incremental frame decoder with the shape of asyncio's ``BufferedProtocol``.

    Parameters
    ----------
    max_payload:
        Largest payload accepted, in bytes.  A header announcing more raises
        :class:`~cicada_async.errors.RemoteProtocolError` before anything is allocated.
        May be changed between calls (e.g. kept small until a handshake completes).
    """

    __slots__ = (
        "_buf",
        "_end",
        "_large",
        "_large_filled",
        "_large_header",
        "_large_view",
        "_start",
        "_view",
        "max_payload",
    )

    def __init__(self, *, max_payload: int = DEFAULT_MAX_FRAME) -> None:
        self.max_payload = max_payload
        # Small frames are parsed in place from the staging buffer; a link that only ever
        # takes small frames (a connection not yet authenticated) gets a small one.
        self._buf = bytearray(min(STAGING_SIZE, max(_MIN_STAGING, 2 * (HEADER_SIZE + max_payload))))
        self._view = memoryview(self._buf)
        self._start = 0  # first byte not yet parsed
        self._end = 0  # end of the bytes received into the staging buffer
        self._large: numpy.ndarray | None = None
        self._large_view: memoryview | None = None
        self._large_filled = 0
        self._large_header: tuple[int, int, int, int, int] | None = None

    def allow(self, max_payload: int) -> None:
        """Accept payloads up to ``max_payload`` from now on (e.g. once a peer is authenticated);
        the staging buffer grows to its full size if it was small."""
        self.max_payload = max_payload
        if len(self._buf) < STAGING_SIZE:
            pending = self._end - self._start
            buf = bytearray(STAGING_SIZE)
            buf[:pending] = self._view[self._start : self._end]
            self._buf, self._view = buf, memoryview(buf)
            self._start, self._end = 0, pending

    @property
    def at_boundary(self) -> bool:
        """True when no partial frame is buffered (a clean place for the stream to end)."""
        return self._large is None and self._start == self._end

    @property
    def buffered(self) -> int:
        """Bytes held for the frame in progress (payload allocation included)."""
        if self._large is not None:
            return len(self._large)
        return self._end - self._start

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Return a non-empty writable buffer for the next incoming bytes."""
        if self._large_view is not None:
            return self._large_view[self._large_filled :]
        if len(self._buf) - self._end < LARGE_PAYLOAD and self._start > 0:
            # Move the partial frame to the front; a small frame always fits after this.
            pending = self._end - self._start
            self._buf[:pending] = self._view[self._start : self._end]
            self._start = 0
            self._end = pending
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> list[Frame]:
        """Account for ``nbytes`` written into the last buffer; return completed frames."""
        if self._large is not None:
            self._large_filled += nbytes
            if self._large_filled < len(self._large):
                return []
            frame = self._finish_large()
            return [frame, *self._parse()] if self._end > self._start else [frame]
        self._end += nbytes
        return self._parse()

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Decode ``data`` (any length, including zero); return the completed frames."""
        frames: list[Frame] = []
        data = memoryview(data).cast("B")
        position = 0
        while position < len(data):
            buffer = self.get_buffer()
            count = min(len(buffer), len(data) - position)
            buffer[:count] = data[position : position + count]
            position += count
            frames.extend(self.buffer_updated(count))
        return frames

    def _finish_large(self) -> Frame:
        assert self._large_header is not None and self._large_view is not None
        kind, round_, tag, comm, ident = self._large_header
        frame = Frame(kind, round_, tag, comm, ident, self._large_view)
        self._large = None
        self._large_view = None
        self._large_header = None
        self._large_filled = 0
        return frame

    def _parse(self) -> list[Frame]:
        frames: list[Frame] = []
        buf = self._buf
        while True:
            available = self._end - self._start
            if available < HEADER_SIZE:
                break
            magic, kind, round_, tag, comm, ident, length = HEADER.unpack_from(buf, self._start)
            if magic != MAGIC:
                raise RemoteProtocolError(f"bad frame magic 0x{magic:02x} (not a cicada_async peer?)")
            if kind not in _KINDS:
                raise RemoteProtocolError(f"unknown frame kind {kind}")
            if (round_ or ident) and kind not in _OPERATION_KINDS:
                raise RemoteProtocolError(f"a {Kind(kind).name} frame with a round or ident")
            if length > self.max_payload:
                raise RemoteProtocolError(
                    f"frame of {length} bytes exceeds the limit of {self.max_payload} bytes"
                )
            body = self._start + HEADER_SIZE
            if length > LARGE_PAYLOAD:
                # One allocation at the final size; the socket writes the rest straight in.
                payload = numpy.empty(length, dtype=numpy.uint8)
                view = memoryview(payload)  # type: ignore[arg-type]  # numpy arrays are buffers
                have = min(available - HEADER_SIZE, length)
                view[:have] = self._view[body : body + have]
                self._start = body + have
                if have == length:
                    frames.append(Frame(kind, round_, tag, comm, ident, view))
                    continue
                self._large = payload
                self._large_view = view
                self._large_filled = have
                self._large_header = (kind, round_, tag, comm, ident)
                break
            if available - HEADER_SIZE < length:
                break
            frames.append(Frame(kind, round_, tag, comm, ident, bytes(self._view[body : body + length])))
            self._start = body + length
        if self._start == self._end:
            self._start = self._end = 0
        return frames
