"""`MersenneField`: integers modulo the Mersenne prime ``p = 2**127 - 1``, the default field.

`MersenneField` stores each element in two 64-bit limbs (the structured dtype
``[("lo", "<u8"), ("hi", "<u8")]``, so a storage array has exactly the secret's shape and
ordinary numpy indexing works).  Multiplication splits each value into five 26-bit limbs held
in ``uint64`` arrays: the 25 partial products have at most 52 bits, the products that overflow
past bit 127 fold back into the low columns multiplied by ``2**130 mod p = 8``, and every
column sum stays below ``2**57``, so nothing overflows.  A carry pass and one conditional
subtraction then give the fully reduced result.  Every hot path is a fixed sequence of numpy
operations (loops are over limbs and chunks of 16384 elements, never over elements), working in
per-thread scratch buffers that stay in cache.  Sums add 26-bit limbs (exact for up to 2**32
terms); `~Field.dot` multiplies 16-bit limbs with float64 matrix products (BLAS), which are
exact because every partial sum stays below ``2**53``.  Shamir sharing evaluates polynomials
with Horner's rule on lazily carried 32-bit limbs, multiplying by the small public x-values.

The limb kernels themselves are in :mod:`cicada_async.arithmetic._mersenne_kernels`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from typing import Any

import numpy as np

from . import _random
from ._base import (
    _CHUNK,
    _U64,
    _WIRE_DTYPE,
    Field,
    Storage,
    _as_integer_array,
    _check_integer_objects,
    _contiguous,
    _copy,
    _raw,
    _shape,
    _wire_words,
)
from ._mersenne_kernels import (
    _A_LIMBS,
    _COLS,
    _M63,
    _MAX64,
    _MERSENNE_DTYPE,
    _SCRATCH,
    _accumulate_product,
    _horner32,
    _k_add,
    _k_finish,
    _k_limbs26,
    _k_multiply,
    _k_negative,
    _k_square,
    _k_subtract,
    _scalar_limbs26,
)

#: The default field order, the Mersenne prime ``2**127 - 1``.
MERSENNE_127 = (1 << 127) - 1

_SMALL = 32  # up to this many elements, Python integers are faster than the limb kernels

# recombine() accumulates this many products before carrying (column sums stay < 2**62).
_RECOMBINE_GROUP = 32
# dot() sums at most this many float64 products of 16-bit limbs (each < 2**32) before
# carrying, so every partial sum stays below 2**53 and is exact.
_DOT_EXACT_TERMS = 1 << 21


def _ints(a: Storage) -> list[int]:
    """The values of a (small) storage array as Python integers, in C order."""
    data = np.ascontiguousarray(a).tobytes()  # lo, hi little-endian: 16 bytes per value
    from_bytes = int.from_bytes
    return [from_bytes(data[i : i + 16], "little") for i in range(0, len(data), 16)]


def _from_ints(values: list[int], shape: tuple[int, ...]) -> Storage:
    """Storage holding ``values`` (reduced, nonnegative Python integers) in ``shape``."""
    data = bytearray(b"".join([value.to_bytes(16, "little") for value in values]))
    return np.frombuffer(data, dtype=_MERSENNE_DTYPE).reshape(shape)


def _small_elementwise(p: int, a: Storage, b: Storage, combine: Any) -> Storage | None:
    """``combine(x, y) % p`` elementwise for small operands of equal shape or with a scalar;
    None when the shapes need general broadcasting."""
    if a.shape == b.shape:
        return _from_ints([combine(x, y) % p for x, y in zip(_ints(a), _ints(b), strict=True)], a.shape)
    if b.size == 1 and b.ndim <= a.ndim:
        (y,) = _ints(b)
        return _from_ints([combine(x, y) % p for x in _ints(a)], a.shape)
    if a.size == 1 and a.ndim <= b.ndim:
        (x,) = _ints(a)
        return _from_ints([combine(x, y) % p for y in _ints(b)], b.shape)
    return None


def _normalize_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    raw = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    axes = []
    for ax in raw:
        ax = operator.index(ax)
        if not -ndim <= ax < ndim:
            raise _AxisError(f"axis {ax} is out of bounds for array of dimension {ndim}")
        axes.append(ax % ndim)
    if len(set(axes)) != len(axes):
        raise ValueError("duplicate value in 'axis'")
    return tuple(sorted(axes))


_AxisError = getattr(getattr(np, "exceptions", np), "AxisError", ValueError)


def _halves(x: Storage) -> tuple[np.ndarray, np.ndarray]:
    return x["lo"], x["hi"]


class MersenneField(Field):
    """The field of integers modulo the Mersenne prime ``p = 2**127 - 1`` (the default).

    Storage dtype is ``[("lo", "<u8"), ("hi", "<u8")]``: ``value = hi * 2**64 + lo`` with
    ``0 <= value < p`` (always fully reduced).  See the :mod:`cicada_async.arithmetic`
    docstring for why this field, and this module's for how the arithmetic is done.

    Notes
    -----
    Large operations run in chunks of 16384 elements in per-thread scratch buffers (about
    5 MiB per thread that uses the field, kept for the thread's lifetime).
    """

    def __init__(self) -> None:
        super().__init__(MERSENNE_127, _MERSENNE_DTYPE)

    def __repr__(self) -> str:
        return "MersenneField()"

    # -- conversion ----------------------------------------------------------------------
    def __call__(self, values: Any) -> Storage:
        if isinstance(values, np.ndarray) and values.dtype == self.dtype:
            return _copy(values)
        if isinstance(values, (int, np.integer, np.bool_)):
            v = int(values) % self.order
            return np.array((v & ((1 << 64) - 1), v >> 64), dtype=self.dtype)
        arr = _as_integer_array(values)
        kind = arr.dtype.kind
        if kind == "i":
            return self.from_signed(arr)
        if kind in "ub":
            out = np.zeros(arr.shape, dtype=self.dtype)
            out["lo"] = arr
            return out
        if kind == "O":
            _check_integer_objects(arr)
            # Python operators, not ufuncs: 0-d object arrays yield Python ints of any size.
            r = np.asarray(arr % self.order, dtype=object)
            out = np.empty(arr.shape, dtype=self.dtype)
            out["lo"] = np.asarray(r & ((1 << 64) - 1), dtype=object).astype(np.uint64)
            out["hi"] = np.asarray(r >> 64, dtype=object).astype(np.uint64)
            return out
        raise TypeError(
            f"cannot convert {arr.dtype} values to field elements (integers only; use an encoding)"
        )

    def from_signed(self, values: Any) -> Storage:
        x = np.asarray(values)
        if x.dtype.kind != "i":
            return self(x)
        u = x.astype(np.int64, copy=False).astype(np.uint64).reshape(-1)  # two's complement
        out = np.empty(u.size, dtype=self.dtype)
        neg = u >> _U64(63)  # 1 for negative values: p + v = (2**63 - 1) * 2**64 + (u - 1)
        np.subtract(u, neg, out=out["lo"])
        np.multiply(neg, _M63, out=out["hi"])
        return out.reshape(x.shape)

    def to_ints(self, a: Any) -> np.ndarray:
        a = self._coerce(a)
        hi = a["hi"].astype(object)
        lo = a["lo"].astype(object)
        return np.asarray((hi << 64) | lo, dtype=object)

    def to_float_signed(self, a: Any) -> np.ndarray:
        a = self._coerce(a)
        flat = _contiguous(a).reshape(-1)
        n = flat.size
        out = np.empty(n, dtype=np.float64)
        S = _SCRATCH
        for start in range(0, n, _CHUNK):
            stop = min(n, start + _CHUNK)
            m = stop - start
            lo, hi = _halves(flat[start:stop])
            neg = S.u(0, m)  # indices 0-3: no kernel runs inside this loop
            np.right_shift(hi, _U64(62), out=neg)  # value >= 2**126, i.e. value > p // 2
            mask = S.u(1, m)
            np.negative(neg, out=mask)  # all ones for negative values
            mag_lo = S.u(2, m)
            np.bitwise_xor(lo, mask, out=mag_lo)  # p - value = (M63 - hi) * 2**64 + (M64 - lo)
            mask &= _M63
            mag_hi = S.u(3, m)
            np.bitwise_xor(hi, mask, out=mag_hi)
            val = out[start:stop]
            np.multiply(mag_hi, 2.0**64, out=val)
            val += mag_lo
            neg <<= _U64(63)
            val.view(np.uint64)[...] |= neg  # set the sign bit of negative values
        return out.reshape(a.shape)

    def to_wire(self, a: Any) -> np.ndarray:
        a = self._coerce(a)
        return _copy(a).reshape(-1).view(_WIRE_DTYPE)

    def from_wire(self, array: Any, shape: Any) -> Storage:
        shape = _shape(shape)
        words = _wire_words(array)
        n = math.prod(shape)
        if words.size != 2 * n:
            raise ValueError(f"wire data holds {words.size} words, expected {2 * n} for shape {shape}")
        if n <= _SMALL:
            data = bytearray(words.tobytes())
            p = self.order
            from_bytes = int.from_bytes
            if any(from_bytes(data[i : i + 16], "little") >= p for i in range(0, len(data), 16)):
                raise ValueError("wire data holds a value >= the field order")
            return np.frombuffer(data, dtype=self.dtype).reshape(shape)
        out = np.empty(n, dtype=self.dtype)
        out.view(_WIRE_DTYPE)[...] = words
        hi = out["hi"]
        suspect = np.flatnonzero(hi >= _M63)
        if suspect.size and (np.any(hi[suspect] > _M63) or np.any(out["lo"][suspect] == _MAX64)):
            raise ValueError("wire data holds a value >= the field order")
        return out.reshape(shape)

    def random_ints(self, count: int, generator: np.random.Generator | None = None) -> list[int]:
        if generator is not None:
            return super().random_ints(count, generator)
        data = _random._secure_bytes(16 * count)  # 127 random bits each; the value p is redrawn
        from_bytes = int.from_bytes
        mask = self.order
        values = [from_bytes(data[i : i + 16], "little") & mask for i in range(0, 16 * count, 16)]
        while mask in values:  # probability 2**-127 per value
            values = [value if value != mask else self.random_ints(1)[0] for value in values]
        return values

    # -- constructors --------------------------------------------------------------------
    def uniform(self, shape: Any = (), generator: np.random.Generator | None = None) -> Storage:
        shape = _shape(shape)
        n = math.prod(shape)
        out = np.empty(n, dtype=self.dtype)
        _random._fill_random(out.view(_WIRE_DTYPE), generator)
        hi = out["hi"]
        hi &= _M63
        while n and hi.max() == _M63:  # reject the one 127-bit value >= p (probability 2**-127)
            suspect = np.flatnonzero(hi == _M63)
            if suspect.size:
                suspect = suspect[out["lo"][suspect] == _MAX64]
            if not suspect.size:
                break
            redo = np.empty(suspect.size, dtype=self.dtype)
            redo.view(_WIRE_DTYPE)[...] = _random._random_words(2 * suspect.size, generator)
            redo["hi"] &= _M63
            _raw(out)[suspect] = _raw(redo)
        return out.reshape(shape)

    # -- elementwise driver ----------------------------------------------------------------
    def _map(self, kernel: Any, *operands: Any) -> Storage:
        """Apply a chunk kernel elementwise, with numpy broadcasting."""
        values = [self._coerce(x) for x in operands]
        shape = np.broadcast_shapes(*(x.shape for x in values))
        n = math.prod(shape)
        flats: list[Any] = []
        for x in values:
            if x.size == 1:
                v = x.reshape(-1)[0]
                flats.append((v["lo"], v["hi"]))  # numpy uint64 scalars
            else:
                if x.shape != shape:
                    x = np.broadcast_to(x, shape)
                flats.append(_contiguous(x).reshape(-1))
        out = np.empty(n, dtype=self.dtype)
        S = _SCRATCH
        for start in range(0, n, _CHUNK):
            stop = min(n, start + _CHUNK)
            args = [f if isinstance(f, tuple) else _halves(f[start:stop]) for f in flats]
            o = out[start:stop]
            kernel(S, stop - start, *args, o["lo"], o["hi"])
        return out.reshape(shape)

    # -- arithmetic ----------------------------------------------------------------------
    def add(self, a: Any, b: Any) -> Storage:
        a, b = self._coerce(a), self._coerce(b)
        if a.size <= _SMALL and b.size <= _SMALL:
            small = _small_elementwise(self.order, a, b, operator.add)
            if small is not None:
                return small
        return self._map(_k_add, a, b)

    def subtract(self, a: Any, b: Any) -> Storage:
        a, b = self._coerce(a), self._coerce(b)
        if a.size <= _SMALL and b.size <= _SMALL:
            small = _small_elementwise(self.order, a, b, operator.sub)
            if small is not None:
                return small
        return self._map(_k_subtract, a, b)

    def negative(self, a: Any) -> Storage:
        return self._map(_k_negative, a)

    def multiply(self, a: Any, b: Any) -> Storage:
        a = self._coerce(a)
        b = a if b is a else self._coerce(b)
        if a.size <= _SMALL and b.size <= _SMALL:  # the limb kernels' set-up would dominate
            small = _small_elementwise(self.order, a, b, operator.mul)
            if small is not None:
                return small
            return self(np.asarray(self.to_ints(a) * self.to_ints(b) % self.order, dtype=object))
        if a is b:
            return self._map(_k_square, a)
        return self._map(_k_multiply, a, b)

    def sum(self, a: Any, axis: int | tuple[int, ...] | None = None) -> Storage:
        a = self._coerce(a)
        if a.ndim == 0:
            np.sum(np.zeros((), dtype=np.uint64), axis=axis)  # let numpy validate the axis
            return _copy(a)
        axes = _normalize_axes(axis, a.ndim)
        kept = tuple(d for d in range(a.ndim) if d not in axes)
        out_shape = tuple(a.shape[d] for d in kept)
        r = math.prod(a.shape[d] for d in axes)
        q = math.prod(out_shape)
        S = _SCRATCH
        if q == 1:
            flat = _contiguous(a).reshape(-1)
            totals = [0] * 5
            for start in range(0, r, _CHUNK):
                stop = min(r, start + _CHUNK)
                limbs = _k_limbs26(S, stop - start, *_halves(flat[start:stop]), _A_LIMBS)
                for i, limb in enumerate(limbs):
                    totals[i] += int(limb.sum(dtype=np.uint64))
            total = sum(t << (26 * i) for i, t in enumerate(totals))
            return self(total).reshape(out_shape)
        x = _contiguous(np.transpose(a, axes + kept)).reshape(r, q)
        cols = [np.zeros(q, dtype=np.uint64) for _ in range(5)]
        width = min(q, _CHUNK) or 1
        rows = max(1, _CHUNK // width)
        for c0 in range(0, q, width):
            c1 = min(q, c0 + width)
            for r0 in range(0, r, rows):
                block = x[r0 : r0 + rows, c0:c1]
                size = block.size
                limbs = _k_limbs26(S, size, block["lo"], block["hi"], _A_LIMBS)
                for col, limb in zip(cols, limbs, strict=True):
                    if block.shape[0] == 1:
                        col[c0:c1] += limb[0]
                    else:
                        col[c0:c1] += limb.sum(axis=0, dtype=np.uint64)
        out = np.empty(q, dtype=self.dtype)
        for c0 in range(0, q, _CHUNK):
            c1 = min(q, c0 + _CHUNK)
            o = out[c0:c1]
            _k_finish(S, c1 - c0, [col[c0:c1] for col in cols], 26, o["lo"], o["hi"])
        return out.reshape(out_shape)

    def equal(self, a: Any, b: Any) -> np.ndarray:
        a = self._coerce(a)
        b = self._coerce(b)
        return np.asarray((a["lo"] == b["lo"]) & (a["hi"] == b["hi"]))

    def dot(self, a: Any, b: Any) -> Storage:
        a = self._coerce(a)
        b = self._coerce(b)
        if a.ndim == 0 or b.ndim == 0:
            return self.multiply(a, b)
        a2, b2, out_shape = self._dot_shapes(a, b)
        (m, k), n = a2.shape, b2.shape[1]
        out = np.zeros((m, n), dtype=self.dtype)
        # Output blocks of at most 4096 elements (and 256 rows or columns); contraction chunks
        # of at most 2**21 terms (so float64 sums of 16-bit limb products stay exact) and of
        # at most a few MiB of float limbs.
        mb = max(1, min(m, 256 if n < 16 else 64))
        nb = max(1, min(n, 256, 4096 // mb))
        for m0 in range(0, m, mb):
            for n0 in range(0, n, nb):
                ab = a2[m0 : m0 + mb]
                bb = b2[:, n0 : n0 + nb]
                kc = max(256, (1 << 19) // (8 * (ab.shape[0] + bb.shape[1])))
                result = None
                for k0 in range(0, k, _DOT_EXACT_TERMS):
                    k1 = k0 + _DOT_EXACT_TERMS
                    part = self._dot_block(ab[:, k0:k1], bb[k0:k1], kc)
                    result = part if result is None else self.add(result, part)
                if result is not None:
                    _raw(out[m0 : m0 + mb, n0 : n0 + nb])[...] = _raw(result)
        return out.reshape(out_shape)

    def _dot_block(self, a: Storage, b: Storage, kc: int) -> Storage:
        """``a @ b`` for ``(M, K) @ (K, N)`` storage with ``K <= 2**21`` and ``M * N <= 4096``.

        Each element is viewed as eight little-endian 16-bit limbs (lo's four, then hi's).
        float64 matrix products of the limbs are exact: every partial sum is an integer below
        ``2**21 * 2**32 = 2**53``.
        """
        (m, k), n = a.shape, b.shape[1]
        acc = np.zeros((8 * m, 8 * n), dtype=np.float64)
        for k0 in range(0, k, kc):
            ak = a[:, k0 : k0 + kc]
            bk = b[k0 : k0 + kc]
            c = ak.shape[1]
            af = np.empty((8, m, c), dtype=np.float64)
            np.copyto(af, ak.view("<u2").reshape(m, c, 8).transpose(2, 0, 1))
            bf = np.empty((c, 8, n), dtype=np.float64)
            np.copyto(bf, bk.view("<u2").reshape(c, n, 8).transpose(0, 2, 1))
            acc += af.reshape(8 * m, c) @ bf.reshape(c, 8 * n)
        products = acc.reshape(8, m, 8, n).astype(np.uint64)
        cols = [np.zeros((m, n), dtype=np.uint64) for _ in range(15)]
        for i in range(8):
            for j in range(8):
                cols[i + j] += products[i, :, j, :]
        for s in range(8, 15):  # 2**128 == 2 (mod p); columns stay below 2**58
            cols[s] <<= _U64(1)
            cols[s - 8] += cols[s]
        out = np.empty(m * n, dtype=self.dtype)
        _k_finish(_SCRATCH, m * n, [col.reshape(-1) for col in cols[:8]], 16, out["lo"], out["hi"])
        return out.reshape(m, n)

    # -- Shamir helpers --------------------------------------------------------------------
    def polynomial_shares(
        self,
        secret: Any,
        degree: int,
        xs: Iterable[int] | np.ndarray,
        generator: np.random.Generator | None = None,
    ) -> Storage:
        secret = self._coerce(secret)
        degree = operator.index(degree)
        if degree < 0:
            raise ValueError("degree must be >= 0")
        points = [int(x) % self.order for x in np.asarray(xs, dtype=object).reshape(-1)]
        shape = secret.shape
        n = secret.size
        if 0 < degree and n <= _SMALL:  # Python integers beat the limb kernels' set-up here
            p = self.order
            small_coefficients = _ints(self.uniform((degree, n), generator))  # c_1..c_d, n each
            constants = _ints(secret)
            values: list[int] = []
            for x in points:
                for e in range(n):
                    accumulator = small_coefficients[(degree - 1) * n + e]
                    for j in range(degree - 2, -1, -1):
                        accumulator = accumulator * x + small_coefficients[j * n + e]
                    values.append((accumulator * x + constants[e]) % p)
            return _from_ints(values, (len(points), *shape))
        flat = _contiguous(secret).reshape(n)
        out = np.empty((len(points), n), dtype=self.dtype)
        if degree == 0:
            _raw(out)[...] = _raw(flat)
            return out.reshape((len(points), *shape))
        S = _SCRATCH
        chunk = max(1024, _CHUNK // degree)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            m = stop - start
            # Coefficients c_1..c_d of this chunk; c_0 is the secret.
            coefficients = self.uniform((degree, m), generator)
            words = [flat[start:stop].view("<u4").reshape(m, 4)]
            words += list(coefficients.view("<u4").reshape(degree, m, 4))
            for row, x in enumerate(points):
                o = out[row, start:stop]
                if x == 0:
                    _raw(o)[...] = _raw(flat[start:stop])
                elif x >= 1 << 30:
                    acc = coefficients[degree - 1]
                    for j in range(degree - 1, -1, -1):
                        acc = self.add(self.multiply(acc, x), coefficients[j - 1] if j else flat[start:stop])
                    _raw(o)[...] = _raw(acc)
                else:
                    _horner32(S, m, words, x, o)
        return out.reshape((len(points), *shape))

    def recombine(self, shares: Any, coefficients: Any) -> Storage:
        shares = self._coerce(shares)
        coefficients = self._coerce(coefficients)
        self._check_recombine(shares, coefficients)
        k = shares.shape[0]
        shape = shares.shape[1:]
        n = math.prod(shape)
        if n <= _SMALL:  # Python integers beat the limb kernels' set-up here
            share_ints = _ints(shares)
            factor_ints = _ints(coefficients)
            p = self.order
            return _from_ints([sum(c * share_ints[i * n + e] for i, c in enumerate(factor_ints)) % p
                               for e in range(n)], shape)
        flat = _contiguous(shares).reshape(k, n)
        factors = [_scalar_limbs26(int(c)) for c in self.to_ints(coefficients)]
        out = np.empty(n, dtype=self.dtype)
        S = _SCRATCH
        for start in range(0, n, _CHUNK):
            stop = min(n, start + _CHUNK)
            m = stop - start
            o = out[start:stop]
            cols = [S.u(_COLS + c, m) for c in range(5)]
            for g0 in range(0, k, _RECOMBINE_GROUP):
                fresh = True
                for i in range(g0, min(k, g0 + _RECOMBINE_GROUP)):
                    if not any(factors[i]):
                        continue
                    lo, hi = _halves(flat[i, start:stop])
                    limbs = _k_limbs26(S, m, lo, hi, _A_LIMBS)
                    _accumulate_product(S, m, cols, limbs, factors[i], fresh)
                    fresh = False
                if fresh:
                    for col in cols:
                        col[...] = 0
                if g0 == 0:
                    _k_finish(S, m, cols, 26, o["lo"], o["hi"])
                else:
                    part = S.s(0, m)
                    _k_finish(S, m, cols, 26, part["lo"], part["hi"])
                    _k_add(S, m, _halves(o), _halves(part), o["lo"], o["hi"])
        return out.reshape(shape)
