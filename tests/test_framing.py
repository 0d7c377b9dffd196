"""The frame decoder, fed byte by byte, in random chunks, and fuzzed."""

from __future__ import annotations

import random

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cicada_async._core.framing import (
    HEADER,
    HEADER_SIZE,
    LARGE_PAYLOAD,
    MAGIC,
    Frame,
    FrameDecoder,
    Kind,
    encode_header,
)
from cicada_async.errors import RemoteProtocolError


def frame_bytes(kind: int, tag: int, comm: int, payload: bytes) -> bytes:
    return encode_header(kind, tag, comm, len(payload)) + payload


SAMPLE = [
    (Kind.DATA, 0, 7, b""),
    (Kind.DATA, -6, 2**64 - 1, b"hello"),
    (Kind.CONTROL, 1, 42, b"\x00" * 100),
    (Kind.DATA, 2**31 - 1, 1, bytes(range(256)) * 300),  # large: 76800 bytes
    (Kind.GOODBYE, 0, 0, b""),
    (Kind.HELLO, 1, 0, b"x" * (LARGE_PAYLOAD + 1)),
    (Kind.DATA, 5, 9, b"y" * LARGE_PAYLOAD),
]
STREAM = b"".join(frame_bytes(*f) for f in SAMPLE)


def normalized(frames: list[Frame]) -> list[tuple]:
    return [(f.kind, f.tag, f.comm, bytes(f.payload)) for f in frames]


def expected() -> list[tuple]:
    return [(int(k), t, c, p) for k, t, c, p in SAMPLE]


def test_whole_stream_at_once():
    assert normalized(FrameDecoder().feed(STREAM)) == expected()


def test_byte_by_byte():
    decoder = FrameDecoder()
    frames = []
    for i in range(len(STREAM)):
        frames += decoder.feed(STREAM[i : i + 1])
    assert normalized(frames) == expected()
    assert decoder.at_boundary


@pytest.mark.parametrize("seed", range(20))
def test_random_chunks(seed):
    rng = random.Random(seed)
    decoder = FrameDecoder()
    frames = []
    position = 0
    while position < len(STREAM):
        size = rng.choice([1, 2, 3, 23, 24, 25, 1000, 65536, 200000])
        frames += decoder.feed(STREAM[position : position + size])
        position += size
    assert normalized(frames) == expected()
    assert decoder.at_boundary


def test_buffered_protocol_style_partial_fills():
    # Fill only part of each offered buffer, as a socket read would.
    rng = random.Random(1)
    decoder = FrameDecoder()
    frames = []
    position = 0
    while position < len(STREAM):
        buffer = decoder.get_buffer(-1)
        assert len(buffer) > 0
        count = min(len(buffer), rng.randint(1, 5000), len(STREAM) - position)
        buffer[:count] = STREAM[position : position + count]
        position += count
        frames += decoder.buffer_updated(count)
    assert normalized(frames) == expected()


def test_large_payload_lands_in_one_buffer_of_final_size():
    payload = numpy.arange(1 << 16, dtype=numpy.float64).tobytes()
    decoder = FrameDecoder()
    first = decoder.feed(frame_bytes(Kind.DATA, 1, 1, payload)[: HEADER_SIZE + 10])
    assert first == []
    assert decoder.buffered == len(payload)  # allocated once, at the final size
    (frame,) = decoder.feed(payload[10:])
    assert isinstance(frame.payload, memoryview) and frame.payload.nbytes == len(payload)
    assert bytes(frame.payload) == payload


def test_at_boundary_tracks_partial_frames():
    decoder = FrameDecoder()
    assert decoder.at_boundary
    decoder.feed(STREAM[:5])
    assert not decoder.at_boundary
    decoder.feed(STREAM[5:])
    assert decoder.at_boundary


@pytest.mark.parametrize(
    "header, message",
    [
        (HEADER.pack(0x00, Kind.DATA, 0, 0, 1, 0, 0), "magic"),
        (HEADER.pack(MAGIC, 99, 0, 0, 1, 0, 0), "kind"),
        (HEADER.pack(MAGIC, 0, 0, 0, 1, 0, 0), "kind"),
        (HEADER.pack(MAGIC, Kind.CONTROL, 1, 0, 1, 0, 0), "round or ident"),
        (HEADER.pack(MAGIC, Kind.HELLO, 0, 0, 0, 7, 0), "round or ident"),
        (HEADER.pack(MAGIC, Kind.DATA, 0, 0, 1, 0, 2**40), "exceeds"),
    ],
)
def test_bad_headers_raise_before_allocating(header, message):
    decoder = FrameDecoder(max_payload=1 << 20)
    with pytest.raises(RemoteProtocolError, match=message):
        decoder.feed(header)
    assert decoder.buffered <= HEADER_SIZE


def test_limit_is_inclusive_and_configurable():
    decoder = FrameDecoder(max_payload=100)
    (frame,) = decoder.feed(frame_bytes(Kind.DATA, 0, 1, b"z" * 100))
    assert len(frame.payload) == 100
    with pytest.raises(RemoteProtocolError):
        decoder.feed(encode_header(Kind.DATA, 0, 1, 101))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096), st.lists(st.integers(1, 64), min_size=1, max_size=20))
def test_fuzz_random_bytes(data, chunk_sizes):
    """Random input: only RemoteProtocolError, bounded memory, always makes progress."""
    decoder = FrameDecoder(max_payload=1 << 16)
    position = 0
    index = 0
    try:
        while position < len(data):
            size = chunk_sizes[index % len(chunk_sizes)]
            index += 1
            decoder.feed(data[position : position + size])
            assert decoder.buffered <= (1 << 16) + HEADER_SIZE
            position += size
    except RemoteProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(Kind)), st.integers(-(2**31), 2**31 - 1),
                          st.integers(0, 2**64 - 1), st.binary(max_size=300)), max_size=10),
       st.integers(0, 2**32))
def test_fuzz_valid_streams_round_trip(frames, seed):
    stream = b"".join(frame_bytes(*f) for f in frames)
    rng = random.Random(seed)
    decoder = FrameDecoder()
    out = []
    position = 0
    while position < len(stream):
        size = rng.randint(1, 100)
        out += decoder.feed(stream[position : position + size])
        position += size
    assert normalized(out) == [(int(k), t, c, p) for k, t, c, p in frames]
