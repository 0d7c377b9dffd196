"""``ShamirProtocolSuite``: products (field and fixed point), with degree reduction and
probabilistic truncation, run in batches."""

from __future__ import annotations

import functools
import math
from collections.abc import Coroutine, Sequence
from typing import Any

import numpy

from ..arithmetic import MersenneField
from ..communicator.interface import Communicator, Tag
from ._basic import ShamirBasicProtocolSuite
from ._batch import Layout, Request
from ._bitwise import COMPARISON_BITS
from ._nonlinear import Nonlinear
from ._share import ShamirArrayShare
from ._vectors import ArrayVectors, IntVectors

__all__ = ["COMPARISON_BOUND", "STATISTICAL_SECURITY", "ShamirProtocolSuite"]

STATISTICAL_SECURITY = 40
"""Bits of statistical security of the truncation masks."""
_HEADROOM = STATISTICAL_SECURITY + 8  # room for the masks of up to 128 contributors, and sign
COMPARISON_BOUND = 2 ** (COMPARISON_BITS - 1)
"""Comparison operands (their difference, for two operands) must lie in [-2**57, 2**57) as
signed field integers: |x| < 2**41 in FixedPoint(16)."""


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
        self._one = self._field.ones(())
        if communicator.world_size < 2 * threshold - 1:
            raise ValueError(
                f"ShamirProtocolSuite needs world_size >= 2*threshold - 1 to multiply "
                f"(degree reduction): threshold {threshold} needs {2 * threshold - 1} players, "
                f"got {communicator.world_size}")
        self._nonlinear = Nonlinear(self, security=STATISTICAL_SECURITY, generator=self._generator)

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
        shape = left.shape if left.shape == right.shape else numpy.broadcast_shapes(left.shape, right.shape)
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

    def _products(self, vec: ArrayVectors | IntVectors, requests: Sequence[Request]) -> Any:
        """Every request's product, one after the other, flat (computed in one go)."""
        payloads = [request.payload for request in requests]
        shapes = [shape for _, _, shape in payloads]
        lefts = vec.inputs([left for left, _, _ in payloads], shapes)
        if all(right is None for _, right, _ in payloads):
            return lefts
        one = self._one
        rights = vec.inputs([one if right is None else right for _, right, _ in payloads], shapes)
        return vec.multiply(lefts, rights)

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
        shapes = [request.payload[2] for request in requests]
        layout = Layout([math.prod(shape) for shape in shapes])
        vec = self._vectors(layout.total)
        shares = vec.shares(self._products(vec, requests), self._threshold - 1)
        words = self._words
        send = {dst: vec.wire([shares[dst]]) for dst in self._ranks}
        requests, layout, _, rows = await self._round(requests, layout, 0, send, words,
                                                      dict.fromkeys(self._ranks, words))
        if requests:
            # Shares of degree-(t-1) polynomials of every member's product share, recombined
            # with the coefficients of the product's degree 2(t-1).
            result = self._interpolate(vec, rows, 2 * (self._threshold - 1))
            shapes = [request.payload[2] for request in requests]
            for request, storage in zip(requests, vec.outputs(result, layout.offsets, shapes), strict=True):
                request.resolve(ShamirArrayShare(storage))

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
        words = self._words
        ranks = self._ranks
        threshold = self._threshold
        layout = Layout([math.prod(request.payload[2]) for request in requests])
        vec = self._vectors(layout.total)
        product = self._products(vec, requests)
        contributing = self._communicator.rank < threshold
        pieces: list[list[Any]] = []  # each: one vector per player
        if reduce:
            pieces.append(vec.shares(product, threshold - 1))
        if contributing:
            mask = vec.random_below(layout.total, k + STATISTICAL_SECURITY)
            pieces.append(vec.shares(mask, threshold - 1))
            pieces.append(vec.shares(vec.shift_right(mask, bits), threshold - 1))
        send = {dst: vec.wire([piece[dst] for piece in pieces]) for dst in ranks} if pieces else {}
        recv = {src: words * (int(reduce) + 2 * int(src < threshold)) for src in ranks}
        requests, layout, positions, rows = await self._round(requests, layout, 0, send, words * len(pieces), recv)
        if not requests:
            return
        n = layout.total
        if positions is not None:
            product = vec.select(product, positions)
        parts = {src: int(reduce) + 2 * int(src < threshold) for src in ranks}
        value = self._interpolate(vec, rows, 2 * (threshold - 1), parts) if reduce else product
        masks = vec.constant(n, 0)
        tops = vec.constant(n, 0)
        for src in range(threshold):
            received = vec.unwire(rows[src], parts[src], src)
            masks = vec.add(masks, received[int(reduce)])
            tops = vec.add(tops, received[int(reduce) + 1])
        masked = vec.add(vec.add(value, vec.constant(n, (1 << (k - 1)) + (1 << (bits - 1)))), masks)
        wire = vec.wire([masked])
        requests, layout, positions, rows = await self._round(requests, layout, 1, dict.fromkeys(ranks, wire), words,
                                                              dict.fromkeys(ranks, words))
        if not requests:
            return
        n = layout.total
        if positions is not None:
            tops = vec.select(tops, positions)
        revealed = self._interpolate(vec, rows, threshold - 1)
        # floor(c / 2**bits) = floor(y / 2**bits) + sum(floor(r_i / 2**bits)) + carry, where the
        # carry (0..threshold) has mean ~threshold/2: subtract that instead.
        offset = vec.constant(n, (1 << (k - 1 - bits)) + threshold // 2)
        constant = vec.subtract(vec.shift_right(revealed, bits), offset)
        result = vec.subtract(constant, tops)
        shapes = [request.payload[2] for request in requests]
        for request, storage in zip(requests, vec.outputs(result, layout.offsets, shapes), strict=True):
            request.resolve(ShamirArrayShare(storage))

    # -- comparisons, bits and functions built on them (see cicada_async.shamir._nonlinear) ----
    def less_zero(self, operand: ShamirArrayShare) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: shares of ``operand < 0``, elementwise (field values 0 or 1).

        An operation of r + 1 + 6 rounds whatever the array's size (r = 1 + ceil(log2
        threshold) for the random bits: 9 rounds in all at threshold 2).  ``operand`` must lie
        in ``[-2**57, 2**57)`` as a signed field integer (``|x| < 2**41`` in FixedPoint(16));
        outside, the result is unspecified.
        Reveal the result with ``Boolean()`` or ``Identity()``.

        Raises
        ------
        ValueError
            If ``operand`` is not a share of this suite's field, or the field is too small for
            40-bit statistical masking of 58-bit values (it needs at least 108 bits).
        """
        return self._nonlinear.less_zero(operand)

    def less(self, lhs: ShamirArrayShare, rhs: ShamirArrayShare) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: shares of ``lhs < rhs``, elementwise (0 or 1); as :meth:`less_zero` of
        ``lhs - rhs``, whose bound applies to the difference.  Shapes broadcast.

        Raises
        ------
        ValueError
            If an operand is not a share of this suite's field, or the field is too small for
            the statistical masking (see :meth:`less_zero`).
        """
        return self._nonlinear.less(lhs, rhs)

    def equal(self, lhs: ShamirArrayShare, rhs: ShamirArrayShare) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: shares of ``lhs == rhs``, elementwise (0 or 1), exact within the bound of
        :meth:`less_zero` on ``lhs - rhs``: r + 1 + 6 rounds (a bitwise test).

        Raises
        ------
        ValueError
            If an operand is not a share of this suite's field, or the field is too small for
            the statistical masking (see :meth:`less_zero`).
        """
        return self._nonlinear.equal(lhs, rhs)

    def logical_and(self, lhs: ShamirArrayShare, rhs: ShamirArrayShare) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: ``lhs AND rhs`` of shares of 0/1 field values: one round.

        Raises
        ------
        ValueError
            If an operand is not a share of this suite's field.
        """
        return self._nonlinear.logical_and(lhs, rhs)

    def logical_or(self, lhs: ShamirArrayShare, rhs: ShamirArrayShare) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: ``lhs OR rhs`` of shares of 0/1 field values: one round.

        Raises
        ------
        ValueError
            If an operand is not a share of this suite's field.
        """
        return self._nonlinear.logical_or(lhs, rhs)

    def logical_xor(self, lhs: ShamirArrayShare, rhs: ShamirArrayShare) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: ``lhs XOR rhs`` of shares of 0/1 field values: one round.

        Raises
        ------
        ValueError
            If an operand is not a share of this suite's field.
        """
        return self._nonlinear.logical_xor(lhs, rhs)

    def logical_not(self, operand: ShamirArrayShare) -> ShamirArrayShare:
        """``NOT operand`` of shares of 0/1 field values: local (``1 - operand``).

        Raises
        ------
        ValueError
            If an operand is not a share of this suite's field.
        """
        return self._nonlinear.logical_not(operand)

    def relu(self, operand: ShamirArrayShare) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: ``max(operand, 0)`` elementwise, in the operand's encoding: the rounds of
        :meth:`less_zero` and one more, with its bound.

        Raises
        ------
        ValueError
            If an operand is not a share of this suite's field, or the field is too small for
            the statistical masking (see :meth:`less_zero`).
        """
        return self._nonlinear.relu(operand)

    def absolute(self, operand: ShamirArrayShare) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: ``|operand|`` elementwise: the rounds of :meth:`less_zero` and one more.

        Raises
        ------
        ValueError
            If an operand is not a share of this suite's field, or the field is too small for
            the statistical masking (see :meth:`less_zero`).
        """
        return self._nonlinear.absolute(operand)

    def maximum(self, lhs: ShamirArrayShare, rhs: ShamirArrayShare) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: the elementwise maximum, exact: :meth:`less` and one more round, with the
        bound of :meth:`less` on ``lhs - rhs``.

        Raises
        ------
        ValueError
            If an operand is not a share of this suite's field, or the field is too small for
            the statistical masking (see :meth:`less_zero`).
        """
        return self._nonlinear.maximum(lhs, rhs)

    def minimum(self, lhs: ShamirArrayShare, rhs: ShamirArrayShare) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: the elementwise minimum, exact: :meth:`less` and one more round.

        Raises
        ------
        ValueError
            If an operand is not a share of this suite's field, or the field is too small for
            the statistical masking (see :meth:`less_zero`).
        """
        return self._nonlinear.minimum(lhs, rhs)

    def floor(self, operand: ShamirArrayShare, *, encoding: Any = None) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: the floor of fixed-point values, exactly (``floor(-2.1) == -3``): one
        masked opening and a comparison of ``precision`` bits (r + 1 + 4 rounds at
        precision 16), with the bound of :meth:`less_zero`.

        Raises
        ------
        ValueError
            If the encoding is not :class:`~cicada_async.encoding.FixedPoint`.
        """
        return self._nonlinear.floor(operand, encoding=encoding)

    def right_shift(self, operand: ShamirArrayShare, *, bits: int) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: ``floor(operand / 2**bits)`` of signed field integers, exactly (Cicada's
        may be off by one in the last bit), ``0 <= bits < 58``, with the bound of
        :meth:`less_zero`.

        Raises
        ------
        ValueError
            If an operand is not a share of this suite's field, or the field is too small for
            the statistical masking (see :meth:`less_zero`).
        """
        return self._nonlinear.right_shift(operand, bits=bits)

    def zigmoid(self, operand: ShamirArrayShare, *, encoding: Any = None) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: 0 below -1/2, ``x + 1/2`` on [-1/2, 1/2], 1 above (fixed point): two
        comparisons at once and one more round.

        Raises
        ------
        ValueError
            If an operand is not a share of this suite's field, or the field is too small for
            the statistical masking (see :meth:`less_zero`).
        """
        return self._nonlinear.zigmoid(operand, encoding=encoding)

    def divide(self, lhs: ShamirArrayShare, rhs: Any, *, encoding: Any = None) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: ``lhs / rhs`` of fixed-point values, elementwise; ``rhs`` a share or public.

        Private divisors (Catrina and Saxena's normalisation, Goldschmidt's iteration in 32
        fractional bits, then a secret shift, about 60 rounds whatever the size) must satisfy
        ``2**-16 <= |rhs| < 2**32`` and the dividend ``|lhs| < 2**24`` (FixedPoint(16); in
        field integers ``1 <= |rhs| < 2**48``, ``|lhs| < 2**40``); the quotient is then within
        a few units of ``2**-16`` of the exact one (relative error below ``2**-28``), and a
        divisor of zero gives zero (checking would reveal which divisors are zero).  A public
        divisor is a multiplication by its reciprocal in 32 fractional bits (two rounds).

        Raises
        ------
        ValueError
            If the encoding is not :class:`~cicada_async.encoding.FixedPoint`.
        ZeroDivisionError
            If a public divisor is zero.
        """
        return self._nonlinear.divide(lhs, rhs, encoding=encoding)

    def field_power(self, lhs: ShamirArrayShare, rhs: Any) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: ``lhs ** rhs`` in the field, for public non-negative integer exponents
        (an int or an integer array broadcast to ``lhs``): one round per bit of the largest
        exponent (square and multiply run together).

        Raises
        ------
        ValueError
            If an operand is not a share of this suite's field.
        """
        return self._nonlinear.field_power(lhs, rhs)

    def power(self, lhs: ShamirArrayShare, rhs: Any, *, encoding: Any = None) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: ``lhs ** rhs`` of encoded values for public non-negative integer
        exponents: two rounds (a truncated product) per bit of the largest exponent.

        Raises
        ------
        ValueError
            If an operand is not a share of this suite's field.
        """
        return self._nonlinear.power(lhs, rhs, encoding=encoding)

    def multiplicative_inverse(self, operand: ShamirArrayShare) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: the field inverse of every element (Bar-Ilan and Beaver): three rounds;
        the opened ``x * r`` is a fresh sharing, so it reveals nothing but itself.

        Raises
        ------
        ZeroDivisionError
            If an element is zero (which the opening then shows: ``x * r == 0``).
        """
        return self._nonlinear.multiplicative_inverse(operand)

    def random_bitwise_secret(self, *, bits: int, shape: Any = None,
                              src: Sequence[int] | None = None) -> Coroutine[Any, Any, tuple[ShamirArrayShare,
                                                                                              ShamirArrayShare]]:
        """Collective: shares of random bits (shape ``shape + (bits,)``, most significant first)
        and of the value they compose.  The players in ``src`` (default: all) each share random
        bits, which are XOR-ed together: 1 + ceil(log2(len(src))) rounds.

        Raises
        ------
        ValueError
            If ``bits`` is not in ``[1, field.bits)`` or ``src`` repeats or is out of range.
        """
        return self._nonlinear.random_bitwise_secret(bits=bits, shape=shape, src=src)

    def bit_decompose(self, operand: ShamirArrayShare,
                      bits: int | None = None) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: shares of the bits of every field element (0/1 field values), most
        significant first on a new last axis; ``bits`` keeps the rightmost ones (default: all
        ``field.bits``).  Exact for every field element, as Cicada's (negative values are
        their field representatives ``order - |x|``): 2 + 1 + 7 + 2 rounds whatever the size.

        Raises
        ------
        ValueError
            If ``bits`` is not in ``[1, field.bits]``, or the field is not a Mersenne prime.
        """
        return self._nonlinear.bit_decompose(operand, bits)

    def bit_compose(self, operand: ShamirArrayShare) -> ShamirArrayShare:
        """Local: the field values of shared bits along the last axis, most significant first.

        Raises
        ------
        ValueError
            If an operand is not a share of this suite's field.
        """
        return self._nonlinear.bit_compose(operand)
