"""Comparisons, bits and the functions built on them, for :class:`ShamirProtocolSuite`.

Each public method here is one *operation*: it takes its identity when called (a kind of its
own, so players that called different functions at the same point never match each other's
messages), and its rounds run in the operation's own scope, built from the suite's public
operations (``share``, ``reveal``, ``field_multiply``, ``multiply``).  Everything is
vectorised: the number of rounds never depends on the size of the arrays.

The protocols (semi-honest, honest majority as the suite's multiplication needs):

* **Random bits.** Players ``0 .. threshold-1`` each share random bits, and the bits are
  XOR-ed together (``a + b - 2ab``): uniform to any coalition of fewer than ``threshold``
  players, in 1 + ceil(log2(threshold)) rounds (Cicada's ``random_bitwise_secret`` does the
  same per element; Damgard, Fitzi, Kiltz, Nielsen and Toft, TCC 2006, list the options).
* **Mod2m and LTZ** after Catrina and de Hoogh (SCN 2010): to get ``x mod 2**m`` for a
  signed ``x`` in ``[-2**(k-1), 2**(k-1))``, open ``c = x + 2**(k-1) + 2**m * r'' + r'``,
  where ``r'`` has ``m`` shared random bits and ``r''`` is a sum of the contributors' random
  values below ``2**(k + 40 - m)``; then ``x mod 2**m = (c mod 2**m) - r' + 2**m * u`` with
  ``u = [c mod 2**m < r']`` from BitLT.  ``x < 0`` is one minus bit ``k-1`` of
  ``x + 2**(k-1)``: Mod2m with ``m = k - 1``.  The opened ``c`` is within statistical
  distance 2**-40 of a value independent of ``x`` as long as one contributor is honest.
* **BitLT** of a public ``c`` and shared bits ``r``: every bit gives a local pair
  (``r AND NOT c``, ``NOT (c XOR r)``), and a tree merges neighbours, the more significant
  first, as ``(lt_hi + eq_hi * lt_lo, eq_hi * eq_lo)``: ceil(log2 m) rounds and about 2m
  products per element (a prefix OR would need m/2 per round).
* **Equality** to zero: open ``c = x + 2**(k-1) + 2**k * r'' + r'`` with ``k`` shared bits;
  ``x == 0`` exactly when the low ``k`` bits of ``c - 2**(k-1)`` equal ``r'``: the AND of
  the ``k`` bits of ``NOT(c XOR r)``, a tree of ceil(log2 k) rounds (Catrina and de Hoogh's
  bitwise test rather than Cicada's Fermat exponentiation, which takes ~250 sequential
  products).
* **Floor and right shift** exactly by Mod2m (``x - x mod 2**f``), not by probabilistic
  truncation, so ``floor(-2.1) == -3`` always.
* **Division** after Catrina and Saxena (FC 2010): the bits of ``|b|`` (a masked opening and a
  carry-prefix adder) and a prefix OR give a secret power of two ``v`` that normalises ``|b|``;
  Goldschmidt's iteration (from ``2.9142 - 2x``, 4 steps in 32 fractional bits) gives
  ``1 / (|b| v)``, and the product with ``a`` is shifted right by a *secret* number of bits
  (Mod2m with a secret modulus: one opening, the modulus chosen among public remainders by a
  one-hot), so nothing leaves the bound that 40-bit masking leaves room for.
* **Multiplicative inverse** after Bar-Ilan and Beaver (1989): open ``x * r`` for a random
  ``r``; the product is degree-reduced (a fresh sharing) before it is opened, so the opening
  shows nothing but ``x * r``.

Bounds: comparison operands (for ``less``, ``equal``, ``maximum`` and so on, the difference
of the operands) must lie in ``[-2**57, 2**57)`` as signed field integers, that is
``|x| < 2**41`` in the default ``FixedPoint(16)`` encoding (so any two values below 2**40
compare).  Outside it the result is
unspecified (the masked opening wraps); inside it, results are exact.
"""

from __future__ import annotations

import asyncio
import math
import numbers
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import numpy

from ..communicator.interface import Operation, Tag
from ..encoding import FixedPoint
from ..operations import operation
from ._bitwise import (
    COMPARISON_BITS,
    Raw,
    compose,
    field_bits,
    low_words,
    prefix_or_schedule,
    public_bits,
    random_below,
    random_bits,
    required_field_bits,
)
from ._share import ShamirArrayShare

if TYPE_CHECKING:
    from ._protocol import ShamirProtocolSuite

__all__ = ["Nonlinear"]

_RAW = Raw()
_DIVISOR_BITS = 48  # divisors of divide(): 1 <= |b| < 2**48 as field integers
_DIVIDE_PRECISION = 32  # fractional bits of the reciprocal's iteration
_GOLDSCHMIDT_STEPS = 4  # relative error (0.0858 ** 2) ** 4 < 2**-56 before rounding


