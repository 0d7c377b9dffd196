"""Shamir secret sharing protocol suites over a :class:`~cicada_async.communicator.Communicator`.

Shares are numpy arrays of field elements (:mod:`cicada_async.arithmetic`; by default the
Mersenne prime 2**127 - 1).  A secret is shared as the values at each member's index
(``indices``, default 1..n) of a random polynomial of degree ``threshold - 1`` whose constant
term is the encoded secret; any ``threshold`` shares determine it, fewer reveal nothing.
Share polynomials and masks come from the operating system's CSPRNG; ``seed`` is for
reproducible tests only.

Communication rounds: ``share``, ``reveal`` (to everyone or to a subset), ``reshare`` and
``field_uniform`` take one round each; ``field_multiply``/``field_dot`` one (degree reduction);
``multiply``/``dot``/``matvec`` with fixed-point values two (degree reduction with the
truncation masks riding along, then one reveal of a masked value).

Fixed-point truncation (after a product, to drop ``precision`` fractional bits) is
probabilistic, after Catrina and de Hoogh: players ``0 .. threshold-1`` each contribute a
random mask ``r_i < 2**(k + 40)`` (k = the bit bound of the values, ``field.bits - 48``) and
its top part ``floor(r_i / 2**precision)``; the masked value ``x + 2**(k-1) + sum(r_i)`` is
revealed.  Its statistical distance from uniform is at most 2**-40 as long as one contributor
is honest, so the **statistical security parameter is 40 bits**.  The result is the product
rounded to ``precision`` bits, off by at most ``threshold // 2 + 1`` units in the last place
(``2**-precision``) and unbiased on average for even thresholds.  Products must stay below
``2**(k - 2 - 2*precision)`` in magnitude (2**45 ≈ 3.5e13 for the default field and precision 16).
"""

from __future__ import annotations

import numbers
from collections.abc import Awaitable, Coroutine, Sequence
from typing import Any

import numpy

from .arithmetic import Field, MersenneField, field, secure_words
from .communicator.interface import Communicator, Operation, Tag
from .encoding import FixedPoint
from .errors import RemoteProtocolError

__all__ = ["ShamirArrayShare", "ShamirBasicProtocolSuite", "ShamirProtocolSuite"]

STATISTICAL_SECURITY = 40
"""Bits of statistical security of the truncation masks."""
_HEADROOM = STATISTICAL_SECURITY + 8  # room for the masks of up to 128 contributors, and sign


