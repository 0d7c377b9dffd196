"""Flat vectors of field elements for the batched protocols, in two representations.

A batch's protocol works on flat vectors: every operation's elements one after the other.
:class:`ArrayVectors` keeps them as the field's numpy storage (vectorised limb arithmetic,
best for many elements); :class:`IntVectors` as lists of Python integers, which is several
times faster for the few elements of a lone scalar operation, where numpy's per-call cost
dominates.  Both have the same methods, so each protocol is written once
(:func:`vectors` picks by size).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy

from ..arithmetic import Field, secure_words
from ..errors import RemoteProtocolError

__all__ = ["SMALL", "ArrayVectors", "IntVectors", "vectors"]

SMALL = 16
"""Up to this many elements, Python integers beat numpy."""


def _invalid(src: int, error: Exception) -> RemoteProtocolError:
    return RemoteProtocolError(f"player {src} sent an invalid share: {error}", rank=src)


class ArrayVectors:
    """Vectors as the field's numpy storage (1-d)."""

    def __init__(self, field: Field, xs: Sequence[int], generator: numpy.random.Generator | None) -> None:
        self.field = field
        self.xs = list(xs)
        self.generator = generator
        self.words = field.element_bytes // 8

    def inputs(self, storages: Sequence[numpy.ndarray], shapes: Sequence[tuple[int, ...]]) -> Any:
        """The storages, each broadcast to its shape, one after the other."""
        if len(storages) == 1:
            storage, shape = storages[0], shapes[0]
            if storage.shape != shape:
                storage = numpy.broadcast_to(storage, shape)
            return numpy.ascontiguousarray(storage).reshape(-1)
        # Byte copies: much cheaper than numpy's structured-dtype machinery per small array.
        data = b"".join([(storage if storage.shape == shape else numpy.ascontiguousarray(
            numpy.broadcast_to(storage, shape))).tobytes() for storage, shape in zip(storages, shapes, strict=True)])
        return numpy.frombuffer(bytearray(data), dtype=self.field.dtype)

    def outputs(self, vector: Any, offsets: Sequence[int], shapes: Sequence[tuple[int, ...]]) -> list[numpy.ndarray]:
        """The pieces of ``vector``, as storage of each shape."""
        return [vector[offsets[j]:offsets[j + 1]].reshape(shape) for j, shape in enumerate(shapes)]

    def multiply(self, a: Any, b: Any) -> Any:
        return self.field.multiply(a, b)

    def add(self, a: Any, b: Any) -> Any:
        return self.field.add(a, b)

    def subtract(self, a: Any, b: Any) -> Any:
        return self.field.subtract(a, b)

    def constant(self, count: int, value: int) -> Any:
        return self.field.full((count,), value)

    def shares(self, vector: Any, degree: int) -> list[Any]:
        """Shares of each element (random polynomials of ``degree``), one vector per player."""
        return list(self.field.polynomial_shares(vector, degree, self.xs, generator=self.generator))

    def wire(self, parts: Sequence[Any]) -> numpy.ndarray:
        """The wire words of each element's parts, element after element."""
        words = [self.field.to_wire(part).reshape(-1, self.words) for part in parts]
        return (words[0] if len(words) == 1 else numpy.concatenate(words, axis=1)).reshape(-1)

    def unwire(self, rows: numpy.ndarray, parts: int, src: int) -> list[Any]:
        """The inverse of :meth:`wire` for data from player ``src`` (checked)."""
        count = rows.shape[0]
        words = self.words
        try:
            return [self.field.from_wire(numpy.ascontiguousarray(rows[:, i * words:(i + 1) * words]), (count,))
                    for i in range(parts)]
        except (ValueError, TypeError) as exc:
            raise _invalid(src, exc) from None

    def recombine(self, vectors: Sequence[Any], coefficients: Sequence[int]) -> Any:
        stacked = numpy.stack(list(vectors))
        return self.field.recombine(stacked, self.field.from_int_list(coefficients, (len(coefficients),)))

    def shift_right(self, vector: Any, bits: int) -> Any:
        """floor(value / 2**bits) of nonnegative values below 2**127 (0 < bits < 64)."""
        lo, hi = vector["lo"], vector["hi"]
        out = numpy.empty(vector.shape, dtype=vector.dtype)
        shift = numpy.uint64(bits)
        out["lo"] = (lo >> shift) | (hi << numpy.uint64(64 - bits))
        out["hi"] = hi >> shift
        return out

    def random_below(self, count: int, bits: int) -> Any:
        """Uniform integers in [0, 2**bits) (bits <= 126)."""
        raw = (secure_words(2 * count) if self.generator is None
               else self.generator.integers(0, 2**64, size=2 * count, dtype=numpy.uint64)).reshape(count, 2)
        out = numpy.empty(count, dtype=self.field.dtype)
        if bits >= 64:
            out["lo"] = raw[:, 0]
            out["hi"] = raw[:, 1] & numpy.uint64((1 << (bits - 64)) - 1)
        else:
            out["lo"] = raw[:, 0] & numpy.uint64((1 << bits) - 1)
            out["hi"] = 0
        return out

    def select(self, vector: Any, positions: numpy.ndarray) -> Any:
        return vector[positions]