class Nonlinear:
    """The comparison protocols of a :class:`ShamirProtocolSuite`, through its public API.

    ``generator``: the suite's seeded generator for tests, or None for the CSPRNG.
    """

    def __init__(self, suite: ShamirProtocolSuite, *, security: int,
                 generator: numpy.random.Generator | None) -> None:
        self._suite = suite
        self._field = suite.field
        self._security = security
        self._generator = generator
        self._contributors = list(range(suite.threshold))
        self._k = COMPARISON_BITS

    # -- operation plumbing ----------------------------------------------------------------
    def _check(self, value: Any, label: str) -> numpy.ndarray:
        if not isinstance(value, ShamirArrayShare):
            raise ValueError(f"{label} must be a ShamirArrayShare, got {type(value).__name__}")
        if value.storage.dtype != self._field.dtype:
            raise ValueError(f"{label} holds {value.storage.dtype} values, not elements of {self._field!r}")
        return value.storage

    def _check_field(self, name: str) -> None:
        needed = required_field_bits(self._k, self._security)
        if self._field.bits < needed:
            raise ValueError(f"{name}() needs a field of at least {needed} bits for {self._security}-bit "
                             f"statistical masking of {self._k}-bit values; {self._field!r} has {self._field.bits}")

    def _start(self, kind: Tag, name: str, body: Callable[..., Awaitable[Any]], *args: Any) -> Coroutine[Any, Any, Any]:
        """Take the operation's identity now; run ``body(*args)`` in its scope when awaited."""
        operation = self._suite.communicator.begin(kind, name)
        return self._run(operation, body, args)

    @staticmethod
    async def _run(operation: Operation, body: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> Any:
        with operation.scope():
            return await body(*args)

    def _binary(self, lhs: Any, rhs: Any) -> numpy.ndarray:
        left, right = self._check(lhs, "lhs"), self._check(rhs, "rhs")
        return self._field.subtract(left, right)

    # -- building blocks (run inside an operation's scope) ------------------------------------
    async def _multiply(self, lhs: numpy.ndarray, rhs: numpy.ndarray) -> numpy.ndarray:
        product = await self._suite.field_multiply(ShamirArrayShare(lhs), ShamirArrayShare(rhs))
        return product.storage

    async def _xor(self, shares: list[numpy.ndarray]) -> numpy.ndarray:
        """The XOR of shared bit arrays, a tree: ceil(log2(len(shares))) rounds."""
        field = self._field
        while len(shares) > 1:
            pairs = [(shares[i], shares[i + 1]) for i in range(0, len(shares) - 1, 2)]
            products = await asyncio.gather(*(self._suite.field_multiply(ShamirArrayShare(a), ShamirArrayShare(b))
                                              for a, b in pairs))
            merged = [field.subtract(field.add(a, b), field.add(p.storage, p.storage))
                      for (a, b), p in zip(pairs, products, strict=True)]
            shares = merged + shares[2 * len(pairs):]
        return shares[0]

    async def _masks(self, count: int, bits: int, high_bits: int,
                     contributors: Sequence[int] | None = None) -> tuple[numpy.ndarray, numpy.ndarray | None]:
        """Shared random bits ``(count, bits)`` (most significant first) and, if
        ``high_bits``, a shared random value per element: the sum of each contributor's
        uniform value below ``2**high_bits``."""
        field = self._field
        suite = self._suite
        contributors = self._contributors if contributors is None else list(contributors)
        width = bits + (1 if high_bits else 0)
        secret = None
        rank = suite.communicator.rank
        if rank in contributors:
            secret = random_bits(field, (count, bits), self._generator)
            if high_bits:
                high = random_below(field, count, high_bits, self._generator).reshape(count, 1)
                secret = numpy.concatenate([secret, high], axis=1)
        shares = await asyncio.gather(*(suite.share(src=src, secret=secret if src == rank else None,
                                                    shape=(count, width), encoding=_RAW) for src in contributors))
        bit_shares = [numpy.ascontiguousarray(share.storage[:, :bits]) for share in shares]
        combined = await self._xor(bit_shares)
        if not high_bits:
            return combined, None
        total = shares[0].storage[:, bits]
        for share in shares[1:]:
            total = field.add(total, share.storage[:, bits])
        return combined, numpy.ascontiguousarray(total)

    async def _bit_less_than(self, public: numpy.ndarray, bits: numpy.ndarray) -> numpy.ndarray:
        """``[public < r]`` for public ``uint64`` values and shared bits of ``r`` (most
        significant first): ceil(log2(bits)) rounds."""
        return await self._bits_less_than(public_bits(public, bits.shape[1]), bits)

    async def _bits_less_than(self, known: numpy.ndarray, bits: numpy.ndarray) -> numpy.ndarray:
        """``[c < r]`` for the public bits of ``c`` and shared bits of ``r`` (both most
        significant first, the same length): a tree of ceil(log2(length)) rounds.

        Each bit gives a pair (lt, eq), both local since ``c`` is public: ``lt = r AND NOT c``,
        ``eq = NOT (r XOR c)``.  Neighbouring pairs merge, the more significant first, as
        ``(lt_hi + eq_hi * lt_lo, eq_hi * eq_lo)``: two products per merge (one in the last
        level), about ``2 * length`` in all.
        """
        field = self._field
        public = field(known)
        less = field.multiply(bits, field(1 - known))
        equal = field.subtract(field.ones(()),
                               field.add(field.multiply(bits, field(1 - 2 * known.astype(numpy.int64))), public))
        return await self._merge_less(less, equal)

    async def _merge_less(self, less: numpy.ndarray, equal: numpy.ndarray) -> numpy.ndarray:
        """The tree of (lt, eq) merges, most significant first: ceil(log2 width) rounds."""
        field = self._field
        while less.shape[1] > 1:
            pairs = less.shape[1] // 2
            high_less, low_less = less[:, 0:2 * pairs:2], less[:, 1:2 * pairs:2]
            high_equal, low_equal = equal[:, 0:2 * pairs:2], equal[:, 1:2 * pairs:2]
            last = less.shape[1] == 2
            left = numpy.ascontiguousarray(high_equal if last else numpy.concatenate([high_equal, high_equal], axis=1))
            right = numpy.ascontiguousarray(low_less if last else numpy.concatenate([low_less, low_equal], axis=1))
            products = await self._multiply(left, right)
            merged_less = field.add(high_less, products[:, :pairs])
            merged_equal = products[:, pairs:]
            if less.shape[1] % 2:  # an odd one out moves up a level unchanged
                merged_less = numpy.concatenate([merged_less, less[:, -1:]], axis=1)
                merged_equal = numpy.concatenate([merged_equal, equal[:, -1:]], axis=1)
            less, equal = merged_less, merged_equal
        return numpy.ascontiguousarray(less[:, 0])

    async def _prefix_or(self, bits: numpy.ndarray) -> numpy.ndarray:
        """Position i gets the OR of positions 0..i (Sklansky: ceil(log2 width) rounds)."""
        field = self._field
        result = bits.copy()
        for level in prefix_or_schedule(bits.shape[1]):
            targets = numpy.ascontiguousarray(result[:, level.targets])
            sources = numpy.ascontiguousarray(result[:, level.sources])
            both = await self._multiply(targets, sources)
            result[:, level.targets] = field.subtract(field.add(targets, sources), both)
        return result

    async def _bounded_bits(self, value: numpy.ndarray, length: int) -> numpy.ndarray:
        """The bits (most significant first) of flat values known to lie in ``[0, 2**length)``
        (``length <= 64``): open ``c = x + 2**length * r'' + r'``, then ``x = c + NOT(r') + 1``
        modulo ``2**length``, a carry-prefix adder whose carry-in is the public 1.
        The rounds of the random bits, one opening, ceil(log2 length) and one."""
        field = self._field
        count = value.shape[0]
        masks, high = await self._masks(count, length, self._security)
        assert high is not None
        opened = await self._open(field.add(field.add(value, compose(field, masks)),
                                            field.multiply(high, field.full((), 1 << length))))
        mask = numpy.uint64((1 << length) - 1) if length < 64 else numpy.uint64(2**64 - 1)
        known = public_bits(low_words(field, opened) & mask, length)[:, ::-1]  # least significant first
        inverse = field.subtract(field.ones(()), masks)[:, ::-1]  # NOT r', least significant first
        public = field(known)
        generate = field.multiply(inverse, public)
        propagate = field.add(field.multiply(inverse, field(1 - 2 * known.astype(numpy.int64))), public)
        generate = numpy.ascontiguousarray(generate)
        generate[:, 0] = field.add(generate[:, 0], propagate[:, 0])  # the carry-in 1 goes through bit 0 too
        carry, _ = await self._carries(generate, numpy.ascontiguousarray(propagate))
        incoming = numpy.ascontiguousarray(carry[:, :-1])  # into bits 1..length-1
        rest = numpy.ascontiguousarray(propagate[:, 1:])
        both = await self._multiply(rest, incoming)
        bits = numpy.empty_like(propagate)
        bits[:, 0] = field.subtract(field.ones(()), propagate[:, 0])  # p XOR 1
        bits[:, 1:] = field.subtract(field.add(rest, incoming), field.add(both, both))
        return numpy.ascontiguousarray(bits[:, ::-1])

    async def _shift_right_secret(self, value: numpy.ndarray, onehot: numpy.ndarray) -> numpy.ndarray:
        """``floor(value / 2**d)`` for flat signed values in ``[-2**(k-1), 2**(k-1))`` and a
        secret shift ``d`` in ``0..D`` given as shares of its one-hot ``(count, D + 1)``.

        Mod2m with a secret modulus: open ``c = x + 2**(k-1) + 2**D * r'' + r'`` once; every
        ``c mod 2**d`` is public, so the one-hot selects among them locally; ``r' mod 2**d`` is
        the bits of ``r'`` below ``d`` (one round), and the borrow a BitLT of the masked bits.
        """
        field = self._field
        k = self._k
        count, width = onehot.shape
        top = width - 1  # D, the largest shift
        masks, high = await self._masks(count, top, k + self._security - top)
        assert high is not None
        offset = field.full((), 1 << (k - 1))
        opened = await self._open(field.add(field.add(value, offset), field.add(
            compose(field, masks), field.multiply(high, field.full((), 1 << top)))))
        low = low_words(field, opened)
        moduli = numpy.array([(1 << d) - 1 for d in range(width)], dtype=numpy.uint64)
        public_mods = field(low.reshape(-1, 1) & moduli)  # c mod 2**d for every d
        selected = field.sum(field.multiply(onehot, public_mods), axis=1)
        # below[:, j] = [j < d] for bit j (least significant first): the one-hot summed above j.
        running = field.zeros((count, width))
        accumulated = field.zeros((count,))
        for d in range(top, -1, -1):  # running[:, d] = sum of onehot[:, d+1:] = [d < shift]
            running[:, d] = accumulated
            accumulated = field.add(accumulated, onehot[:, d])
        below = numpy.ascontiguousarray(running[:, :top])  # bits 0..D-1
        bits_low = numpy.ascontiguousarray(masks[:, ::-1])  # r' least significant first
        kept = await self._multiply(bits_low, below)  # r'_j where j < d
        weights = field(numpy.array([1 << j for j in range(top)], dtype=object))
        r_mod = field.sum(field.multiply(kept, weights), axis=1)
        known = public_bits(low, top)[:, ::-1]  # c's bits, least significant first
        c_kept = field.multiply(below, field(known))  # c_j where j < d: local
        # [c mod 2**d < r' mod 2**d] from the kept bits, most significant first.
        borrow = await self._shared_less_than(c_kept[:, ::-1], kept[:, ::-1])
        powers = field(numpy.array([1 << d for d in range(width)], dtype=object))
        scale = field.sum(field.multiply(onehot, powers), axis=1)  # 2**d
        inverses = field.inverse(powers)
        unscale = field.sum(field.multiply(onehot, inverses), axis=1)  # 2**-d
        carried = await self._multiply(borrow, scale)
        remainder = field.add(field.subtract(selected, r_mod), carried)
        shifted = await self._multiply(field.subtract(field.add(value, offset), remainder), unscale)
        # (x + 2**(k-1)) >> d = (x >> d) + 2**(k-1-d)
        tops = field(numpy.array([1 << (k - 1 - d) for d in range(width)], dtype=object))
        return field.subtract(shifted, field.sum(field.multiply(onehot, tops), axis=1))

    async def _shared_less_than(self, left: numpy.ndarray, right: numpy.ndarray) -> numpy.ndarray:
        """``[l < r]`` for shared bits of both (most significant first, the same length):
        one round for the bitwise pairs, then the tree of :meth:`_bits_less_than`."""
        field = self._field
        both = await self._multiply(numpy.ascontiguousarray(left), numpy.ascontiguousarray(right))
        less = field.subtract(right, both)  # r AND NOT l
        equal = field.subtract(field.ones(()), field.subtract(field.add(left, right), field.add(both, both)))
        return await self._merge_less(less, equal)

    async def _all_ones(self, bits: numpy.ndarray) -> numpy.ndarray:
        """The AND of each row of shared bits: a tree of ceil(log2(width)) rounds."""
        field = self._field
        while bits.shape[1] > 1:
            half = bits.shape[1] // 2
            both = await self._multiply(numpy.ascontiguousarray(bits[:, :half]),
                                        numpy.ascontiguousarray(bits[:, half:2 * half]))
            bits = numpy.concatenate([both.reshape(-1, half), bits[:, 2 * half:]], axis=1)
        return field.sum(bits, axis=1)  # one column left

    async def _open(self, storage: numpy.ndarray) -> numpy.ndarray:
        return await self._suite.reveal(ShamirArrayShare(storage), encoding=_RAW)

    async def _mod2m(self, value: numpy.ndarray, bits: int) -> numpy.ndarray:
        """``value mod 2**bits`` (0 < bits < k) of signed values in ``[-2**(k-1), 2**(k-1))``,
        flat: the rounds of the random bits, one opening and BitLT's."""
        field = self._field
        k = self._k
        count = value.shape[0]
        masks, high = await self._masks(count, bits, k + self._security - bits)
        assert high is not None
        low = compose(field, masks)
        shifted = field.add(field.add(value, field.full((), 1 << (k - 1))),
                            field.add(field.multiply(high, field.full((), 1 << bits)), low))
        opened = await self._open(shifted)
        public = low_words(field, opened) & numpy.uint64((1 << bits) - 1)
        borrow = await self._bit_less_than(public, masks)
        return field.add(field.subtract(field(public), low), field.multiply(borrow, field.full((), 1 << bits)))

    async def _less_zero(self, value: numpy.ndarray) -> numpy.ndarray:
        """``[value < 0]`` for flat signed values in ``[-2**(k-1), 2**(k-1))``."""
        field = self._field
        k = self._k
        remainder = await self._mod2m(value, k - 1)
        offset = field.add(value, field.full((), 1 << (k - 1)))
        top = field.multiply(field.subtract(offset, remainder), field.inverse(field.full((), 1 << (k - 1))))
        return field.subtract(field.ones(()), top)

    async def _equal_zero(self, value: numpy.ndarray) -> numpy.ndarray:
        """``[value == 0]`` for flat signed values in ``[-2**(k-1), 2**(k-1))``."""
        field = self._field
        k = self._k
        count = value.shape[0]
        masks, high = await self._masks(count, k, self._security)
        assert high is not None
        low = compose(field, masks)
        shifted = field.add(field.add(value, field.full((), 1 << (k - 1))),
                            field.add(field.multiply(high, field.full((), 1 << k)), low))
        opened = await self._open(shifted)
        difference = low_words(field, opened) - numpy.uint64(1 << (k - 1))  # wraps modulo 2**64: (x + r') mod 2**k
        known = public_bits(difference, k)
        # NOT(c XOR r) = c + r - 1 - 2cr + 2c... computed as 1 - e with e = r (1 - 2c) + c.
        differ = field.add(field.multiply(masks, field(1 - 2 * known.astype(numpy.int64))), field(known))
        return await self._all_ones(field.subtract(field.ones(()), differ))

    async def _carries(self, generate: numpy.ndarray, propagate: numpy.ndarray) -> tuple[numpy.ndarray, numpy.ndarray]:
        """Prefix (generate, propagate) of a binary adder, least significant first: position i
        gets the carry out of bits 0..i without a carry-in, and whether they propagate one.
        Sklansky's schedule, two products per combination, ceil(log2(length)) rounds."""
        field = self._field
        generate, propagate = generate.copy(), propagate.copy()
        for level in prefix_or_schedule(generate.shape[1]):
            high_g = numpy.ascontiguousarray(generate[:, level.targets])
            high_p = numpy.ascontiguousarray(propagate[:, level.targets])
            low_g = numpy.ascontiguousarray(generate[:, level.sources])
            low_p = numpy.ascontiguousarray(propagate[:, level.sources])
            through, both = await asyncio.gather(self._suite.field_multiply(ShamirArrayShare(high_p),
                                                                            ShamirArrayShare(low_g)),
                                                 self._suite.field_multiply(ShamirArrayShare(high_p),
                                                                            ShamirArrayShare(low_p)))
            # g and p exclude each other, so the OR of g and (p AND g') is their sum.
            generate[:, level.targets] = field.add(high_g, through.storage)
            propagate[:, level.targets] = both.storage
        return generate, propagate

    async def _decompose(self, value: numpy.ndarray) -> numpy.ndarray:
        """Every bit of each field element (flat), most significant first, exactly.

        Open ``c = a + r`` for ``r`` of ``field.bits`` shared random bits (uniform below the
        order but for a probability of about 2**-127 for the Mersenne prime); then
        ``a = c - r + p * [c < r]``, which modulo ``2**L`` (``p = 2**L - 1``) is
        ``c + NOT(r) + 1 - [c < r]``: a binary adder of public and shared bits whose carry-in
        is shared.  BitLT and the adder's carries run at the same time: 2 + 1 +
        ceil(log2 L) + 2 rounds in all.
        """
        field = self._field
        length = field.bits
        count = value.shape[0]
        masks, _ = await self._masks(count, length, 0)
        opened = await self._open(field.add(value, compose(field, masks)))
        known = field_bits(field, opened)  # most significant first
        inverse = field.subtract(field.ones(()), masks)  # NOT r
        public = field(known)
        # Least significant first for the adder.
        inverse_low, public_low, known_low = inverse[:, ::-1], public[:, ::-1], known[:, ::-1]
        generate = field.multiply(inverse_low, public_low)  # c AND NOT r (c is public)
        propagate = field.add(field.multiply(inverse_low, field(1 - 2 * known_low.astype(numpy.int64))), public_low)
        # Two sub-operations at once, each numbered in a scope of its own.
        borrow, (carry, through) = await asyncio.gather(
            operation(self._bits_less_than)(known, masks),
            operation(self._carries)(numpy.ascontiguousarray(generate), numpy.ascontiguousarray(propagate)))
        carry_in = field.subtract(field.ones(()), borrow).reshape(count, 1)
        # The carry into bit j comes out of bits 0..j-1 (or is the carry-in, for j = 0).
        zeros = field.zeros((count, 1))
        ones = field.ones((count, 1))
        carry = numpy.concatenate([zeros, carry[:, :-1]], axis=1)
        through = numpy.concatenate([ones, through[:, :-1]], axis=1)
        gated, mixed = await asyncio.gather(
            self._suite.field_multiply(ShamirArrayShare(numpy.ascontiguousarray(through)),
                                       ShamirArrayShare(numpy.ascontiguousarray(numpy.broadcast_to(carry_in,
                                                                                                   through.shape)))),
            self._suite.field_multiply(ShamirArrayShare(numpy.ascontiguousarray(propagate)),
                                       ShamirArrayShare(numpy.ascontiguousarray(carry))))
        # sum bit = p XOR g_prefix XOR (P_prefix AND carry-in), the last two exclusive.
        partial = field.subtract(field.add(propagate, carry), field.add(mixed.storage, mixed.storage))
        both = await self._multiply(partial, gated.storage)
        bits = field.subtract(field.add(partial, gated.storage), field.add(both, both))
        return numpy.ascontiguousarray(bits[:, ::-1])

    async def _shift_right(self, value: numpy.ndarray, bits: int) -> numpy.ndarray:
        """``floor(value / 2**bits)`` exactly (public ``bits``), by Mod2m."""
        field = self._field
        remainder = await self._mod2m(value, bits)
        return field.multiply(field.subtract(value, remainder), field.inverse(field.full((), 1 << bits)))

    async def _divide(self, numerator: numpy.ndarray, denominator: numpy.ndarray, precision: int) -> numpy.ndarray:
        """``numerator / denominator`` of flat fixed-point values (``precision`` fractional bits).

        After Catrina and Saxena (FC 2010): the sign and the bits of ``|b|`` give a secret
        power of two ``v`` with ``|b| v`` in ``[2**47, 2**48)``; Goldschmidt's iteration
        computes ``1 / (|b| v)`` in FixedPoint(32) from the linear start ``2.9142 - 2x``;
        then ``a * sign / (|b| v)`` is shifted right by the secret ``48 - log2 v`` bits
        (Mod2m with a secret modulus), so no intermediate value leaves the bound.
        """
        field = self._field
        suite = self._suite
        width, inner = _DIVISOR_BITS, _DIVIDE_PRECISION
        if not 0 < precision < inner:
            raise ValueError(f"divide() needs a precision in 1..{inner - 1}, got {precision}")
        inner_encoding = FixedPoint(inner)
        negative = await self._less_zero(denominator)
        sign = field.subtract(field.ones(()), field.add(negative, negative))
        magnitude, signed = await asyncio.gather(
            suite.field_multiply(ShamirArrayShare(denominator), ShamirArrayShare(sign)),
            suite.field_multiply(ShamirArrayShare(numerator), ShamirArrayShare(sign)))
        bits = await self._bounded_bits(magnitude.storage, width)  # most significant first
        seen = await self._prefix_or(bits)
        onehot = seen.copy()
        onehot[:, 1:] = field.subtract(seen[:, 1:], seen[:, :-1])  # 1 at the leading bit, index i
        powers = field(numpy.array([1 << i for i in range(width)], dtype=object))
        scale = field.sum(field.multiply(onehot, powers), axis=1)  # v = 2**i
        normalized = await self._multiply(magnitude.storage, scale)  # in [2**(width-1), 2**width)
        fraction = await self._shift_right(normalized, width - inner)  # in [1/2, 1) with `inner` bits
        two = inner_encoding.encode(numpy.array(2.0), field)
        estimate = field.subtract(inner_encoding.encode(numpy.array(2.9142), field), field.add(fraction, fraction))
        denominator_now = (await suite.multiply(ShamirArrayShare(fraction), ShamirArrayShare(estimate),
                                                encoding=inner_encoding)).storage
        for step in range(_GOLDSCHMIDT_STEPS):
            factor = ShamirArrayShare(field.subtract(two, denominator_now))
            if step == _GOLDSCHMIDT_STEPS - 1:
                estimate = (await suite.multiply(ShamirArrayShare(estimate), factor, encoding=inner_encoding)).storage
            else:
                products = await asyncio.gather(
                    suite.multiply(ShamirArrayShare(estimate), factor, encoding=inner_encoding),
                    suite.multiply(ShamirArrayShare(denominator_now), factor, encoding=inner_encoding))
                estimate, denominator_now = products[0].storage, products[1].storage
        # a * sign / (|b| v) * 2**precision: truncate the product by inner - precision bits only, so
        # that the secret shift below, not this truncation, decides what is lost.
        scaled = (await suite.multiply(signed, ShamirArrayShare(estimate),
                                       encoding=FixedPoint(inner - precision))).storage
        # The quotient is scaled * 2**i / 2**width: a right shift by d = width - i, secret.
        shifts = field.zeros((onehot.shape[0], width + 1))
        shifts[:, 1:] = onehot[:, ::-1]
        return await self._shift_right_secret(scaled, shifts)

    # -- the operations ---------------------------------------------------------------------
    def _elementwise(self, kind: Tag, name: str, value: numpy.ndarray,
                     compute: Callable[[numpy.ndarray], Awaitable[numpy.ndarray]]) -> Coroutine[Any, Any, Any]:
        self._check_field(name)
        shape = value.shape

        async def body() -> ShamirArrayShare:
            flat = numpy.ascontiguousarray(value).reshape(-1)
            if flat.size == 0:
                return ShamirArrayShare(self._field.zeros(shape))
            return ShamirArrayShare((await compute(flat)).reshape(shape))

        return self._start(kind, name, body)

    def less_zero(self, operand: Any) -> Coroutine[Any, Any, ShamirArrayShare]:
        return self._elementwise(Tag.LESS_ZERO, "less_zero", self._check(operand, "operand"), self._less_zero)

    def less(self, lhs: Any, rhs: Any) -> Coroutine[Any, Any, ShamirArrayShare]:
        return self._elementwise(Tag.LESS, "less", self._binary(lhs, rhs), self._less_zero)

    def equal(self, lhs: Any, rhs: Any) -> Coroutine[Any, Any, ShamirArrayShare]:
        return self._elementwise(Tag.EQUAL, "equal", self._binary(lhs, rhs), self._equal_zero)

    def relu(self, operand: Any) -> Coroutine[Any, Any, ShamirArrayShare]:
        value = self._check(operand, "operand")

        async def compute(flat: numpy.ndarray) -> numpy.ndarray:
            negative = await self._less_zero(flat)
            return await self._multiply(flat, self._field.subtract(self._field.ones(()), negative))

        return self._elementwise(Tag.RELU, "relu", value, compute)

    def absolute(self, operand: Any) -> Coroutine[Any, Any, ShamirArrayShare]:
        field = self._field
        value = self._check(operand, "operand")

        async def compute(flat: numpy.ndarray) -> numpy.ndarray:
            negative = await self._less_zero(flat)
            sign = field.subtract(field.ones(()), field.add(negative, negative))  # 1 - 2 [x < 0]
            return await self._multiply(flat, sign)

        return self._elementwise(Tag.ABSOLUTE, "absolute", value, compute)

    def _extreme(self, kind: Tag, name: str, lhs: Any, rhs: Any) -> Coroutine[Any, Any, ShamirArrayShare]:
        field = self._field
        left, right = self._check(lhs, "lhs"), self._check(rhs, "rhs")
        shape = numpy.broadcast_shapes(left.shape, right.shape)
        left = numpy.ascontiguousarray(numpy.broadcast_to(left, shape)).reshape(-1)
        right = numpy.ascontiguousarray(numpy.broadcast_to(right, shape)).reshape(-1)
        difference = field.subtract(left, right)

        async def compute(flat: numpy.ndarray) -> numpy.ndarray:
            negative = await self._less_zero(flat)  # [lhs < rhs]
            chosen = await self._multiply(flat, field.subtract(field.ones(()), negative))  # (lhs - rhs)+
            if kind == Tag.MAXIMUM:
                return field.add(right, chosen)  # max = rhs + (lhs - rhs)+
            return field.subtract(left, chosen)  # min = lhs - (lhs - rhs)+

        async def body() -> ShamirArrayShare:
            if difference.size == 0:
                return ShamirArrayShare(field.zeros(shape))
            return ShamirArrayShare((await compute(difference)).reshape(shape))

        self._check_field(name)
        return self._start(kind, name, body)

    def maximum(self, lhs: Any, rhs: Any) -> Coroutine[Any, Any, ShamirArrayShare]:
        return self._extreme(Tag.MAXIMUM, "maximum", lhs, rhs)

    def minimum(self, lhs: Any, rhs: Any) -> Coroutine[Any, Any, ShamirArrayShare]:
        return self._extreme(Tag.MINIMUM, "minimum", lhs, rhs)

    def _precision(self, encoding: Any, name: str) -> tuple[Any, int]:
        encoding = self._suite.encoding if encoding is None else encoding
        if not isinstance(encoding, FixedPoint):
            raise ValueError(f"{name}() needs a FixedPoint encoding, got {encoding!r}")
        return encoding, encoding.precision

    def floor(self, operand: Any, *, encoding: Any = None) -> Coroutine[Any, Any, ShamirArrayShare]:
        _, precision = self._precision(encoding, "floor")
        field = self._field
        value = self._check(operand, "operand")

        async def compute(flat: numpy.ndarray) -> numpy.ndarray:
            if precision == 0:
                return flat
            return field.subtract(flat, await self._mod2m(flat, precision))

        return self._elementwise(Tag.FLOOR, "floor", value, compute)

    def right_shift(self, operand: Any, *, bits: Any) -> Coroutine[Any, Any, ShamirArrayShare]:
        field = self._field
        value = self._check(operand, "operand")
        if not isinstance(bits, numbers.Integral) or isinstance(bits, bool) or not 0 <= int(bits) < self._k:
            raise ValueError(f"bits must be an integer in [0, {self._k}), got {bits!r}")
        shift = int(bits)
        scale = field.inverse(field.full((), 1 << shift))

        async def compute(flat: numpy.ndarray) -> numpy.ndarray:
            if shift == 0:
                return flat
            return field.multiply(field.subtract(flat, await self._mod2m(flat, shift)), scale)

        return self._elementwise(Tag.RIGHT_SHIFT, "right_shift", value, compute)

    def zigmoid(self, operand: Any, *, encoding: Any = None) -> Coroutine[Any, Any, ShamirArrayShare]:
        encoding, _ = self._precision(encoding, "zigmoid")
        field = self._field
        value = self._check(operand, "operand")
        half = encoding.encode(numpy.array(0.5), field)
        one = encoding.encode(numpy.array(1.0), field)

        async def compute(flat: numpy.ndarray) -> numpy.ndarray:
            plus = field.add(flat, half)
            both = await self._less_zero(numpy.concatenate([plus, field.subtract(flat, half)]))
            below, above = both[:flat.size], both[flat.size:]  # [x < -1/2], [x < 1/2]
            middle = field.subtract(above, below)  # 1 on [-1/2, 1/2)
            ramp = await self._multiply(middle, plus)
            return field.add(ramp, field.multiply(field.subtract(field.ones(()), above), one))

        return self._elementwise(Tag.ZIGMOID, "zigmoid", value, compute)

    def divide(self, lhs: Any, rhs: Any, *, encoding: Any = None) -> Coroutine[Any, Any, ShamirArrayShare]:
        encoding, precision = self._precision(encoding, "divide")
        field = self._field
        numerator = self._check(lhs, "lhs")
        if not isinstance(rhs, ShamirArrayShare):  # a public divisor: multiply by its reciprocal
            divisor = numpy.asarray(rhs, dtype=numpy.float64)
            if not numpy.all(numpy.isfinite(divisor)) or numpy.any(divisor == 0):
                raise ZeroDivisionError("divide() by a public zero (or a non-finite value)")
            operation = self._suite.communicator.begin(Tag.DIVIDE, "divide")

            async def public() -> ShamirArrayShare:
                return await self._suite.multiply(ShamirArrayShare(numerator), 1.0 / divisor,
                                                  encoding=FixedPoint(_DIVIDE_PRECISION))

            return self._run(operation, public, ())
        denominator = self._check(rhs, "rhs")
        shape = numpy.broadcast_shapes(numerator.shape, denominator.shape)
        left = numpy.ascontiguousarray(numpy.broadcast_to(numerator, shape)).reshape(-1)
        right = numpy.ascontiguousarray(numpy.broadcast_to(denominator, shape)).reshape(-1)
        self._check_field("divide")
        operation = self._suite.communicator.begin(Tag.DIVIDE, "divide")

        async def body() -> ShamirArrayShare:
            if left.size == 0:
                return ShamirArrayShare(field.zeros(shape))
            return ShamirArrayShare((await self._divide(left, right, precision)).reshape(shape))

        return self._run(operation, body, ())

    # -- logic on 0/1 shares -----------------------------------------------------------------
    def _logical(self, kind: Tag, name: str, lhs: Any, rhs: Any) -> Coroutine[Any, Any, ShamirArrayShare]:
        field = self._field
        left, right = self._check(lhs, "lhs"), self._check(rhs, "rhs")
        operation = self._suite.communicator.begin(kind, name)

        async def body() -> ShamirArrayShare:
            both = (await self._suite.field_multiply(ShamirArrayShare(left), ShamirArrayShare(right))).storage
            if kind == Tag.LOGICAL_AND:
                return ShamirArrayShare(both)
            total = field.add(left, right)
            if kind == Tag.LOGICAL_OR:
                return ShamirArrayShare(field.subtract(total, both))
            return ShamirArrayShare(field.subtract(total, field.add(both, both)))

        return self._run(operation, body, ())

    def logical_and(self, lhs: Any, rhs: Any) -> Coroutine[Any, Any, ShamirArrayShare]:
        return self._logical(Tag.LOGICAL_AND, "logical_and", lhs, rhs)

    def logical_or(self, lhs: Any, rhs: Any) -> Coroutine[Any, Any, ShamirArrayShare]:
        return self._logical(Tag.LOGICAL_OR, "logical_or", lhs, rhs)

    def logical_xor(self, lhs: Any, rhs: Any) -> Coroutine[Any, Any, ShamirArrayShare]:
        return self._logical(Tag.LOGICAL_XOR, "logical_xor", lhs, rhs)

    def logical_not(self, operand: Any) -> ShamirArrayShare:
        return ShamirArrayShare(self._field.subtract(self._field.ones(()), self._check(operand, "operand")))

    # -- powers and inverses -----------------------------------------------------------------
    def _exponents(self, rhs: Any, shape: tuple[int, ...]) -> numpy.ndarray:
        exponents = numpy.asarray(rhs)
        if exponents.dtype == object:
            if not all(isinstance(e, numbers.Integral) and not isinstance(e, bool) for e in exponents.flat):
                raise ValueError("rhs must hold integers")
        elif exponents.dtype.kind not in "iu":
            raise ValueError(f"rhs must be a non-negative integer or an integer array, got {exponents.dtype}")
        if exponents.size and min(int(e) for e in exponents.flat) < 0:
            raise ValueError("rhs must be non-negative")
        try:
            return numpy.broadcast_to(exponents.astype(object), shape).reshape(-1)
        except ValueError:
            raise ValueError(f"rhs of shape {exponents.shape} does not broadcast to {shape}") from None

    def _power(self, kind: Tag, name: str, lhs: Any, rhs: Any,
               multiply: Callable[[numpy.ndarray, numpy.ndarray], Awaitable[ShamirArrayShare]],
               one: numpy.ndarray) -> Coroutine[Any, Any, ShamirArrayShare]:
        field = self._field
        base = self._check(lhs, "lhs")
        shape = base.shape
        exponents = self._exponents(rhs, shape)
        length = max((int(e).bit_length() for e in exponents), default=0)
        operation = self._suite.communicator.begin(kind, name)

        async def body() -> ShamirArrayShare:
            value = numpy.ascontiguousarray(base).reshape(-1)
            result = field.full(value.shape, 0)
            result[...] = one
            for position in range(length):
                bit = numpy.array([(int(e) >> position) & 1 for e in exponents], dtype=numpy.int64)
                last = position == length - 1
                if bit.any():
                    if last:
                        product = (await multiply(result, value)).storage
                    else:  # the product and the next square in one round
                        products = await asyncio.gather(multiply(result, value), multiply(value, value))
                        product, value = products[0].storage, products[1].storage
                    # Where the bit is set take the product: result + bit * (product - result).
                    result = field.add(result, field.multiply(field(bit), field.subtract(product, result)))
                elif not last:
                    value = (await multiply(value, value)).storage
            return ShamirArrayShare(result.reshape(shape))

        return self._run(operation, body, ())

    def field_power(self, lhs: Any, rhs: Any) -> Coroutine[Any, Any, ShamirArrayShare]:
        def multiply(a: numpy.ndarray, b: numpy.ndarray) -> Awaitable[ShamirArrayShare]:
            return self._suite.field_multiply(ShamirArrayShare(a), ShamirArrayShare(b))

        return self._power(Tag.FIELD_POWER, "field_power", lhs, rhs, multiply, self._field.ones(()))

    def power(self, lhs: Any, rhs: Any, *, encoding: Any = None) -> Coroutine[Any, Any, ShamirArrayShare]:
        encoding = self._suite.encoding if encoding is None else encoding
        one = encoding.encode(numpy.array(1.0 if isinstance(encoding, FixedPoint) else 1), self._field)

        def multiply(a: numpy.ndarray, b: numpy.ndarray) -> Awaitable[ShamirArrayShare]:
            return self._suite.multiply(ShamirArrayShare(a), ShamirArrayShare(b), encoding=encoding)

        return self._power(Tag.POWER, "power", lhs, rhs, multiply, one)

    def multiplicative_inverse(self, operand: Any) -> Coroutine[Any, Any, ShamirArrayShare]:
        field = self._field
        value = self._check(operand, "operand")
        operation = self._suite.communicator.begin(Tag.INVERSE, "multiplicative_inverse")

        async def body() -> ShamirArrayShare:
            mask = (await self._suite.field_uniform(shape=value.shape)).storage
            masked = await self._multiply(value, mask)  # degree-reduced: a fresh sharing of x * r
            opened = await self._open(masked)
            if not numpy.all(~field.equal(opened, 0)):
                raise ZeroDivisionError("multiplicative_inverse of a shared zero (or a zero mask, "
                                        "probability 2**-127 per element)")
            return ShamirArrayShare(field.multiply(mask, field.inverse(opened)))

        return self._run(operation, body, ())

    # -- bits ---------------------------------------------------------------------------------
    def random_bitwise_secret(self, *, bits: Any, shape: Any = None,
                              src: Sequence[int] | None = None) -> Coroutine[Any, Any, tuple[ShamirArrayShare,
                                                                                              ShamirArrayShare]]:
        if not isinstance(bits, numbers.Integral) or isinstance(bits, bool) or not 0 < int(bits) < self._field.bits:
            raise ValueError(f"bits must be an integer in [1, {self._field.bits}), got {bits!r}")
        world = self._suite.communicator.world_size
        contributors = list(range(world)) if src is None else sorted({int(s) for s in src})
        if src is not None and len(contributors) != len(list(src)):
            raise ValueError(f"src must not repeat a rank, got {list(src)!r}")
        if not contributors or any(not 0 <= s < world for s in contributors):
            raise ValueError(f"src must be ranks in [0, {world}), got {src!r}")
        shape = () if shape is None else ((int(shape),) if isinstance(shape, numbers.Integral)
                                           else tuple(int(s) for s in shape))
        count = math.prod(shape)
        length = int(bits)
        operation = self._suite.communicator.begin(Tag.RANDOM_BITWISE, "random_bitwise_secret")

        async def body() -> tuple[ShamirArrayShare, ShamirArrayShare]:
            masks, _ = await self._masks(count, length, 0, contributors)
            return (ShamirArrayShare(masks.reshape(*shape, length)),
                    ShamirArrayShare(compose(self._field, masks).reshape(shape)))

        return self._run(operation, body, ())

    def bit_decompose(self, operand: Any, bits: Any = None) -> Coroutine[Any, Any, ShamirArrayShare]:
        field = self._field
        value = self._check(operand, "operand")
        if field.order != (1 << field.bits) - 1:
            raise ValueError(f"bit_decompose() needs a Mersenne prime field (the default), got {field!r}")
        if bits is None:
            length = field.bits
        elif isinstance(bits, numbers.Integral) and not isinstance(bits, bool) and 0 < int(bits) <= field.bits:
            length = int(bits)
        else:
            raise ValueError(f"bits must be an integer in [1, {field.bits}], got {bits!r}")
        shape = value.shape
        operation = self._suite.communicator.begin(Tag.BIT_DECOMPOSE, "bit_decompose")

        async def body() -> ShamirArrayShare:
            flat = numpy.ascontiguousarray(value).reshape(-1)
            if flat.size == 0:
                return ShamirArrayShare(field.zeros((*shape, length)))
            decomposed = await self._decompose(flat)
            return ShamirArrayShare(numpy.ascontiguousarray(decomposed[:, field.bits - length:]).reshape(*shape,
                                                                                                          length))

        return self._run(operation, body, ())

    def bit_compose(self, operand: Any) -> ShamirArrayShare:
        value = self._check(operand, "operand")
        if value.ndim == 0:
            raise ValueError("operand must have a last axis of bits")
        return ShamirArrayShare(compose(self._field, value))
