"""``ShamirProtocolSuite``: products (field and fixed point), with degree reduction and
probabilistic truncation, run in batches."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy

from ..arithmetic import MersenneField, secure_words
from ..communicator.interface import Communicator, Tag
from ._basic import ShamirBasicProtocolSuite, concatenate
from ._batch import Layout, Request
from ._share import ShamirArrayShare

__all__ = ["STATISTICAL_SECURITY", "ShamirProtocolSuite"]

STATISTICAL_SECURITY = 40
"""Bits of statistical security of the truncation masks."""
_HEADROOM = STATISTICAL_SECURITY + 8  # room for the masks of up to 128 contributors, and sign


class ShamirProtocolSuite(ShamirBasicProtocolSuite):
    """:class:`ShamirBasicProtocolSuite` plus multiplication (``multiply``, ``dot``, ``matvec``,
    ``field_multiply``, ``field_dot``).

    Degree reduction after a product needs ``world_size >= 2 * threshold - 1``, checked here.
    Fixed-point products are truncated probabilistically with 40 bits of statistical security
    (see the module documentation for the bounds).  Products started together run as one
    batch (one round, or two with truncation, for all of them).
    """

    def __init__(self, communicator: Communicator, *, threshold: int, seed: int | None = None,
                 seed_offset: int | None = None, order: int | None = None, encoding: Any = None,
                 indices: Any = None) -> None:
        super().__init__(communicator, threshold=threshold, seed=seed, seed_offset=seed_offset, order=order,
                         encoding=encoding, indices=indices)
        if communicator.world_size < 2 * threshold - 1:
            raise ValueError(
                f"ShamirProtocolSuite needs world_size >= 2*threshold - 1 to multiply "
                f"(degree reduction): threshold {threshold} needs {2 * threshold - 1} players, "
                f"got {communicator.world_size}")

    # -- operands ----------------------------------------------------------------------
    def _operands(self, lhs: Any, rhs: Any, encoding: Any) -> tuple[numpy.ndarray, numpy.ndarray, bool]:
        """Both operands as field storage (public ones encoded), and whether both are private."""
        left_private = isinstance(lhs, ShamirArrayShare)
        right_private = isinstance(rhs, ShamirArrayShare)
        if not left_private and not right_private:
            raise NotImplementedError("multiplying two public values is not a privacy-preserving operation")
        if encoding is None:
            left, right = self._storage(lhs, "lhs"), self._storage(rhs, "rhs")
        else:
            left = self._share(lhs, "lhs").storage if left_private else self._public(lhs, encoding)
            right = self._share(rhs, "rhs").storage if right_private else self._public(rhs, encoding)
        return left, right, left_private and right_private

    def _elementwise(self, lhs: Any, rhs: Any, encoding: Any, bits: int, kind: int, name: str) -> Any:
        """Start an elementwise product (a batched operation)."""
        operation = self._communicator.begin(kind, name)
        left, right, private = self._operands(lhs, rhs, encoding)
        shape = numpy.broadcast_shapes(left.shape, right.shape)
        if bits:
            return self._batcher.submit((kind, bits, private), functools.partial(self._truncate_batch, bits=bits,
                                                                                  reduce=private),
                                        operation, (left, right, shape))
        if not private:
            return self._done(ShamirArrayShare(self._field.multiply(left, right)))
        return self._batcher.submit((kind,), self._reduce_batch, operation, (left, right, shape))

    def _precomputed(self, lhs: Any, rhs: Any, encoding: Any, bits: int, kind: int, name: str) -> Any:
        """Start a product computed locally first (a dot product), then reduced/truncated."""
        operation = self._communicator.begin(kind, name)
        left, right, private = self._operands(lhs, rhs, encoding)
        product = self._field.dot(left, right)
        if bits:
            return self._batcher.submit((kind, bits, private), functools.partial(self._truncate_batch, bits=bits,
                                                                                  reduce=private),
                                        operation, (product, None, product.shape))
        if not private:
            return self._done(ShamirArrayShare(product))
        return self._batcher.submit((kind,), self._reduce_batch, operation, (product, None, product.shape))

    def _products(self, requests: Sequence[Request]) -> numpy.ndarray:
        """Every request's product, one after the other, flat (computed in one go)."""
        dtype = self._field.dtype
        payloads = [request.payload for request in requests]
        if len(payloads) == 1:
            left, right, shape = payloads[0]
            return (left if right is None else self._field.multiply(left, right)).reshape(-1)
        lefts = concatenate([numpy.broadcast_to(left, shape) for left, _, shape in payloads], dtype)
        if all(right is None for _, right, _ in payloads):
            return lefts
        one = self._field.ones(())
        rights = concatenate([numpy.broadcast_to(one if right is None else right, shape)
                              for _, right, shape in payloads], dtype)
        return self._field.multiply(lefts, rights)

    # -- field products --------------------------------------------------------------
    def field_multiply(self, lhs: Any, rhs: Any) -> Any:
        """Elementwise field product.  Private x private: one round (degree reduction);
        with a public operand (a field array): local.  An operation; products started
        together run as one batch."""
        return self._elementwise(lhs, rhs, None, 0, Tag.MULTIPLY, "field_multiply")

    def field_dot(self, lhs: Any, rhs: Any) -> Any:
        """Field dot product (numpy.dot semantics), one round when both operands are private."""
        return self._precomputed(lhs, rhs, None, 0, Tag.DOT, "field_dot")

    # -- encoded products ------------------------------------------------------------
    def _bits(self, encoding: Any) -> tuple[Any, int]:
        encoding = self._encoding if encoding is None else encoding
        return encoding, int(getattr(encoding, "precision", 0) or 0)

    def multiply(self, lhs: Any, rhs: Any, *, encoding: Any = None) -> Any:
        """Elementwise product of encoded values (either operand may be public).

        With a fixed-point encoding the result is truncated back to ``precision``
        fractional bits: two rounds in all.  An operation; products started together run as
        one batch.
        """
        encoding, bits = self._bits(encoding)
        return self._elementwise(lhs, rhs, encoding, bits, Tag.TRUNCATE if bits else Tag.MULTIPLY, "multiply")

    def dot(self, lhs: Any, rhs: Any, *, encoding: Any = None) -> Any:
        """Dot product of encoded vectors (numpy.dot semantics), truncated for fixed point."""
        encoding, bits = self._bits(encoding)
        return self._precomputed(lhs, rhs, encoding, bits, Tag.DOT_TRUNCATE if bits else Tag.DOT, "dot")

    def matvec(self, lhs: Any, rhs: Any, *, encoding: Any = None) -> Any:
        """Matrix (2-d) times vector (1-d) of encoded values, truncated for fixed point."""
        left = lhs.storage if isinstance(lhs, ShamirArrayShare) else numpy.asarray(lhs)
        right = rhs.storage if isinstance(rhs, ShamirArrayShare) else numpy.asarray(rhs)
        if left.ndim != 2 or right.ndim != 1 or left.shape[1] != right.shape[0]:
            raise ValueError(f"matvec needs a (m, n) matrix and an (n,) vector, "
                             f"got {left.shape} and {right.shape}")
        return self.dot(lhs, rhs, encoding=encoding)

    # -- the batched protocols ---------------------------------------------------------
    async def _reduce_batch(self, requests: list[Request]) -> None:
        """Degree reduction of products of two shares: one all-to-all round."""
        layout = Layout([math.prod(request.payload[2]) for request in requests])
        shares = self._poly_shares(self._products(requests))
        words = self._words
        send = {dst: self._field.to_wire(shares[dst]) for dst in self._ranks}
        requests, layout, _, rows = await self._round(requests, layout, 0, send, words,
                                                      dict.fromkeys(self._ranks, words))
        if requests:
            # Shares of degree-(t-1) polynomials of every member's product share, recombined
            # with the coefficients of the product's degree 2(t-1).
            result = self._open_rows(rows, layout.total, 2 * (self._threshold - 1))
            self._split(result, requests, layout, [request.payload[2] for request in requests], ShamirArrayShare)

    def _truncation_bound(self, bits: int) -> int:
        if not isinstance(self._field, MersenneField):
            raise ValueError(f"fixed-point multiplication needs the default field (2**127 - 1); "
                             f"{self._field!r} leaves no room for {STATISTICAL_SECURITY}-bit masks")
        bound = self._field.bits - _HEADROOM
        if bound < 2 * bits + 8:
            raise ValueError(f"precision {bits} is too large for truncation in {self._field!r}")
        return bound

    async def _truncate_batch(self, requests: list[Request], *, bits: int, reduce: bool) -> None:
        """Degree-reduce the products (if ``reduce``) and divide them by 2**bits: two rounds.

        Round 0 (all to all): each member's reduced-product share, and from contributors
        0 .. threshold-1 shares of a mask r_i < 2**(k + 40) and of floor(r_i / 2**bits).
        Round 1: reveal y + sum(r_i) with y = x + 2**(k-1) + 2**(bits-1) (positive, and
        rounded rather than floored); the field has room, so nothing wraps.
        """
        k = self._truncation_bound(bits)
        f = self._field
        words = self._words
        ranks = self._ranks
        threshold = self._threshold
        layout = Layout([math.prod(request.payload[2]) for request in requests])
        n = layout.total
        product = self._products(requests)
        contributing = self._communicator.rank < threshold
        pieces: list[numpy.ndarray] = []  # (players, n, words) each
        if reduce:
            pieces.append(f.to_wire(self._poly_shares(product)).reshape(len(ranks), n, words))
        if contributing:
            mask = _random_below_power_of_two(f.dtype, (n,), k + STATISTICAL_SECURITY, self._generator)
            for value in (mask, _shift_right(mask, bits)):
                pieces.append(f.to_wire(self._poly_shares(value)).reshape(len(ranks), n, words))
        send_words = words * len(pieces)
        send = {}
        if pieces:
            stacked = numpy.concatenate(pieces, axis=2) if len(pieces) > 1 else pieces[0]
            send = {dst: stacked[dst].reshape(-1) for dst in ranks}  # each element's words together
        recv = {src: words * (int(reduce) + 2 * int(src < threshold)) for src in ranks}
        requests, layout, positions, rows = await self._round(requests, layout, 0, send, send_words, recv)
        if not requests:
            return
        n = layout.total
        if positions is not None:
            product = product[positions]
        base = words if reduce else 0
        value = (self._open_rows({src: rows[src][:, :words] for src in ranks}, n, 2 * (threshold - 1))
                 if reduce else product)
        masks = f.zeros((n,))
        tops = f.zeros((n,))
        for src in range(threshold):
            masks = f.add(masks, self._received(rows[src][:, base:base + words].reshape(-1), (n,), src))
            tops = f.add(tops, self._received(rows[src][:, base + words:base + 2 * words].reshape(-1), (n,), src))
        masked = f.add(f.add(value, f.full((n,), (1 << (k - 1)) + (1 << (bits - 1)))), masks)
        requests, layout, positions, rows = await self._round(requests, layout, 1,
                                                              dict.fromkeys(ranks, f.to_wire(masked)), words,
                                                              dict.fromkeys(ranks, words))
        if not requests:
            return
        n = layout.total
        if positions is not None:
            tops = tops[positions]
        revealed = self._open_rows(rows, n, threshold - 1)
        # floor(c / 2**bits) = floor(y / 2**bits) + sum(floor(r_i / 2**bits)) + carry, where the
        # carry (0..threshold) has mean ~threshold/2: subtract that instead.
        constant = f.subtract(_shift_right(revealed, bits), f.full((n,), (1 << (k - 1 - bits)) + threshold // 2))
        self._split(f.subtract(constant, tops), requests, layout, [request.payload[2] for request in requests],
                    ShamirArrayShare)


def _random_below_power_of_two(dtype: numpy.dtype, shape: tuple[int, ...], bits: int,
                               generator: numpy.random.Generator | None) -> numpy.ndarray:
    """Uniform integers in [0, 2**bits) as MersenneField storage (bits <= 126)."""
    count = int(numpy.prod(shape, dtype=numpy.int64))
    if generator is None:
        words = secure_words(2 * count).reshape(count, 2)
    else:
        words = generator.integers(0, 2**64, size=(count, 2), dtype=numpy.uint64)
    storage = numpy.empty(count, dtype=dtype)
    if bits >= 64:
        storage["lo"] = words[:, 0]
        storage["hi"] = words[:, 1] & numpy.uint64((1 << (bits - 64)) - 1)
    else:
        storage["lo"] = words[:, 0] & numpy.uint64((1 << bits) - 1)
        storage["hi"] = 0
    return storage.reshape(shape)


def _shift_right(storage: numpy.ndarray, bits: int) -> numpy.ndarray:
    """floor(value / 2**bits) of nonnegative integers held as MersenneField storage (0 < bits < 64)."""
    lo = storage["lo"]
    hi = storage["hi"]
    result = numpy.empty(storage.shape, dtype=storage.dtype)
    shift = numpy.uint64(bits)
    result["lo"] = (lo >> shift) | (hi << numpy.uint64(64 - bits))
    result["hi"] = hi >> shift
    return result

