"""Encodings between ordinary numpy arrays and field storage.

The class names match Cicada's: `FixedPoint` (the default of the protocol suites), `Identity`,
`Boolean` and `Bits`.  Every encoding has ``encode(array, field)``, returning storage for the
given `~cicada_async.arithmetic.Field`, and ``decode(storage, field)``, returning an ordinary
numpy array; ``None`` passes through both unchanged (players that receive nothing).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .arithmetic import Field

__all__ = ["Bits", "Boolean", "Encoding", "FixedPoint", "Identity"]

_CHUNK = 1 << 16
_SMALL = 16  # up to this many values, Python numbers are faster than numpy


class Encoding:
    """Base class: equality and hashing by type (and parameters), a readable repr."""

    def _parameters(self) -> tuple[Any, ...]:
        return ()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Encoding):
            return NotImplemented
        return type(self) is type(other) and self._parameters() == other._parameters()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._parameters()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def encode(self, array: Any, field: Field) -> np.ndarray | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, storage: np.ndarray | None, field: Field) -> np.ndarray | None:  # pragma: no cover
        raise NotImplementedError

    def _check_storage(self, storage: Any, field: Field) -> np.ndarray:
        if not isinstance(storage, np.ndarray) or storage.dtype != field.dtype:
            got = storage.dtype if isinstance(storage, np.ndarray) else type(storage).__name__
            raise ValueError(f"{self!r}.decode needs storage of {field!r} (dtype {field.dtype}), got {got}")
        return storage


class FixedPoint(Encoding):
    """Real numbers as integers scaled by ``2**precision``: ``x -> round(x * 2**precision)``.

    Parameters
    ----------
    precision : int
        Number of fractional bits (default 16); encoding rounds to the nearest multiple of
        ``2**-precision`` (ties to even).

    Notes
    -----
    Values are converted to float64 first.  Negative values become ``order - |v|``; `decode`
    reads values above ``order // 2`` as negative and returns float64.

    A value can be encoded when it is finite and ``|x| * 2**precision < 2**(field.bits - 2)``,
    which leaves room for a sum or a difference of two encoded values to keep its sign;
    otherwise `encode` raises ``ValueError`` naming the value.  When every
    ``|x| * 2**precision`` is below ``2**63`` (all ordinary inputs) the encoding is vectorized
    through ``int64``; larger values that pass the check above (possible in the 127-bit field)
    are encoded exactly but slowly, through Python ints.
    """

    def __init__(self, precision: int = 16) -> None:
        if isinstance(precision, bool) or not isinstance(precision, (int, np.integer)):
            raise TypeError(f"precision must be an int, not {type(precision).__name__}")
        if precision < 0:
            raise ValueError(f"precision must be >= 0, got {precision}")
        self._precision = int(precision)

    @property
    def precision(self) -> int:
        """Number of fractional bits."""
        return self._precision

    def _parameters(self) -> tuple[Any, ...]:
        return (self._precision,)

    def __repr__(self) -> str:
        return f"FixedPoint(precision={self._precision})"

    def encode(self, array: Any, field: Field) -> np.ndarray | None:
        """Encode a real array (anything ``numpy.asarray`` turns into numbers) as storage."""
        if array is None:
            return None
        x = _as_float(array, self)
        scale = 2.0**self._precision
        fast_limit = min(2.0 ** (field.bits - 2), 2.0**63)
        if x.size <= _SMALL:  # a few values: Python numbers beat numpy's per-call cost
            scaled_values = [value * scale for value in x.reshape(-1).tolist()]
            if all(abs(value) < fast_limit for value in scaled_values):  # also false for NaN, inf
                order = field.order
                return field.from_int_list([round(value) % order for value in scaled_values], x.shape)
        flat = x.reshape(-1)
        out = np.empty(flat.size, dtype=field.dtype)
        raw = np.dtype((np.void, out.dtype.itemsize))
        for start in range(0, flat.size, _CHUNK):  # chunks keep the temporaries small
            with np.errstate(over="ignore"):  # overflow to inf is reported by _encode_exact
                scaled = flat[start : start + _CHUNK] * scale
            if not np.all(np.abs(scaled) < fast_limit):  # also false for NaN
                return self._encode_exact(x, field)
            np.rint(scaled, out=scaled)
            chunk = field.from_signed(scaled.astype(np.int64))
            # Copy as raw bytes: numpy copies structured dtypes field by field, much slower.
            out[start : start + _CHUNK].view(raw)[...] = chunk.view(raw)
        return out.reshape(x.shape)

    def _encode_exact(self, x: np.ndarray, field: Field) -> np.ndarray:
        """Validate every value; encode through Python ints (for values beyond int64)."""
        finite = np.isfinite(x)
        if not np.all(finite):
            raise ValueError(f"{self!r} cannot encode {x[~finite].flat[0]!r}: not a finite number")
        limit = 2.0 ** (field.bits - 2)
        with np.errstate(over="ignore"):
            scaled = x * 2.0**self._precision
        too_large = ~(np.abs(scaled) < limit)  # inf after scaling counts as too large
        if np.any(too_large):
            raise ValueError(
                f"{self!r} cannot encode {x[too_large].flat[0]!r}: |x| * 2**{self._precision} "
                f"must be < 2**{field.bits - 2} in {field!r}"
            )
        rounded = np.rint(scaled)
        exact = np.array([int(v) for v in rounded.flat], dtype=object).reshape(rounded.shape)
        return field(exact)

    def decode(self, storage: np.ndarray | None, field: Field) -> np.ndarray | None:
        """Decode storage to float64 (values above ``order // 2`` are negative)."""
        if storage is None:
            return None
        storage = self._check_storage(storage, field)
        if storage.size <= _SMALL:  # a few values: Python numbers beat numpy's per-call cost
            order = field.order
            half = order // 2
            scale = 2.0**-self._precision
            floats = [float(v - order if v > half else v) * scale for v in field.int_list(storage)]
            return np.array(floats, dtype=np.float64).reshape(storage.shape)
        values = field.to_float_signed(storage)
        values *= 2.0**-self._precision
        return values


class Identity(Encoding):
    """Integers as themselves, reduced modulo the field order.

    `encode` accepts integer (or bool) arrays of any sign, object arrays of Python ints of any
    size, and float arrays whose values are all integers; `decode` returns an object array of
    Python ints in ``[0, order)`` (no signed interpretation).
    """

    def encode(self, array: Any, field: Field) -> np.ndarray | None:
        """Encode integers (any sign and size) as storage."""
        if array is None:
            return None
        x = np.asarray(array)
        if x.dtype.kind == "f" and not isinstance(array, np.ndarray):
            x = np.asarray(array, dtype=object)  # lists mixing negative and huge ints: stay exact
        kind = x.dtype.kind
        if kind in "biu":
            return field(x)
        if kind == "f":
            integral = np.isfinite(x) & (np.floor(x) == x)
            if not np.all(integral):
                raise ValueError(f"{self!r} cannot encode {x[~integral].flat[0]!r}: not an integer")
            return field(np.array([int(v) for v in x.flat], dtype=object).reshape(x.shape))
        if kind == "O":
            for v in x.flat:
                if not isinstance(v, (int, np.integer, np.bool_)):
                    raise ValueError(f"{self!r} cannot encode {v!r}: not an integer")
            return field(x)
        raise ValueError(f"{self!r} cannot encode arrays of dtype {x.dtype}")

    def decode(self, storage: np.ndarray | None, field: Field) -> np.ndarray | None:
        """Decode storage to an object array of Python ints in ``[0, order)``."""
        if storage is None:
            return None
        return field.to_ints(self._check_storage(storage, field))


class Boolean(Encoding):
    """Truth values: truthy elements encode as 1, falsy ones as 0; any nonzero decodes as True."""

    def encode(self, array: Any, field: Field) -> np.ndarray | None:
        """Encode the truth value of each element as 0 or 1."""
        if array is None:
            return None
        return field(np.asarray(array).astype(np.bool_))

    def decode(self, storage: np.ndarray | None, field: Field) -> np.ndarray | None:
        """Decode storage to a bool array (nonzero is True)."""
        if storage is None:
            return None
        return np.asarray(~field.equal(self._check_storage(storage, field), 0))


class Bits(Encoding):
    """Bit arrays: every element must be 0 or 1, in both directions; decodes to ``uint8``."""

    def encode(self, array: Any, field: Field) -> np.ndarray | None:
        """Encode an array of 0s and 1s (ValueError for anything else)."""
        if array is None:
            return None
        x = np.asarray(array)
        if x.dtype.kind == "b":
            return field(x)
        if x.dtype.kind not in "iufO":
            raise ValueError(f"{self!r} cannot encode arrays of dtype {x.dtype}")
        zero = np.asarray(x == 0, dtype=np.bool_)
        one = np.asarray(x == 1, dtype=np.bool_)
        valid = zero | one
        if not np.all(valid):
            raise ValueError(f"{self!r} can only encode 0 and 1, got {x[~valid].flat[0]!r}")
        return field(one)

    def decode(self, storage: np.ndarray | None, field: Field) -> np.ndarray | None:
        """Decode storage to a ``uint8`` array of 0s and 1s (ValueError for other values)."""
        if storage is None:
            return None
        storage = self._check_storage(storage, field)
        zero = field.equal(storage, 0)
        one = field.equal(storage, 1)
        if not np.all(zero | one):
            raise ValueError(f"{self!r} cannot decode values other than 0 and 1")
        return one.astype(np.uint8)


def _as_float(array: Any, encoding: Encoding) -> np.ndarray:
    x = np.asarray(array)
    kind = x.dtype.kind
    if kind in "biuf":
        return x.astype(np.float64, copy=False)
    if kind == "O":
        try:
            return x.astype(np.float64)
        except (TypeError, ValueError, OverflowError) as error:
            raise ValueError(f"{encoding!r} cannot encode this array: {error}") from None
    raise ValueError(f"{encoding!r} cannot encode arrays of dtype {x.dtype}")
