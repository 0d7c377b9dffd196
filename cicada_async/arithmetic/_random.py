"""Random 64-bit words for `Field.uniform`: cryptographically secure unless a generator is given.

Without a generator the words come from OpenSSL's CSPRNG (``ssl.RAND_bytes``: a DRBG seeded by
the operating system and reseeded after ``fork``), falling back to ``os.urandom`` when the
``ssl`` module is unavailable; the kernel's ``urandom`` alone is about ten times slower here
(4 ms for 1.6 MB).  The fields turn words into elements by rejection sampling, which avoids any
modulo bias.  Passing a ``numpy.random.Generator`` makes the output reproducible, which is for
tests only: numpy's generators are not cryptographically secure.

The fields call ``_random._random_words`` through this module, so replacing that one attribute
(as a test does) changes every draw.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from ._base import _CHUNK, _WIRE_DTYPE

try:
    import ssl as _ssl
except ImportError:  # pragma: no cover - Python built without OpenSSL
    _ssl = None  # type: ignore[assignment]

# Largest single ssl.RAND_bytes request.
_RANDOM_BYTES_PER_CALL = 1 << 30


def _system_bytes(nbytes: int) -> bytes:
    if _ssl is not None:
        try:
            return _ssl.RAND_bytes(nbytes)
        except _ssl.SSLError:  # OpenSSL failing to seed itself is unheard of
            pass
    return os.urandom(nbytes)


class _Pool:
    """Small requests are served from a buffer filled by one large request (asking OpenSSL
    for 16 bytes at a time costs more than the arithmetic they feed).  Every byte is handed
    out once; a forked child starts with an empty pool (see ``os.register_at_fork`` below),
    so no two processes ever use the same bytes."""

    SIZE = 1 << 16
    LARGEST = 1 << 10  # requests above this go straight to the source

    def __init__(self) -> None:
        self.data = b""
        self.position = 0
        self.lock = threading.Lock()

    def take(self, nbytes: int) -> bytes:
        with self.lock:
            end = self.position + nbytes
            if end > len(self.data):
                self.data = _system_bytes(self.SIZE)
                self.position, end = 0, nbytes
            chunk = self.data[self.position : end]
            self.position = end
            return chunk

    def clear(self) -> None:
        self.data = b""
        self.position = 0
        self.lock = threading.Lock()


_POOL = _Pool()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOL.clear)


def _secure_bytes(nbytes: int) -> bytes:
    if nbytes <= _Pool.LARGEST:
        return _POOL.take(nbytes)
    return _system_bytes(nbytes)


def secure_words(count: int) -> np.ndarray:
    """``count`` uniformly random 64-bit words from a cryptographically secure source."""
    nbytes = 8 * count
    parts = [
        _secure_bytes(min(_RANDOM_BYTES_PER_CALL, nbytes - start))
        for start in range(0, nbytes, _RANDOM_BYTES_PER_CALL)
    ]
    return np.frombuffer(parts[0] if len(parts) == 1 else b"".join(parts), dtype=_WIRE_DTYPE)


def _check_generator(generator: Any) -> None:
    if generator is not None and not isinstance(generator, np.random.Generator):
        raise TypeError(f"generator must be a numpy.random.Generator or None, not {type(generator).__name__}")


def _random_words(count: int, generator: np.random.Generator | None) -> np.ndarray:
    _check_generator(generator)
    if generator is None:
        return secure_words(count)
    return generator.integers(0, (1 << 64) - 1, size=count, dtype=np.uint64, endpoint=True)


def _fill_random(words: np.ndarray, generator: np.random.Generator | None) -> None:
    """Fill a 1-d uint64 array with random words, a chunk at a time (no big temporaries)."""
    _check_generator(generator)
    for start in range(0, words.size, _CHUNK):
        stop = min(words.size, start + _CHUNK)
        words[start:stop] = _random_words(stop - start, generator)