class ShamirArrayShare:
    """This player's share of a secret array.

    ``storage`` holds field elements (the field's dtype) in the secret's shape.  Shares are
    plain data: they do not refer to the communicator or suite that made them, so a suite
    built after a shrink (with the survivors' ``indices``) can open them.
    """

    __slots__ = ("_storage",)

    def __init__(self, storage: numpy.ndarray) -> None:
        if not isinstance(storage, numpy.ndarray):
            raise ValueError(f"storage must be a numpy array, got {type(storage).__name__}")
        self._storage = storage

    def __repr__(self) -> str:
        return f"ShamirArrayShare(shape={self._storage.shape})"

    def __getitem__(self, index: Any) -> ShamirArrayShare:
        return ShamirArrayShare(self._storage[index])

    def __len__(self) -> int:
        return len(self._storage)

    @property
    def storage(self) -> numpy.ndarray:
        """The field elements of this share (the field's dtype, the secret's shape)."""
        return self._storage

    @storage.setter
    def storage(self, storage: numpy.ndarray) -> None:
        self._storage = storage

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the secret."""
        return self._storage.shape


class ShamirBasicProtocolSuite:
    """Share, reveal, add and subtract secrets shared with Shamir's scheme.

    Constructing a suite never communicates.

    Parameters
    ----------
    communicator:
        The members taking part.
    threshold:
        Shares needed to reveal a secret: ``2 <= threshold <= world_size``.
    seed, seed_offset:
        For reproducible tests only: seed the randomness with ``seed + seed_offset``
        (``seed_offset`` defaults to the player's rank).  Without ``seed``, randomness comes
        from the operating system's CSPRNG.
    order:
        The field's prime (default: the Mersenne prime 2**127 - 1; other primes below 2**64
        work on a slower path without fixed-point multiplication).
    encoding:
        Default encoding of secrets (default ``FixedPoint(precision=16)``).
    indices:
        A 1-d integer array of each member's x-value (default ``ranks + 1``).  After a shrink,
        ``indices=old_protocol.indices[oldranks]`` keeps the survivors' shares valid.
    """

    def __init__(self, communicator: Communicator, *, threshold: int, seed: int | None = None,
                 seed_offset: int | None = None, order: int | None = None, encoding: Any = None,
                 indices: Any = None) -> None:
        if not isinstance(communicator, Communicator):
            raise ValueError(f"communicator must be a Communicator, got {communicator!r}")
        if not isinstance(threshold, numbers.Integral) or isinstance(threshold, bool):
            raise ValueError(f"threshold must be an integer, got {threshold!r}")
        if threshold < 2:
            raise ValueError("threshold must be >= 2")
        if threshold > communicator.world_size:
            raise ValueError("threshold must be <= world_size")
        self._communicator = communicator
        self._threshold = int(threshold)
        self._field = field(order)
        self._encoding = FixedPoint() if encoding is None else encoding
        world_size = communicator.world_size
        if indices is None:
            indices = numpy.arange(1, world_size + 1, dtype=numpy.int64)
        indices = numpy.asarray(indices)
        if (indices.ndim != 1 or indices.shape[0] != world_size
                or not numpy.issubdtype(indices.dtype, numpy.integer)):
            raise ValueError(f"indices must be a 1-d integer array with one value per player ({world_size})")
        if len({int(x) % self._field.order for x in indices}) != world_size or any(
                int(x) % self._field.order == 0 for x in indices):
            raise ValueError("indices must be distinct and nonzero in the field")
        self._indices = indices.astype(numpy.int64)
        self._xs = [int(x) for x in self._indices]
        self._coefficients: dict[int, numpy.ndarray] = {}  # Lagrange coefficients of the first k
        if seed is None:
            self._generator: numpy.random.Generator | None = None
        else:
            offset = communicator.rank if seed_offset is None else seed_offset
            self._generator = numpy.random.default_rng(seed + offset)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} threshold={self._threshold} field={self._field!r} "
                f"encoding={self._encoding!r} on {self._communicator!r}>")

    # -- properties ------------------------------------------------------------------
    @property
    def communicator(self) -> Communicator:
        """The communicator the suite runs on."""
        return self._communicator

    @property
    def threshold(self) -> int:
        """Shares needed to reveal a secret."""
        return self._threshold

    @property
    def indices(self) -> numpy.ndarray:
        """Each member's x-value, in rank order (index it with ``oldranks`` after a shrink)."""
        return self._indices.copy()

    @property
    def encoding(self) -> Any:
        """The default encoding."""
        return self._encoding

    @property
    def field(self) -> Field:
        """The field shares live in."""
        return self._field

    # -- checks ------------------------------------------------------------------------
    def _share(self, value: Any, label: str) -> ShamirArrayShare:
        if not isinstance(value, ShamirArrayShare):
            raise ValueError(f"{label} must be a ShamirArrayShare, got {type(value).__name__}")
        if value.storage.dtype != self._field.dtype:
            raise ValueError(f"{label} holds {value.storage.dtype} values, not elements of {self._field!r}")
        return value

    def _public(self, value: Any, encoding: Any) -> numpy.ndarray:
        return encoding.encode(numpy.asarray(value), self._field)

    def _storage(self, value: Any, label: str) -> numpy.ndarray:
        """A share's storage, or a public field array given as-is (``field_*`` operations)."""
        if isinstance(value, ShamirArrayShare):
            return self._share(value, label).storage
        array = numpy.asarray(value)
        if array.dtype == self._field.dtype:
            return array
        return self._field(array)

    def _received(self, value: Any, shape: tuple[int, ...], src: int) -> numpy.ndarray:
        try:
            return self._field.from_wire(value, shape)
        except (ValueError, TypeError) as exc:
            raise RemoteProtocolError(f"player {src} sent an invalid share: {exc}", rank=src) from None

    # -- communication helpers -------------------------------------------------------
    async def _exchange(self, operation: Operation, outgoing: Sequence[Any], round_: int = 0) -> list[Any]:
        """All-to-all: send ``outgoing[d]`` to every other member d, in one step; return what
        each member sent us (our own entry taken from ``outgoing``)."""
        ranks = self._communicator.ranks
        return await self._communicator.exchange(operation, round=round_, send=dict(zip(ranks, outgoing, strict=True)),
                                                 recv=ranks)

    def _poly_shares(self, storage: numpy.ndarray) -> numpy.ndarray:
        return self._field.polynomial_shares(storage, self._threshold - 1, self._xs, generator=self._generator)

    # -- sharing and revealing -------------------------------------------------------
    def share(self, *, src: int, secret: numpy.ndarray | None, shape: Any,
              encoding: Any = None) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: player ``src`` secret-shares ``secret``; everyone gets its share.

        ``secret`` is ignored on other players; ``shape`` must be given alike by everyone.
        One round (a scatter).
        """
        comm = self._communicator
        if not isinstance(src, numbers.Integral) or not 0 <= src < comm.world_size:
            raise ValueError(f"src must be a rank in [0, {comm.world_size}), got {src!r}")
        operation = comm.begin(Tag.SHARE)
        shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
        encoding = self._encoding if encoding is None else encoding
        values = None
        if comm.rank == src:
            if not isinstance(secret, numpy.ndarray):
                raise ValueError(f"secret must be a numpy array, got {type(secret).__name__}")
            if secret.shape != shape:
                raise ValueError(f"secret has shape {secret.shape}, expected {shape}")
            shares = self._poly_shares(encoding.encode(secret, self._field))
            values = [self._field.to_wire(shares[i, ...]) for i in range(comm.world_size)]
        return self._share_body(operation, int(src), values, shape)

    async def _share_body(self, operation: Operation, src: int, values: list[Any] | None,
                          shape: tuple[int, ...]) -> ShamirArrayShare:
        comm = self._communicator
        send = dict(zip(comm.ranks, values, strict=True)) if values is not None else {}
        received = (await comm.exchange(operation, send=send, recv=[src]))[0]
        return ShamirArrayShare(self._received(received, shape, src))

    def reveal(self, share: ShamirArrayShare, *, dst: int | Sequence[int] | None = None,
               encoding: Any = None) -> Coroutine[Any, Any, numpy.ndarray | None]:
        """Collective: reveal a secret to ``dst`` (default: everyone); others get None.

        Every member sends its share to every member of ``dst`` in one round; each member of
        ``dst`` then needs every member's share, so this raises if a member has failed (as
        Cicada does).
        """
        share = self._share(share, "share")
        comm = self._communicator
        encoding = self._encoding if encoding is None else encoding
        if dst is None:
            destinations = list(comm.ranks)
        elif isinstance(dst, numbers.Integral):
            destinations = [int(dst)]
        else:
            destinations = sorted({int(d) for d in dst})
        if any(not 0 <= d < comm.world_size for d in destinations):
            raise ValueError(f"dst ranks must be in [0, {comm.world_size})")
        operation = comm.begin(Tag.REVEAL)
        return self._reveal_body(operation, share, destinations, encoding)

    async def _reveal_body(self, operation: Operation, share: ShamirArrayShare, destinations: list[int],
                           encoding: Any) -> numpy.ndarray | None:
        comm = self._communicator
        wire = self._field.to_wire(share.storage)
        recv = comm.ranks if comm.rank in destinations else []
        received = await comm.exchange(operation, send=dict.fromkeys(destinations, wire), recv=recv)
        if not recv:
            return None
        return encoding.decode(self._open(received, share.shape), self._field)

    def _open(self, received: list[Any], shape: tuple[int, ...], degree: int | None = None) -> numpy.ndarray:
        """Interpolate the secret from every member's share (each one is checked).

        A polynomial of degree d is fixed by d + 1 shares, so only the first d + 1 enter the
        interpolation (d = threshold - 1 unless given).
        """
        needed = min(len(received), (self._threshold - 1 if degree is None else degree) + 1)
        coefficients = self._coefficients.get(needed)
        if coefficients is None:
            coefficients = self._coefficients[needed] = self._field.lagrange_coefficients(self._xs[:needed])
        shares = numpy.empty((needed, *shape), dtype=self._field.dtype)
        rows = shares.reshape(needed, -1).view(numpy.uint8)  # byte copies: fast for any dtype
        for src, value in enumerate(received):
            checked = self._received(value, shape, src)
            if src < needed:
                rows[src] = checked.reshape(-1).view(numpy.uint8)
        return self._field.recombine(shares, coefficients)

    def reshare(self, operand: ShamirArrayShare) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: fresh random shares of the same secret (one all-to-all round)."""
        operand = self._share(operand, "operand")
        return self._wrap(self._reshare(self._communicator.begin(Tag.RESHARE), operand.storage))

    @staticmethod
    async def _wrap(body: Awaitable[numpy.ndarray]) -> ShamirArrayShare:
        return ShamirArrayShare(await body)

    async def _reshare(self, operation: Operation, storage: numpy.ndarray) -> numpy.ndarray:
        shares = self._poly_shares(storage)
        outgoing = [self._field.to_wire(shares[i, ...]) for i in range(len(self._xs))]
        received = await self._exchange(operation, outgoing)
        # The shares we received are of polynomials of degree t-1 evaluated at every member's
        # index; recombining them with the coefficients for the *product's* degree, 2(t-1),
        # reduces the degree (for a plain reshare this is merely more terms than needed).
        return self._open(received, storage.shape, degree=2 * (self._threshold - 1))

    def field_uniform(self, *, shape: Any = None) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: a share of a field element array, uniformly random and known to nobody.

        Every member contributes randomness (one all-to-all round).
        """
        shape = () if shape is None else ((shape,) if isinstance(shape, numbers.Integral) else tuple(shape))
        return self._field_uniform(self._communicator.begin(Tag.UNIFORM), shape)

    async def _field_uniform(self, operation: Operation, shape: tuple[int, ...]) -> ShamirArrayShare:
        mine = self._poly_shares(self._field.uniform(shape, generator=self._generator))
        received = await self._exchange(operation, [self._field.to_wire(mine[i, ...]) for i in range(len(self._xs))])
        total = self._received(received[0], shape, 0)
        for src in range(1, len(received)):
            total = self._field.add(total, self._received(received[src], shape, src))
        return ShamirArrayShare(total)

    # -- local operations ------------------------------------------------------------
    def _binary(self, lhs: Any, rhs: Any, encoding: Any, operation: Any, name: str) -> ShamirArrayShare:
        encoding = self._encoding if encoding is None else encoding
        if isinstance(lhs, ShamirArrayShare) and isinstance(rhs, ShamirArrayShare):
            left, right = self._share(lhs, "lhs").storage, self._share(rhs, "rhs").storage
            return ShamirArrayShare(operation(left, right))
        if isinstance(lhs, ShamirArrayShare):
            return ShamirArrayShare(operation(self._share(lhs, "lhs").storage, self._public(rhs, encoding)))
        if isinstance(rhs, ShamirArrayShare):
            return ShamirArrayShare(operation(self._public(lhs, encoding), self._share(rhs, "rhs").storage))
        raise NotImplementedError(f"{name} of two public values is not a privacy-preserving operation")

    def add(self, lhs: Any, rhs: Any, *, encoding: Any = None) -> ShamirArrayShare:
        """Elementwise sum; either operand may be a public array (encoded with ``encoding``)."""
        return self._binary(lhs, rhs, encoding, self._field.add, "add")

    def subtract(self, lhs: Any, rhs: Any, *, encoding: Any = None) -> ShamirArrayShare:
        """Elementwise difference; either operand may be a public array."""
        return self._binary(lhs, rhs, encoding, self._field.subtract, "subtract")

    def negative(self, operand: ShamirArrayShare) -> ShamirArrayShare:
        """Elementwise negation."""
        return ShamirArrayShare(self._field.negative(self._share(operand, "operand").storage))

    def sum(self, operand: ShamirArrayShare) -> ShamirArrayShare:
        """Sum of every element (a 0-d share)."""
        return ShamirArrayShare(self._field.sum(self._share(operand, "operand").storage))

    def field_add(self, lhs: Any, rhs: Any) -> ShamirArrayShare:
        """Elementwise field sum, no encoding; public operands are field arrays."""
        return ShamirArrayShare(self._field.add(self._storage(lhs, "lhs"), self._storage(rhs, "rhs")))

    def field_subtract(self, lhs: Any, rhs: Any) -> ShamirArrayShare:
        """Elementwise field difference, no encoding; public operands are field arrays."""
        return ShamirArrayShare(self._field.subtract(self._storage(lhs, "lhs"), self._storage(rhs, "rhs")))


class ShamirProtocolSuite(ShamirBasicProtocolSuite):
    """:class:`ShamirBasicProtocolSuite` plus multiplication (``multiply``, ``dot``, ``matvec``,
    ``field_multiply``, ``field_dot``).

    Degree reduction after a product needs ``world_size >= 2 * threshold - 1``, checked here.
    Fixed-point products are truncated probabilistically with 40 bits of statistical security
    (see the module documentation for the bounds).
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

    # -- field products --------------------------------------------------------------
    def field_multiply(self, lhs: Any, rhs: Any) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Elementwise field product.  Private x private: one round (degree reduction);
        with a public operand (a field array): local."""
        operation = self._communicator.begin(Tag.MULTIPLY)
        product, private = self._product(lhs, rhs, self._field.multiply)
        return self._finish_product(operation, product, private)

    def field_dot(self, lhs: Any, rhs: Any) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Field dot product (numpy.dot semantics), one round when both operands are private."""
        operation = self._communicator.begin(Tag.DOT)
        product, private = self._product(lhs, rhs, self._field.dot)
        return self._finish_product(operation, product, private)

    async def _finish_product(self, operation: Operation, product: numpy.ndarray, private: bool) -> ShamirArrayShare:
        if not private:
            return ShamirArrayShare(product)
        return ShamirArrayShare(await self._reshare(operation, product))

    def _product(self, lhs: Any, rhs: Any, operation: Any,
                 encoding: Any = None) -> tuple[numpy.ndarray, bool]:
        left_private = isinstance(lhs, ShamirArrayShare)
        right_private = isinstance(rhs, ShamirArrayShare)
        if not left_private and not right_private:
            raise NotImplementedError("multiplying two public values is not a privacy-preserving operation")
        if encoding is None:
            left, right = self._storage(lhs, "lhs"), self._storage(rhs, "rhs")
        else:
            left = self._share(lhs, "lhs").storage if left_private else self._public(lhs, encoding)
            right = self._share(rhs, "rhs").storage if right_private else self._public(rhs, encoding)
        return operation(left, right), left_private and right_private

    # -- encoded products ------------------------------------------------------------
    def multiply(self, lhs: Any, rhs: Any, *, encoding: Any = None) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Elementwise product of encoded values (either operand may be public).

        With a fixed-point encoding the result is truncated back to ``precision``
        fractional bits: two rounds in all.
        """
        return self._encoded_product(lhs, rhs, encoding, self._field.multiply, Tag.MULTIPLY)

    def dot(self, lhs: Any, rhs: Any, *, encoding: Any = None) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Dot product of encoded vectors (numpy.dot semantics), truncated for fixed point."""
        return self._encoded_product(lhs, rhs, encoding, self._field.dot, Tag.DOT)

    def matvec(self, lhs: Any, rhs: Any, *, encoding: Any = None) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Matrix (2-d) times vector (1-d) of encoded values, truncated for fixed point."""
        left = lhs.storage if isinstance(lhs, ShamirArrayShare) else numpy.asarray(lhs)
        right = rhs.storage if isinstance(rhs, ShamirArrayShare) else numpy.asarray(rhs)
        if left.ndim != 2 or right.ndim != 1 or left.shape[1] != right.shape[0]:
            raise ValueError(f"matvec needs a (m, n) matrix and an (n,) vector, "
                             f"got {left.shape} and {right.shape}")
        return self._encoded_product(lhs, rhs, encoding, self._field.dot, Tag.DOT)

    def _encoded_product(self, lhs: Any, rhs: Any, encoding: Any, operation: Any,
                         kind: int) -> Coroutine[Any, Any, ShamirArrayShare]:
        encoding = self._encoding if encoding is None else encoding
        bits = int(getattr(encoding, "precision", 0) or 0)
        op = self._communicator.begin(Tag.TRUNCATE if bits else kind)
        product, private = self._product(lhs, rhs, operation, encoding)
        if not bits:
            return self._finish_product(op, product, private)
        return self._wrap(self._reduce_and_truncate(op, product, bits, reduce=private))

    # -- probabilistic truncation ----------------------------------------------------
    def _truncation_bound(self, bits: int) -> int:
        if not isinstance(self._field, MersenneField):
            raise ValueError(f"fixed-point multiplication needs the default field (2**127 - 1); "
                             f"{self._field!r} leaves no room for {STATISTICAL_SECURITY}-bit masks")
        bound = self._field.bits - _HEADROOM
        if bound < 2 * bits + 8:
            raise ValueError(f"precision {bits} is too large for truncation in {self._field!r}")
        return bound

    async def _reduce_and_truncate(self, operation: Operation, product: numpy.ndarray, bits: int, *,
                                   reduce: bool) -> numpy.ndarray:
        """Degree-reduce ``product`` (if ``reduce``) and divide it by 2**bits, in two rounds."""
        k = self._truncation_bound(bits)
        comm = self._communicator
        shape = product.shape
        n = comm.world_size
        contributors = list(range(self._threshold))
        outgoing: list[list[numpy.ndarray]] = [[] for _ in range(n)]
        if reduce:
            shares = self._poly_shares(product)
            for dst in range(n):
                outgoing[dst].append(self._field.to_wire(shares[dst, ...]))
        if comm.rank in contributors:
            mask = _random_below_power_of_two(self._field.dtype, shape, k + STATISTICAL_SECURITY,
                                              self._generator)
            top = _shift_right(mask, bits)
            mask_shares = self._poly_shares(mask)
            top_shares = self._poly_shares(top)
            for dst in range(n):
                outgoing[dst] += [self._field.to_wire(mask_shares[dst, ...]),
                                  self._field.to_wire(top_shares[dst, ...])]
        received = await self._exchange(operation, [tuple(parts) for parts in outgoing])
        # Round 1 results: the reduced product and the sums of the masks.
        position = 0
        if reduce:
            value = self._open([parts[0] for parts in received], shape, degree=2 * (self._threshold - 1))
            position = 1
        else:
            value = product
        masks = self._field.zeros(shape)
        tops = self._field.zeros(shape)
        for src in contributors:
            parts = received[src]
            expected = position + 2
            if not isinstance(parts, tuple) or len(parts) != expected:
                raise RemoteProtocolError(f"player {src} sent a malformed truncation message", rank=src)
            masks = self._field.add(masks, self._received(parts[position], shape, src))
            tops = self._field.add(tops, self._received(parts[position + 1], shape, src))
        # Round 2: reveal y + sum(r_i), y = x + 2**(k-1) (positive) + 2**(bits-1) (to round
        # rather than floor); no wrap-around, as the field has room.
        offset = self._field.full(shape, (1 << (k - 1)) + (1 << (bits - 1)))
        masked = self._field.add(self._field.add(value, offset), masks)
        wire = self._field.to_wire(masked)
        revealed = self._open(await comm.exchange(operation, round=1, send=dict.fromkeys(comm.ranks, wire),
                                                  recv=comm.ranks), shape)
        # floor(c / 2**bits) = floor(y / 2**bits) + sum(floor(r_i / 2**bits)) + carry, where the
        # carry (0..threshold) has mean ~threshold/2: subtract that instead.
        constant = self._field.subtract(_shift_right(revealed, bits),
                                        self._field.full(shape, (1 << (k - 1 - bits)) + self._threshold // 2))
        return self._field.subtract(constant, tops)


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