class IntVectors:
    """Vectors as lists of Python integers (for a few elements)."""

    def __init__(self, field: Field, xs: Sequence[int], generator: numpy.random.Generator | None) -> None:
        self.field = field
        self.order = field.order
        self.xs = list(xs)
        self.generator = generator
        self.size = field.element_bytes

    def inputs(self, storages: Sequence[numpy.ndarray], shapes: Sequence[tuple[int, ...]]) -> list[int]:
        values: list[int] = []
        field = self.field
        for storage, shape in zip(storages, shapes, strict=True):
            if storage.shape == shape:
                values += field.int_list(storage)
            else:
                values += field.int_list(numpy.broadcast_to(storage, shape))
        return values

    def outputs(self, vector: list[int], offsets: Sequence[int], shapes: Sequence[tuple[int, ...]]
                ) -> list[numpy.ndarray]:
        field = self.field
        return [field.from_int_list(vector[offsets[j]:offsets[j + 1]], shape) for j, shape in enumerate(shapes)]

    def multiply(self, a: list[int], b: list[int]) -> list[int]:
        p = self.order
        return [x * y % p for x, y in zip(a, b, strict=True)]

    def add(self, a: list[int], b: list[int]) -> list[int]:
        p = self.order
        return [(x + y) % p for x, y in zip(a, b, strict=True)]

    def subtract(self, a: list[int], b: list[int]) -> list[int]:
        p = self.order
        return [(x - y) % p for x, y in zip(a, b, strict=True)]

    def constant(self, count: int, value: int) -> list[int]:
        return [value % self.order] * count

    def shares(self, vector: list[int], degree: int) -> list[list[int]]:
        p = self.order
        count = len(vector)
        coefficients = self.field.random_ints(degree * count, self.generator)
        result = []
        for x in self.xs:
            row = []
            for e in range(count):
                accumulator = coefficients[(degree - 1) * count + e] if degree else 0
                for j in range(degree - 2, -1, -1):
                    accumulator = accumulator * x + coefficients[j * count + e]
                row.append((accumulator * x + vector[e]) % p)
            result.append(row)
        return result

    def wire(self, parts: Sequence[list[int]]) -> numpy.ndarray:
        size = self.size
        if len(parts) == 1:
            data = b"".join([value.to_bytes(size, "little") for value in parts[0]])
        else:
            data = b"".join([value.to_bytes(size, "little") for values in zip(*parts, strict=True) for value in values])
        return numpy.frombuffer(data, dtype="<u8")

    def unwire(self, rows: numpy.ndarray, parts: int, src: int) -> list[list[int]]:
        count = rows.shape[0]
        try:
            values = self.field.ints_from_wire(numpy.ascontiguousarray(rows).reshape(-1), count * parts)
        except (ValueError, TypeError) as exc:
            raise _invalid(src, exc) from None
        return [values[i::parts] for i in range(parts)]

    def recombine(self, vectors: Sequence[list[int]], coefficients: Sequence[int]) -> list[int]:
        p = self.order
        pairs = list(zip(coefficients, vectors, strict=True))
        return [sum(c * vector[e] for c, vector in pairs) % p for e in range(len(vectors[0]))]

    def shift_right(self, vector: list[int], bits: int) -> list[int]:
        return [value >> bits for value in vector]

    def random_below(self, count: int, bits: int) -> list[int]:
        if self.generator is not None:
            raw = self.generator.integers(0, 2**64, size=2 * count, dtype=numpy.uint64).tolist()
            words = [raw[2 * i] | (raw[2 * i + 1] << 64) for i in range(count)]
        else:
            data = secure_words(2 * count).tobytes()
            words = [int.from_bytes(data[16 * i:16 * i + 16], "little") for i in range(count)]
        mask = (1 << bits) - 1
        return [word & mask for word in words]

    def select(self, vector: list[int], positions: numpy.ndarray) -> list[int]:
        return [vector[i] for i in positions.tolist()]


def vectors(field: Field, count: int, xs: Sequence[int], generator: numpy.random.Generator | None
            ) -> ArrayVectors | IntVectors:
    """The representation that is faster for ``count`` elements."""
    if count <= SMALL:
        return IntVectors(field, xs, generator)
    return ArrayVectors(field, xs, generator)

