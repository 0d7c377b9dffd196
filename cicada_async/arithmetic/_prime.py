"""`PrimeField`: integers modulo any prime below ``2**64``, stored as ``uint64``.

For tests, interop and small-field experiments.  For orders below ``2**32`` products fit in
``uint64`` and everything is vectorized; larger orders multiply through Python ints, which is
much slower than `MersenneField`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _random
from ._base import (
    _U64,
    _WIRE_DTYPE,
    Field,
    Storage,
    _as_integer_array,
    _check_integer_objects,
    _shape,
    _wire_words,
)

_M32 = np.uint64((1 << 32) - 1)


def _is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin, exact for every ``n < 3.3 * 10**24`` (so all 64-bit ``n``)."""
    if n < 2:
        return False
    bases = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
    for q in bases:
        if n % q == 0:
            return n == q
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for a in bases:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


class PrimeField(Field):
    """Integers modulo a prime ``order < 2**64``, stored as ``uint64``.

    Parameters
    ----------
    order : int
        A prime, ``3 <= order < 2**64`` (checked with a deterministic Miller-Rabin test).

    Notes
    -----
    Multiplication, `dot` and large-order `sum` go through Python ints (object arrays) when
    ``order >= 2**32``, so they are much slower than `MersenneField`; for ``order < 2**32``
    products fit in ``uint64`` and everything stays vectorized.  A ``uint64`` array passed to
    an operation is taken to be storage and must hold values below ``order``.
    """

    def __init__(self, order: int) -> None:
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)):
            raise TypeError(f"order must be an int, not {type(order).__name__}")
        order = int(order)
        if order < 3:
            raise ValueError(f"field order must be a prime >= 3, got {order}")
        if order >= 1 << 64:
            raise ValueError(f"PrimeField needs an order < 2**64 (MersenneField is 2**127 - 1), got {order}")
        if not _is_prime(order):
            raise ValueError(f"field order {order} is not prime")
        super().__init__(order, np.dtype(np.uint64))
        self._p = _U64(order)
        self._small = order < 1 << 32

    # -- conversion ----------------------------------------------------------------------
    def __call__(self, values: Any) -> Storage:
        if isinstance(values, (int, np.integer, np.bool_)):
            return np.array(int(values) % self.order, dtype=np.uint64)
        arr = _as_integer_array(values)
        kind = arr.dtype.kind
        if kind == "i":
            return self.from_signed(arr)
        if kind in "ub":
            return np.asarray(np.remainder(arr.astype(np.uint64), self._p))
        if kind == "O":
            _check_integer_objects(arr)
            return np.asarray(arr % self.order, dtype=object).astype(np.uint64)
        raise TypeError(
            f"cannot convert {arr.dtype} values to field elements (integers only; use an encoding)"
        )

    def from_signed(self, values: Any) -> Storage:
        x = np.asarray(values)
        if x.dtype.kind != "i":
            return self(x)
        shape = x.shape
        x = x.astype(np.int64, copy=False).reshape(-1)
        if self.order < 1 << 63:
            return np.remainder(x, np.int64(self.order)).astype(np.uint64).reshape(shape)
        u = x.astype(np.uint64)
        magnitude = np.negative(u)  # |x| for negative x (2**63 for the minimum)
        return np.where(x < 0, self._p - magnitude, u).reshape(shape)

    def to_ints(self, a: Any) -> np.ndarray:
        return self._coerce(a).astype(object)

    def to_float_signed(self, a: Any) -> np.ndarray:
        a = self._coerce(a)
        neg = a > _U64(self.order // 2)
        magnitude = np.where(neg, self._p - a, a).astype(np.float64)
        return np.where(neg, -magnitude, magnitude).reshape(a.shape)

    def to_wire(self, a: Any) -> np.ndarray:
        a = self._coerce(a)
        return np.array(a, dtype=_WIRE_DTYPE, order="C").reshape(-1)

    def from_wire(self, array: Any, shape: Any) -> Storage:
        shape = _shape(shape)
        words = _wire_words(array)
        n = math.prod(shape)
        if words.size != n:
            raise ValueError(f"wire data holds {words.size} words, expected {n} for shape {shape}")
        out = words.astype(np.uint64)  # a new, writable, native-order copy
        if np.any(out >= self._p):
            raise ValueError("wire data holds a value >= the field order")
        return out.reshape(shape)

    # -- constructors --------------------------------------------------------------------
    def uniform(self, shape: Any = (), generator: np.random.Generator | None = None) -> Storage:
        shape = _shape(shape)
        n = math.prod(shape)
        out = np.empty(n, dtype=np.uint64)
        mask = _U64((1 << self.bits) - 1)
        acceptance = self.order / (1 << self.bits)  # > 1/2
        filled = 0
        while filled < n:
            need = n - filled
            words = _random._random_words(int(need / acceptance * 1.05) + 16, generator) & mask
            words = words[words < self._p][:need]
            out[filled : filled + words.size] = words
            filled += words.size
        return out.reshape(shape)

    # -- arithmetic ----------------------------------------------------------------------
    def _pair(self, a: Any, b: Any) -> tuple[Storage, Storage]:
        return self._coerce(a), self._coerce(b)

    def _wide(self, *operands: Any) -> tuple[tuple[int, ...], list[Storage]]:
        """Broadcast shape and the operands as arrays of dimension >= 1 (numpy would turn 0-d
        results into scalars, whose arithmetic warns about the intended wrap-around)."""
        values = [self._coerce(x) for x in operands]
        shape = np.broadcast_shapes(*(x.shape for x in values))
        return shape, [x.reshape(1) if x.ndim == 0 else x for x in values]

    def add(self, a: Any, b: Any) -> Storage:
        shape, (a, b) = self._wide(a, b)
        s = a + b
        if self.order <= 1 << 63:
            return np.minimum(s, s - self._p).reshape(shape)
        wrapped = (s < a) | (s >= self._p)
        return np.where(wrapped, s - self._p, s).reshape(shape)

    def subtract(self, a: Any, b: Any) -> Storage:
        shape, (a, b) = self._wide(a, b)
        d = a - b
        if self.order <= 1 << 63:
            return np.minimum(d, d + self._p).reshape(shape)
        return np.where(a < b, d + self._p, d).reshape(shape)

    def negative(self, a: Any) -> Storage:
        shape, (a,) = self._wide(a)
        return np.where(a == 0, _U64(0), self._p - a).reshape(shape)

    def multiply(self, a: Any, b: Any) -> Storage:
        shape, (a, b) = self._wide(a, b)
        if self._small:
            return np.remainder(a * b, self._p).reshape(shape)
        product = a.astype(object) * b.astype(object)
        return np.asarray(product % self.order, dtype=object).astype(np.uint64).reshape(shape)

    def sum(self, a: Any, axis: int | tuple[int, ...] | None = None) -> Storage:
        a = self._coerce(a)
        if self._small:  # values < 2**32: 2**32 of them sum below 2**64
            return np.asarray(np.remainder(np.sum(a, axis=axis, dtype=np.uint64), self._p))
        low = np.asarray(np.sum(a & _M32, axis=axis, dtype=np.uint64)).astype(object)
        high = np.asarray(np.sum(a >> 32, axis=axis, dtype=np.uint64)).astype(object)
        total = np.asarray(((high << 32) + low) % self.order, dtype=object)
        return total.astype(np.uint64)

    def equal(self, a: Any, b: Any) -> np.ndarray:
        a, b = self._pair(a, b)
        return np.asarray(a == b)

    def dot(self, a: Any, b: Any) -> Storage:
        a, b = self._pair(a, b)
        if a.ndim == 0 or b.ndim == 0:
            return self.multiply(a, b)
        a2, b2, out_shape = self._dot_shapes(a, b)
        product = np.asarray(np.dot(a2.astype(object), b2.astype(object)), dtype=object)
        return np.asarray(product % self.order, dtype=object).astype(np.uint64).reshape(out_shape)
