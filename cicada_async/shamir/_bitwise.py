"""The local, communication-free parts of the comparison protocols.  Sans-IO.

What the protocols of :mod:`cicada_async.shamir._nonlinear` compute between their rounds:
the parameters of a masked opening, the bits of public values, the schedule of a
logarithmic-depth prefix OR, random bits and bounded random values as field storage, and an
encoding that passes field storage through unchanged.  All of it is plain numpy on arrays of
field elements, tested without players.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy

from ..arithmetic import Field, secure_words
from ..encoding import Encoding

__all__ = ["COMPARISON_BITS", "Raw", "Schedule", "compose", "field_bits", "low_words", "prefix_or_schedule",
           "public_bits", "random_below", "random_bits", "required_field_bits"]

COMPARISON_BITS = 58
"""k: comparison operands must lie in ``[-2**(k-1), 2**(k-1))`` as signed field integers (so
``|x| < 2**41`` in FixedPoint(16): two values below 2**40 always compare)."""

_STATISTICAL_SLACK = 10  # room for the sum of up to 1,024 contributors' masks and the offset


def required_field_bits(bits: int, security: int) -> int:
    """The field size that a masked opening of ``bits``-bit values with ``security`` bits of
    statistical security needs (masks of ``bits + security`` bits, summed, plus an offset)."""
    return bits + security + _STATISTICAL_SLACK


class Raw(Encoding):
    """Field storage in, field storage out: for opening masked values inside protocols."""

    def encode(self, array: Any, field: Field) -> numpy.ndarray | None:
        """Storage as-is (it must already be storage of ``field``)."""
        if array is None:
            return None
        return self._check_storage(array, field)

    def decode(self, storage: numpy.ndarray | None, field: Field) -> numpy.ndarray | None:
        """Storage as-is."""
        if storage is None:
            return None
        return self._check_storage(storage, field)


def low_words(field: Field, storage: numpy.ndarray) -> numpy.ndarray:
    """The low 64 bits of every element (a flat ``uint64`` array)."""
    words = field.element_bytes // 8
    return field.to_wire(storage).reshape(-1, words)[:, 0].copy()


def public_bits(values: numpy.ndarray, bits: int) -> numpy.ndarray:
    """The low ``bits`` bits (``bits <= 64``) of each ``uint64`` value, most significant
    first: a ``(len(values), bits)`` array of 0s and 1s (``uint8``)."""
    if not 0 < bits <= 64:
        raise ValueError(f"bits must be in 1..64, got {bits}")
    shifts = numpy.arange(bits - 1, -1, -1, dtype=numpy.uint64)
    return ((values.reshape(-1, 1) >> shifts) & numpy.uint64(1)).astype(numpy.uint8)


def field_bits(field: Field, storage: numpy.ndarray) -> numpy.ndarray:
    """Every bit of each element of ``storage`` (flat), most significant first: a
    ``(size, field.bits)`` array of 0s and 1s (``uint8``)."""
    words = field.element_bytes // 8
    wire = field.to_wire(storage).reshape(-1, words)
    parts = [public_bits(wire[:, word], 64) for word in range(words - 1, -1, -1)]  # most significant word first
    return numpy.concatenate(parts, axis=1)[:, words * 64 - field.bits:]


def compose(field: Field, bits: numpy.ndarray) -> numpy.ndarray:
    """``sum(2**(L-1-i) * bits[..., i])``: field elements from field bits, most significant
    first along the last axis (length L)."""
    length = bits.shape[-1]
    weights = field(numpy.array([1 << (length - 1 - i) for i in range(length)], dtype=object))
    return field.sum(field.multiply(bits, weights), axis=-1)


def random_bits(field: Field, shape: tuple[int, ...], generator: numpy.random.Generator | None) -> numpy.ndarray:
    """Uniform field bits (0 or 1) of ``shape``, from the CSPRNG unless ``generator``."""
    count = math.prod(shape)
    if generator is None:
        words = secure_words((count + 63) // 64)
        bits = numpy.unpackbits(words.view(numpy.uint8))[:count]
    else:
        bits = generator.integers(0, 2, size=count, dtype=numpy.uint8)
    return field(bits.reshape(shape))


def random_below(field: Field, count: int, bits: int, generator: numpy.random.Generator | None) -> numpy.ndarray:
    """``count`` uniform field elements in ``[0, 2**bits)``; ``bits`` below the field's size."""
    if not 0 < bits < field.bits:
        raise ValueError(f"bits must be in 1..{field.bits - 1}, got {bits}")
    words = field.element_bytes // 8
    raw = (secure_words(count * words) if generator is None
           else generator.integers(0, 2**64, size=count * words, dtype=numpy.uint64)).reshape(count, words).copy()
    for word in range(words):
        keep = min(max(bits - 64 * word, 0), 64)
        raw[:, word] &= numpy.uint64((1 << keep) - 1)
    return field.from_wire(raw.reshape(-1), (count,))


@dataclass(frozen=True)
class Schedule:
    """One level of a prefix computation: ``y[targets] = combine(y[targets], y[sources])``."""

    targets: numpy.ndarray
    sources: numpy.ndarray


def prefix_or_schedule(length: int) -> list[Schedule]:
    """Sklansky's parallel prefix over ``length`` positions: ceil(log2(length)) levels.

    After applying every level in order, position i holds the combination of positions
    0..i.  In level l, every position in the upper half of its block of 2**(l+1) combines
    with the last position of the lower half; about ``length / 2`` combinations per level,
    all independent (one round of multiplications).
    """
    levels = []
    level = 0
    while (1 << level) < length:
        positions = numpy.arange(length)
        targets = positions[(positions >> level) & 1 == 1]
        sources = ((targets >> level) << level) - 1
        levels.append(Schedule(targets=targets, sources=sources))
        level += 1
    return levels
