"""Prime-field arithmetic on numpy arrays, for Shamir secret sharing.

A *field* turns secrets into *storage* arrays (numpy arrays of fixed-width integers with exactly
the secret's shape) and does modular arithmetic on them, elementwise and vectorized.  Nothing
here is asynchronous or talks to the network.

Why the default field is the Mersenne prime ``2**127 - 1``
----------------------------------------------------------
Fixed-point multiplication doubles the number of fractional bits, so the protocol suite
truncates the product *probabilistically*: a shared value ``y < 2**k`` is masked by random
integers ``r_i < 2**(k + 40)`` contributed by up to 64 players, and ``y + sum(r_i)`` is revealed.
The statistical security parameter is **40 bits**: the revealed sum hides ``y`` up to a
statistical distance of about ``2**-40``.  The revealed sum must not wrap around the modulus,
and ``y + sum(r_i) < 2**k + 64 * 2**(k + 40) <= 2**(k + 47)`` (40 bits of masking plus
``log2(64) + 1 = 7`` bits of headroom), so the field must exceed ``2**(k + 40 + 7)``.  With
``k`` around 80 bits (fixed-point values with 16 fractional bits, doubled by a product, plus
room for sums) that is about ``2**127``, more than 64-bit integers hold.  Hence the default
field is ``p = 2**127 - 1``, which is prime and makes reduction cheap because
``2**127 == 1 (mod p)``.

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

`PrimeField` handles any prime below ``2**64`` with ``uint64`` storage (for tests, interop and
small-field experiments); its multiplication is slower when the order is ``>= 2**32``.

Randomness
----------
`Field.uniform` without a generator is cryptographically secure: it draws from OpenSSL's
CSPRNG (``ssl.RAND_bytes``: a DRBG seeded by the operating system and reseeded after
``fork``), falling back to ``os.urandom`` when the ``ssl`` module is unavailable; the kernel's
``urandom`` alone is about ten times slower here (4 ms for 1.6 MB).  Rejection sampling avoids
any modulo bias.  Passing a ``numpy.random.Generator`` makes the output reproducible, which is
for tests only: numpy's generators are not cryptographically secure.
"""

from __future__ import annotations

import abc
import contextlib
import math
import operator
import os
import threading
from collections.abc import Iterable
from typing import Any

import numpy as np

try:
    import ssl as _ssl
except ImportError:  # pragma: no cover - Python built without OpenSSL
    _ssl = None  # type: ignore[assignment]

__all__ = ["MERSENNE_127", "Field", "MersenneField", "PrimeField", "field"]

#: The default field order, the Mersenne prime ``2**127 - 1``.
MERSENNE_127 = (1 << 127) - 1

_U64 = np.uint64
_MAX64 = np.uint64((1 << 64) - 1)
_M63 = np.uint64((1 << 63) - 1)
_M32 = np.uint64((1 << 32) - 1)
_M26 = np.uint64((1 << 26) - 1)
_M14 = np.uint64((1 << 14) - 1)

_MERSENNE_DTYPE = np.dtype([("lo", "<u8"), ("hi", "<u8")])
_WIRE_DTYPE = np.dtype("<u8")

# Largest single ssl.RAND_bytes request.
_RANDOM_BYTES_PER_CALL = 1 << 30

# recombine() accumulates this many products before carrying (column sums stay < 2**62).
_RECOMBINE_GROUP = 32
# dot() sums at most this many float64 products of 16-bit limbs (each < 2**32) before
# carrying, so every partial sum stays below 2**53 and is exact.
_DOT_EXACT_TERMS = 1 << 21
# polynomial_shares() keeps Horner's lazy 32-bit limbs below this bound.
_LAZY_BOUND = 1 << 62


Storage = np.ndarray


def _shape(shape: Any) -> tuple[int, ...]:
    if shape is None:
        return ()
    if isinstance(shape, (int, np.integer)):
        return (operator.index(shape),)
    return tuple(operator.index(s) for s in shape)


def _secure_bytes(nbytes: int) -> bytes:
    if _ssl is not None:
        with contextlib.suppress(_ssl.SSLError):  # OpenSSL failing to seed itself is unheard of
            return _ssl.RAND_bytes(nbytes)
    return os.urandom(nbytes)


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


