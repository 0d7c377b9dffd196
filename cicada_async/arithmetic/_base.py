"""The `Field` interface and the storage helpers every field shares.

A field's *storage* is a numpy array of its dtype with exactly the secret's shape; on the wire
it travels as ``uint64`` words.  The helpers here normalize shapes, copy storage as raw bytes,
check that inputs are integers and read wire data.
"""

from __future__ import annotations

import abc
import math
import operator
from collections.abc import Iterable
from typing import Any

import numpy as np

_U64 = np.uint64
_WIRE_DTYPE = np.dtype("<u8")

# Operations on large arrays work in chunks of this many elements (random words are drawn, and
# the 2**127 - 1 kernels run in scratch buffers, a chunk at a time).
_CHUNK = 1 << 14

Storage = np.ndarray


def _shape(shape: Any) -> tuple[int, ...]:
    if shape is None:
        return ()
    if isinstance(shape, (int, np.integer)):
        return (operator.index(shape),)
    return tuple(operator.index(s) for s in shape)


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

    # -- Python integers (fast for a few elements) ------------------------------------------
    @property
    def element_bytes(self) -> int:
        """Bytes per element, in storage and on the wire alike (a little-endian integer)."""
        return self.dtype.itemsize

    def int_list(self, a: Storage) -> list[int]:
        """The elements of storage ``a`` as a list of Python ints, in C order."""
        data = np.ascontiguousarray(a).tobytes()
        size = self.element_bytes
        from_bytes = int.from_bytes
        return [from_bytes(data[i : i + size], "little") for i in range(0, len(data), size)]

    def from_int_list(self, values: Iterable[int], shape: tuple[int, ...]) -> Storage:
        """Storage of ``shape`` (a tuple) holding ``values``: Python ints in ``[0, order)``."""
        size = self.element_bytes
        data = bytearray(b"".join([value.to_bytes(size, "little") for value in values]))
        return np.frombuffer(data, dtype=self.dtype).reshape(shape)

    def wire_from_ints(self, values: Iterable[int]) -> np.ndarray:
        """What :meth:`to_wire` gives for storage holding ``values`` (reduced Python ints)."""
        size = self.element_bytes
        return np.frombuffer(b"".join([value.to_bytes(size, "little") for value in values]), dtype="<u8")

    def ints_from_wire(self, array: Any, count: int) -> list[int]:
        """The ``count`` elements :meth:`to_wire` output holds, as Python ints.

        Raises
        ------
        ValueError
            If the length does not match or a value is ``>= order`` (the data is untrusted).
        """
        if type(array) is not np.ndarray or array.dtype != _WIRE_DTYPE:
            array = _wire_words(array)
        size = self.element_bytes
        if array.size * 8 != count * size:
            raise ValueError(f"wire data holds {array.size} words, expected {count * size // 8} for {count} values")
        data = array.tobytes()
        from_bytes = int.from_bytes
        values = [from_bytes(data[i : i + size], "little") for i in range(0, len(data), size)]
        order = self.order
        if any(value >= order for value in values):
            raise ValueError("wire data holds a value >= the field order")
        return values

    def random_ints(self, count: int, generator: np.random.Generator | None = None) -> list[int]:
        """``count`` uniformly random elements as Python ints (see :meth:`uniform`)."""
        return self.int_list(self.uniform((count,), generator))

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
