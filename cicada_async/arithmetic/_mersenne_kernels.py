"""Chunk kernels for arithmetic modulo ``p = 2**127 - 1`` on two-limb storage.

The kernels work chunk by chunk (at most ``_CHUNK`` elements) in per-thread scratch buffers, so
temporaries stay in cache and are never freshly allocated (fresh multi-megabyte temporaries
cost more in page faults than the arithmetic itself).  A kernel reads its operands as uint64
views (or numpy uint64 scalars for broadcast scalars), writes its result to output views, and
never modifies its inputs.

Products use five 26-bit limbs (`_k_limbs26`, `_accumulate_product`), Horner's rule four lazily
carried 32-bit limbs (`_horner32`); `_k_finish` carries limb columns and folds the bits past
``2**127`` back in (``2**127 == 1 (mod p)``), and `_k_canonical` makes the result fully reduced.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ._base import _CHUNK, _U64, Storage

_MAX64 = np.uint64((1 << 64) - 1)
_M63 = np.uint64((1 << 63) - 1)
_M26 = np.uint64((1 << 26) - 1)
_M14 = np.uint64((1 << 14) - 1)

_MERSENNE_DTYPE = np.dtype([("lo", "<u8"), ("hi", "<u8")])

# polynomial_shares() keeps Horner's lazy 32-bit limbs below this bound.
_LAZY_BOUND = 1 << 62


class _Scratch(threading.local):
    """Per-thread reusable buffers of ``_CHUNK`` elements, addressed by index."""

    def __init__(self) -> None:
        self.words: list[np.ndarray] = []
        self.flags: list[np.ndarray] = []
        self.elements: list[np.ndarray] = []

    def u(self, index: int, m: int) -> np.ndarray:
        while len(self.words) <= index:
            self.words.append(np.empty(_CHUNK, dtype=np.uint64))
        return self.words[index][:m]

    def b(self, index: int, m: int) -> np.ndarray:
        while len(self.flags) <= index:
            self.flags.append(np.empty(_CHUNK, dtype=np.bool_))
        return self.flags[index][:m]

    def s(self, index: int, m: int) -> np.ndarray:
        while len(self.elements) <= index:
            self.elements.append(np.empty(_CHUNK, dtype=_MERSENNE_DTYPE))
        return self.elements[index][:m]


_SCRATCH = _Scratch()

# Scratch word indices (kept disjoint so kernels can call each other).
_A_LIMBS, _B_LIMBS = 0, 6  # five limbs + one temporary each
_B8 = 12  # four wrapped multipliers
_PRODUCT = 16
_COLS = 20  # up to eight columns
_LO, _HI = 28, 29
_FINISH_TMP, _FINISH_TOP = 30, 31
_CANON_H1, _CANON_T = 32, 33


def _k_canonical(
    S: _Scratch, m: int, lo: np.ndarray, hi: np.ndarray, out_lo: np.ndarray, out_hi: np.ndarray
) -> None:
    """Write ``s mod p`` for ``s = hi * 2**64 + lo <= 2p`` (``lo``/``hi`` are scratch).

    With ``t = (s + 1) >> 127`` (1 exactly when ``s >= p``) the result is ``(s + t) mod 2**127``.
    """
    e = S.b(0, m)
    np.equal(lo, _MAX64, out=e)  # adding 1 to lo would carry
    h1 = S.u(_CANON_H1, m)
    np.add(hi, e, out=h1)
    t = S.u(_CANON_T, m)
    np.right_shift(h1, _U64(63), out=t)
    np.add(lo, t, out=out_lo)
    h1 -= hi  # e as a word
    h1 &= t  # the carry out of lo + t
    hi += h1
    np.bitwise_and(hi, _M63, out=out_hi)


def _k_finish(
    S: _Scratch, m: int, cols: list[np.ndarray], width: int, out_lo: np.ndarray, out_hi: np.ndarray
) -> None:
    """Reduce scratch columns ``cols[k]`` of weight ``2**(width*k)`` (each < 2**62) to storage.

    Requires ``len(cols) * width >= 127 > (len(cols) - 1) * width``; the columns are clobbered.
    """
    n = len(cols)
    mask = _U64((1 << width) - 1)
    tmp = S.u(_FINISH_TMP, m)
    for k in range(n - 1):
        np.right_shift(cols[k], _U64(width), out=tmp)
        cols[k] &= mask
        cols[k + 1] += tmp
    top_width = 127 - width * (n - 1)
    top = S.u(_FINISH_TOP, m)
    np.right_shift(cols[-1], _U64(top_width), out=top)  # bits >= 2**127, and 2**127 == 1 (mod p)
    cols[-1] &= _U64((1 << top_width) - 1)
    lo = cols[0]
    hi = None
    for k in range(1, n):
        r = cols[k]
        pos = width * k
        if pos < 64:
            np.left_shift(r, _U64(pos), out=tmp)
            lo |= tmp
            if pos + width > 64:
                r >>= _U64(64 - pos)
                hi = r
        elif hi is None:
            if pos > 64:
                r <<= _U64(pos - 64)
            hi = r
        else:
            np.left_shift(r, _U64(pos - 64), out=tmp)
            hi |= tmp
    assert hi is not None
    lo += top
    carry = S.b(1, m)
    np.less(lo, top, out=carry)
    hi += carry
    _k_canonical(S, m, lo, hi, out_lo, out_hi)


def _scalar_limbs26(value: int) -> list[int]:
    return [(value >> (26 * i)) & ((1 << 26) - 1) for i in range(5)]


def _k_limbs26(S: _Scratch, m: int, lo: Any, hi: Any, base: int) -> list[Any]:
    """Five 26-bit limbs (the last has 23 bits): scratch arrays, or ints for a scalar."""
    if not isinstance(lo, np.ndarray):
        return _scalar_limbs26((int(hi) << 64) | int(lo))
    limbs = [S.u(base + i, m).reshape(lo.shape) for i in range(5)]
    tmp = S.u(base + 5, m).reshape(lo.shape)
    np.bitwise_and(lo, _M26, out=limbs[0])
    np.right_shift(lo, _U64(26), out=limbs[1])
    limbs[1] &= _M26
    np.right_shift(lo, _U64(52), out=limbs[2])
    np.bitwise_and(hi, _M14, out=tmp)
    tmp <<= _U64(12)
    limbs[2] |= tmp
    np.right_shift(hi, _U64(14), out=limbs[3])
    limbs[3] &= _M26
    np.right_shift(hi, _U64(40), out=limbs[4])
    return limbs


def _accumulate_product(
    S: _Scratch, m: int, cols: list[np.ndarray], a: list[np.ndarray], b: list[Any], fresh: bool
) -> None:
    """``cols += a * b`` folded modulo p (or ``cols = ...`` when ``fresh``).

    ``a`` holds limb arrays, ``b`` limb arrays or ints.  Column k gathers ``a[i] * b[k - i]``;
    products past limb 4 wrap to column ``k - 5`` times ``2**130 mod p = 8``.  Each call adds
    less than ``19 * 2**52`` to a column.
    """
    if isinstance(b[0], np.ndarray):
        b8 = [None] + [np.left_shift(b[j], _U64(3), out=S.u(_B8 + j - 1, m)) for j in range(1, 5)]
    else:
        b8 = [bj << 3 for bj in b]
    tmp = S.u(_PRODUCT, m)
    for k in range(5):
        first = fresh
        for i in range(5):
            j = k - i
            f = b[j] if j >= 0 else b8[j + 5]
            if isinstance(f, int):
                if not f:
                    continue
                f = _U64(f)
            if first:
                np.multiply(a[i], f, out=cols[k])
                first = False
            else:
                np.multiply(a[i], f, out=tmp)
                cols[k] += tmp
        if first:
            cols[k][...] = 0


def _k_add(S: _Scratch, m: int, a: Any, b: Any, out_lo: np.ndarray, out_hi: np.ndarray) -> None:
    (alo, ahi), (blo, bhi) = a, b
    lo = S.u(_LO, m)
    hi = S.u(_HI, m)
    np.add(alo, blo, out=lo)
    np.add(ahi, bhi, out=hi)
    carry = S.b(1, m)
    np.less(lo, alo, out=carry)
    hi += carry
    _k_canonical(S, m, lo, hi, out_lo, out_hi)


def _k_subtract(S: _Scratch, m: int, a: Any, b: Any, out_lo: np.ndarray, out_hi: np.ndarray) -> None:
    (alo, ahi), (blo, bhi) = a, b
    lo = S.u(_LO, m)
    hi = S.u(_HI, m)
    np.subtract(alo, blo, out=lo)
    np.subtract(ahi, bhi, out=hi)
    borrow = S.b(1, m)
    np.less(alo, blo, out=borrow)
    hi -= borrow
    # A negative difference d (top bit of hi set) becomes d + p = (d + 2**127) - 1.
    neg = S.u(_FINISH_TMP, m)
    np.right_shift(hi, _U64(63), out=neg)
    np.subtract(lo, neg, out=out_lo)
    np.greater(out_lo, lo, out=borrow)
    hi -= borrow
    np.bitwise_and(hi, _M63, out=out_hi)


def _k_negative(S: _Scratch, m: int, a: Any, out_lo: np.ndarray, out_hi: np.ndarray) -> None:
    alo, ahi = a
    lo = S.u(_LO, m)
    hi = S.u(_HI, m)
    # p - a is the 127-bit complement; a == 0 gives p, which _k_canonical maps to 0.
    np.invert(alo, out=lo)
    np.bitwise_xor(ahi, _M63, out=hi)
    _k_canonical(S, m, lo, hi, out_lo, out_hi)


def _k_multiply(S: _Scratch, m: int, a: Any, b: Any, out_lo: np.ndarray, out_hi: np.ndarray) -> None:
    la = _k_limbs26(S, m, a[0], a[1], _A_LIMBS)
    lb = _k_limbs26(S, m, b[0], b[1], _B_LIMBS)
    if not isinstance(la[0], np.ndarray):
        la, lb = lb, la
    if not isinstance(la[0], np.ndarray):  # both scalars
        la = [np.full(m, x, dtype=np.uint64) for x in la]
    cols = [S.u(_COLS + k, m) for k in range(5)]
    _accumulate_product(S, m, cols, la, lb, fresh=True)
    _k_finish(S, m, cols, 26, out_lo, out_hi)


def _k_square(S: _Scratch, m: int, a: Any, out_lo: np.ndarray, out_hi: np.ndarray) -> None:
    """``a * a`` with 15 limb products instead of 25."""
    la = _k_limbs26(S, m, a[0], a[1], _A_LIMBS)
    if not isinstance(la[0], np.ndarray):
        la = [np.full(m, x, dtype=np.uint64) for x in la]
    # Multipliers: 2*a_j for cross terms, times 8 when the product wraps past limb 4.
    doubled = [np.left_shift(la[j], _U64(1), out=S.u(_B_LIMBS + j, m)) for j in range(5)]
    cols = [S.u(_COLS + k, m) for k in range(5)]
    tmp = S.u(_PRODUCT, m)
    for k in range(5):
        first = True
        for i in range(5):
            j = (k - i) % 5
            if i > j:
                continue
            wrapped = k - i < 0
            np.multiply(la[i], la[j] if i == j else doubled[j], out=tmp)
            if wrapped:
                tmp <<= _U64(3)
            if first:
                cols[k][...] = tmp
                first = False
            else:
                cols[k] += tmp
    _k_finish(S, m, cols, 26, out_lo, out_hi)


def _horner32(S: _Scratch, m: int, words: list[np.ndarray], x: int, out: Storage) -> None:
    """Write ``sum(c_j * x**j) mod p`` for ``0 < x < 2**30`` into the storage view ``out``.

    ``words[j]`` is coefficient j as ``(m, 4)`` little-endian 32-bit limbs.  Horner's rule runs
    on four lazy (unreduced) 64-bit limb accumulators, carried only when they could overflow.
    """
    degree = len(words) - 1
    acc = [S.u(_COLS + i, m) for i in range(4)]
    for i in range(4):
        np.copyto(acc[i], words[degree][:, i])
    bound = (1 << 32) - 1
    xw = _U64(x)
    for j in range(degree - 1, -1, -1):
        if bound * x + (1 << 32) > _LAZY_BOUND:
            tmp = S.s(1, m)
            _k_finish(S, m, acc, 32, tmp["lo"], tmp["hi"])
            limbs = tmp.view("<u4").reshape(m, 4)
            for i in range(4):
                np.copyto(acc[i], limbs[:, i])
            bound = (1 << 32) - 1
        for i in range(4):
            if x != 1:
                acc[i] *= xw
            np.add(acc[i], words[j][:, i], out=acc[i])
        bound = bound * x + (1 << 32) - 1
    _k_finish(S, m, acc, 32, out["lo"], out["hi"])