def _raw(a: np.ndarray) -> np.ndarray:
    """``a`` viewed as opaque bytes of the same item size.

    numpy copies structured arrays field by field, about ten times slower than plain memory;
    copies and assignments through this view are plain memory copies.
    """
    return a.view(np.dtype((np.void, a.dtype.itemsize)))


def _copy(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``a`` (any layout, 0-d included)."""
    return np.array(_raw(a), order="C").view(a.dtype)


def _contiguous(a: np.ndarray) -> np.ndarray:
    """``a`` itself when C-contiguous, else a C-contiguous copy."""
    return a if a.flags.c_contiguous else _copy(a)


def _as_integer_array(values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "f" and not isinstance(values, np.ndarray):
        # numpy turns lists that mix negative and >= 2**63 ints into float64: keep them exact.
        arr = np.asarray(values, dtype=object)
    return arr


def _check_integer_objects(arr: np.ndarray) -> None:
    for v in arr.flat:
        if not isinstance(v, (int, np.integer, np.bool_)):
            raise TypeError(f"cannot convert {v!r} ({type(v).__name__}) to a field element; integers only")


class Field(abc.ABC):
    """A prime field whose elements are stored in numpy arrays.

    Attributes
    ----------
    order : int
        The (prime) number of elements.
    bits : int
        ``order.bit_length()``.
    dtype : numpy.dtype
        The dtype of storage arrays.

    Notes
    -----
    Wherever a storage array is expected, a Python int (or an integer array that is not of the
    storage dtype) is accepted too and converted with ``field(value)``.  Storage arrays passed
    in must hold fully reduced values, as every method here produces.  Results are new arrays;
    inputs are never modified.
    """

    order: int
    bits: int
    dtype: np.dtype

    def __init__(self, order: int, dtype: np.dtype) -> None:
        self.order = order
        self.bits = order.bit_length()
        self.dtype = np.dtype(dtype)

    # -- identity ------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Field):
            return NotImplemented
        return type(self) is type(other) and self.order == other.order

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.order))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(order={self.order})"

    # -- conversion ----------------------------------------------------------------------
    @abc.abstractmethod
    def __call__(self, values: Any) -> Storage:
        """Convert integers to storage, reducing modulo the order.

        Parameters
        ----------
        values : int, bool, array_like
            Python ints or bools, numpy integer or bool arrays, or object arrays of Python
            ints, of any sign and size.  Floats are rejected (use an encoding).

        Returns
        -------
        numpy.ndarray
            Storage with the input's shape (0-d for a scalar).
        """

    def _coerce(self, value: Any) -> Storage:
        if isinstance(value, np.ndarray) and value.dtype == self.dtype:
            return value
        return self(value)

    @abc.abstractmethod
    def from_signed(self, values: Any) -> Storage:
        """Convert signed integers (fast path for ``int64`` arrays) to storage."""

    @abc.abstractmethod
    def to_ints(self, a: Storage) -> np.ndarray:
        """Return an object array of Python ints in ``[0, order)`` with ``a``'s shape."""

    @abc.abstractmethod
    def to_float_signed(self, a: Storage) -> np.ndarray:
        """Return ``a`` as float64, reading values above ``order // 2`` as ``value - order``."""

    @abc.abstractmethod
    def to_wire(self, a: Storage) -> np.ndarray:
        """Return a new C-contiguous 1-d ``uint64`` array holding the storage ``a``."""

    @abc.abstractmethod
    def from_wire(self, array: Any, shape: Any) -> Storage:
        """Rebuild storage of ``shape`` from `to_wire` output.

        Parameters
        ----------
        array : numpy.ndarray or bytes-like
            ``uint64`` words (or their little-endian bytes); may be read-only.
        shape : tuple of int
            The storage's shape.

        Raises
        ------
        ValueError
            If the length does not match ``shape`` or a decoded value is ``>= order`` (wire
            data comes from other players and is not trusted).
        """

    # -- constructors --------------------------------------------------------------------
    def zeros(self, shape: Any) -> Storage:
        """Storage of zeros."""
        return np.zeros(_shape(shape), dtype=self.dtype)

    def ones(self, shape: Any) -> Storage:
        """Storage of ones."""
        return self.full(shape, 1)

    def full(self, shape: Any, value: int) -> Storage:
        """Storage with every element equal to ``value`` (reduced modulo the order)."""
        out = np.empty(_shape(shape), dtype=self.dtype)
        _raw(out)[...] = _raw(self(operator.index(value)))
        return out

    def zeros_like(self, a: Any) -> Storage:
        """Zeros with the shape of ``a``."""
        return self.zeros(np.shape(a))

    def full_like(self, a: Any, value: int) -> Storage:
        """Storage with the shape of ``a``, every element ``value``."""
        return self.full(np.shape(a), value)

    @abc.abstractmethod
    def uniform(self, shape: Any = (), generator: np.random.Generator | None = None) -> Storage:
        """Uniformly random elements of ``[0, order)``.

        Parameters
        ----------
        shape : int or tuple of int
            Shape of the result.
        generator : numpy.random.Generator, optional
            With ``None`` (the default) the randomness is cryptographically secure
            (OpenSSL's ``RAND_bytes`` via the ``ssl`` module, else ``os.urandom``) and rejection
            sampling avoids any modulo bias.  A numpy generator makes the result reproducible; it is
            **not** cryptographically secure and is meant for tests only.
        """

    # -- arithmetic ----------------------------------------------------------------------
    @abc.abstractmethod
    def add(self, a: Any, b: Any) -> Storage:
        """Elementwise ``(a + b) mod order`` (broadcasting)."""

    @abc.abstractmethod
    def subtract(self, a: Any, b: Any) -> Storage:
        """Elementwise ``(a - b) mod order`` (broadcasting)."""

    @abc.abstractmethod
    def negative(self, a: Any) -> Storage:
        """Elementwise ``-a mod order``."""

    @abc.abstractmethod
    def multiply(self, a: Any, b: Any) -> Storage:
        """Elementwise ``(a * b) mod order`` (broadcasting)."""

    @abc.abstractmethod
    def sum(self, a: Any, axis: int | tuple[int, ...] | None = None) -> Storage:
        """Modular sum over ``axis`` (all elements when ``None``); exact for up to 2**32 terms."""

    @abc.abstractmethod
    def dot(self, a: Any, b: Any) -> Storage:
        """Modular matrix product with the semantics of ``numpy.dot``."""

    @abc.abstractmethod
    def equal(self, a: Any, b: Any) -> np.ndarray:
        """Elementwise equality of field elements, as a bool array."""

    def power(self, a: Any, exponent: int) -> Storage:
        """Elementwise ``a ** exponent mod order`` for a public int ``exponent >= 0``.

        Vectorized left-to-right square-and-multiply (with a 4-bit window for long exponents).
        ``0 ** 0`` is 1.
        """
        a = self._coerce(a)
        exponent = operator.index(exponent)
        if exponent < 0:
            raise ValueError("exponent must be >= 0")
        if exponent == 0:
            return self.ones(a.shape)
        if exponent.bit_length() <= 16:
            result = a
            for bit in bin(exponent)[3:]:
                result = self.multiply(result, result)
                if bit == "1":
                    result = self.multiply(result, a)
            return result if result is not a else _copy(a)
        window = 4
        table = [self.ones(a.shape), a]
        for _ in range(2, 1 << window):
            table.append(self.multiply(table[-1], a))
        digits = []
        e = exponent
        while e:
            digits.append(e & ((1 << window) - 1))
            e >>= window
        result = table[digits[-1]]
        for digit in reversed(digits[:-1]):
            for _ in range(window):
                result = self.multiply(result, result)
            if digit:
                result = self.multiply(result, table[digit])
        return result

    def inverse(self, a: Any) -> Storage:
        """Elementwise multiplicative inverse (Fermat: ``a ** (order - 2)``).

        Raises
        ------
        ZeroDivisionError
            If any element is 0.
        """
        a = self._coerce(a)
        if np.any(self.equal(a, 0)):
            raise ZeroDivisionError("field element 0 has no inverse")
        if a.size <= 1024:
            # Python's pow is faster than ~170 vectorized multiplications for small arrays.
            ints = self.to_ints(a)
            return self(np.vectorize(lambda v: pow(v, -1, self.order), otypes=[object])(ints))
        return self.power(a, self.order - 2)

    # -- Shamir helpers --------------------------------------------------------------------
    def lagrange_coefficients(self, xs: Any, at: int = 0) -> Storage:
        """Lagrange coefficients for interpolating at ``at`` from points ``xs``.

        Parameters
        ----------
        xs : sequence of int or numpy integer array
            Distinct x-values (nonzero for Shamir shares).
        at : int
            Where to evaluate.

        Returns
        -------
        numpy.ndarray
            Storage of shape ``(len(xs),)`` holding ``λ_i`` with
            ``f(at) = sum(λ_i * f(xs[i]))`` for every polynomial of degree ``< len(xs)``.

        Raises
        ------
        ValueError
            If two x-values are equal modulo the order.
        """
        p = self.order
        points = [int(x) % p for x in np.asarray(xs, dtype=object).reshape(-1)]
        if len(set(points)) != len(points):
            raise ValueError(f"x values must be distinct, got {[int(x) for x in np.ravel(xs)]}")
        at = operator.index(at) % p
        coefficients = []
        for i, xi in enumerate(points):
            numerator = denominator = 1
            for j, xj in enumerate(points):
                if j != i:
                    numerator = numerator * (at - xj) % p
                    denominator = denominator * (xi - xj) % p
            coefficients.append(numerator * pow(denominator, -1, p) % p)
        return self(np.array(coefficients, dtype=object).reshape(len(points)))

    def polynomial_shares(
        self,
        secret: Any,
        degree: int,
        xs: Iterable[int] | np.ndarray,
        generator: np.random.Generator | None = None,
    ) -> Storage:
        """Shamir shares: evaluate fresh random polynomials with constant term ``secret``.

        Parameters
        ----------
        secret : storage
            The secret; every element gets its own polynomial.
        degree : int
            Degree of the polynomials (``threshold - 1``).
        xs : sequence of int
            Points to evaluate at (small positive ints, usually ``1..world_size``).
        generator : numpy.random.Generator, optional
            See `uniform`; only for reproducible tests.

        Returns
        -------
        numpy.ndarray
            Storage of shape ``(len(xs), *secret.shape)``; row ``i`` is the share at ``xs[i]``.
        """
        secret = self._coerce(secret)
        degree = operator.index(degree)
        if degree < 0:
            raise ValueError("degree must be >= 0")
        points = [int(x) % self.order for x in np.asarray(xs, dtype=object).reshape(-1)]
        coefficients = self.uniform((degree, *secret.shape), generator)
        out = np.empty((len(points), *secret.shape), dtype=self.dtype)
        for row, x in enumerate(points):
            acc = coefficients[degree - 1] if degree else secret
            for j in range(degree - 2, -2, -1):
                acc = self.add(self.multiply(acc, x), coefficients[j] if j >= 0 else secret)
            _raw(out[row])[...] = _raw(acc)
        return out

    def recombine(self, shares: Any, coefficients: Any) -> Storage:
        """``sum(coefficients[i] * shares[i])`` over the leading axis of ``shares``.

        Parameters
        ----------
        shares : storage of shape ``(k, *shape)``
        coefficients : storage of shape ``(k,)``, e.g. from `lagrange_coefficients`.
        """
        shares = self._coerce(shares)
        coefficients = self._coerce(coefficients)
        self._check_recombine(shares, coefficients)
        c = coefficients.reshape(coefficients.shape + (1,) * (shares.ndim - 1))
        return self.sum(self.multiply(c, shares), axis=0)

    @staticmethod
    def _check_recombine(shares: Storage, coefficients: Storage) -> None:
        if shares.ndim == 0 or coefficients.shape != (shares.shape[0],):
            raise ValueError(
                f"need shares of shape (k, ...) and coefficients of shape (k,), "
                f"got {shares.shape} and {coefficients.shape}"
            )

    # -- helpers shared by the subclasses ----------------------------------------------------
    def _dot_shapes(self, a: Storage, b: Storage) -> tuple[Storage, Storage, tuple[int, ...]]:
        """Reshape ``a``, ``b`` (ndim >= 1) to ``(M, K)`` and ``(K, N)`` as numpy.dot would."""
        k = a.shape[-1]
        kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if k != kb:
            raise ValueError(f"shapes {a.shape} and {b.shape} not aligned: {k} (dim {a.ndim - 1}) != {kb}")
        a2 = _contiguous(a).reshape(math.prod(a.shape[:-1]), k)
        if b.ndim == 1:
            b2 = b.reshape(k, 1)
            out_shape = a.shape[:-1]
        else:
            rest = b.shape[:-2] + b.shape[-1:]
            b2 = _contiguous(np.moveaxis(b, -2, 0)).reshape(k, math.prod(rest))
            out_shape = a.shape[:-1] + rest
        return a2, b2, out_shape


# ------------------------------------------------------------------------------------------
# 2**127 - 1 kernels.  They work chunk by chunk (at most _CHUNK elements) in per-thread scratch
# buffers, so temporaries stay in cache and are never freshly allocated (fresh multi-megabyte
# temporaries cost more in page faults than the arithmetic itself).  A kernel reads its
# operands as uint64 views (or numpy uint64 scalars for broadcast scalars), writes its result
# to output views, and never modifies its inputs.
# ------------------------------------------------------------------------------------------

_CHUNK = 1 << 14
_SMALL = 32  # up to this many elements, Python integers are faster than the limb kernels


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
    ``0 <= value < p`` (always fully reduced).  See the module docstring for why this field
    and how the arithmetic is done.

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
        out = np.empty(n, dtype=self.dtype)
        out.view(_WIRE_DTYPE)[...] = words
        hi = out["hi"]
        suspect = np.flatnonzero(hi >= _M63)
        if suspect.size and (np.any(hi[suspect] > _M63) or np.any(out["lo"][suspect] == _MAX64)):
            raise ValueError("wire data holds a value >= the field order")
        return out.reshape(shape)

    # -- constructors --------------------------------------------------------------------
    def uniform(self, shape: Any = (), generator: np.random.Generator | None = None) -> Storage:
        shape = _shape(shape)
        n = math.prod(shape)
        out = np.empty(n, dtype=self.dtype)
        _fill_random(out.view(_WIRE_DTYPE), generator)
        hi = out["hi"]
        hi &= _M63
        while n and hi.max() == _M63:  # reject the one 127-bit value >= p (probability 2**-127)
            suspect = np.flatnonzero(hi == _M63)
            if suspect.size:
                suspect = suspect[out["lo"][suspect] == _MAX64]
            if not suspect.size:
                break
            redo = np.empty(suspect.size, dtype=self.dtype)
            redo.view(_WIRE_DTYPE)[...] = _random_words(2 * suspect.size, generator)
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
        return self._map(_k_add, a, b)

    def subtract(self, a: Any, b: Any) -> Storage:
        return self._map(_k_subtract, a, b)

    def negative(self, a: Any) -> Storage:
        return self._map(_k_negative, a)

    def multiply(self, a: Any, b: Any) -> Storage:
        a = self._coerce(a)
        b = a if b is a else self._coerce(b)
        if a.size <= _SMALL and b.size <= _SMALL:  # the limb kernels' set-up would dominate
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
            x = _contiguous(a).reshape(-1)
            totals = [0] * 5
            for start in range(0, r, _CHUNK):
                stop = min(r, start + _CHUNK)
                limbs = _k_limbs26(S, stop - start, *_halves(x[start:stop]), _A_LIMBS)
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
            coefficients = self.to_ints(self.uniform((degree, *shape), generator))
            constant = self.to_ints(secret)
            rows = []
            for x in points:
                accumulator = coefficients[degree - 1]
                for j in range(degree - 2, -1, -1):
                    accumulator = accumulator * x + coefficients[j]
                rows.append(np.asarray((accumulator * x + constant) % self.order, dtype=object))
            return self(np.stack(rows) if rows else np.empty((0, *shape), dtype=object))
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
            values = self.to_ints(shares)
            total = sum((int(c) * values[i] for i, c in enumerate(self.to_ints(coefficients))),
                        start=np.zeros(shape, dtype=object))
            return self(np.asarray(total % self.order, dtype=object))
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


def _wire_words(array: Any) -> np.ndarray:
    if isinstance(array, (bytes, bytearray, memoryview)):
        raw = np.frombuffer(array, dtype=np.uint8)
        if raw.size % 8:
            raise ValueError("wire data length is not a multiple of 8 bytes")
        return raw.view(_WIRE_DTYPE)
    words = np.asarray(array)
    if words.dtype.kind != "u" or words.dtype.itemsize != 8:
        raise ValueError(f"wire data must be uint64 words, got dtype {words.dtype}")
    return words.reshape(-1)


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
            words = _random_words(int(need / acceptance * 1.05) + 16, generator) & mask
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


def field(order: int | None = None) -> Field:
    """Return the field of the given order: `MersenneField` for ``None`` or ``2**127 - 1``,
    otherwise ``PrimeField(order)`` (a prime below ``2**64``)."""
    if order is None or (not isinstance(order, bool) and order == MERSENNE_127):
        return MersenneField()
    return PrimeField(order)
