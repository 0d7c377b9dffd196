"""``ShamirBasicProtocolSuite``: share, reveal, reshare, uniform randomness, and local arithmetic."""

from __future__ import annotations

import asyncio
import numbers
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

import numpy

from .._ranks import require_rank, require_ranks
from ..arithmetic import Field, field
from ..communicator.interface import Communicator, Operation, Tag, roles_code
from ..encoding import FixedPoint
from ..errors import RemoteProtocolError
from ._batch import Batcher, Layout, Request
from ._share import ShamirArrayShare
from ._vectors import ArrayVectors, IntVectors, vectors

__all__ = ["ShamirBasicProtocolSuite"]


def _seed(value: Any, what: str) -> int | None:
    """``None``, or a non-negative integer seed (``what`` names the argument)."""
    if value is None:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ValueError(f"{what} must be a non-negative integer or None, got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value}")
    return int(value)


class ShamirBasicProtocolSuite:
    """Share, reveal, add and subtract secrets shared with Shamir's scheme.

    Constructing a suite never communicates.  Its communicating methods are operations:
    each takes its identity when called and returns an awaitable; several may run at once
    (``asyncio.gather``), and elementwise ones started together run as one batch (see
    :mod:`cicada_async.operations` and :mod:`cicada_async.shamir`).

    Parameters
    ----------
    communicator:
        The members taking part.
    threshold:
        Shares needed to reveal a secret: ``2 <= threshold <= world_size``.
    seed, seed_offset:
        For reproducible tests only: seed the randomness with ``seed + seed_offset``
        (``seed_offset`` defaults to the player's rank).  Without ``seed``, randomness comes
        from the operating system's CSPRNG.  Each must be ``None`` or a non-negative integer.
    order:
        The field's prime (default: the Mersenne prime 2**127 - 1; other primes below 2**64
        work on a slower path without fixed-point multiplication).
    encoding:
        Default encoding of secrets (default ``FixedPoint(precision=16)``).
    indices:
        A 1-d integer array of each member's x-value (default ``ranks + 1``).  After a shrink,
        ``indices=old_protocol.indices[oldranks]`` keeps the survivors' shares valid.

    Raises
    ------
    ValueError
        If an argument is invalid: ``threshold`` out of range, ``indices`` not distinct and
        nonzero, or ``seed`` / ``seed_offset`` not a non-negative integer (the message names
        the argument).
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
        self._communicator: Communicator = communicator
        self._threshold: int = int(threshold)
        self._field: Field = field(order)
        self._encoding: Any = FixedPoint() if encoding is None else encoding
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
        self._indices: numpy.ndarray = indices.astype(numpy.int64)
        self._xs: list[int] = [int(x) for x in self._indices]
        self._ranks: list[int] = list(range(world_size))
        self._coefficients: dict[int, numpy.ndarray] = {}  # Lagrange coefficients of the first k
        self._coefficient_lists: dict[int, list[int]] = {}  # the same, as Python ints
        self._words: int = self._field.to_wire(self._field.zeros((1,))).size  # wire words per element
        self._batcher: Batcher = Batcher()
        seed = _seed(seed, "seed")
        seed_offset = _seed(seed_offset, "seed_offset")
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

    @staticmethod
    def _shape(shape: Any) -> tuple[int, ...]:
        return (int(shape),) if isinstance(shape, numbers.Integral) else tuple(int(s) for s in shape)

    def _done(self, value: Any) -> asyncio.Future[Any]:
        """An operation that needs no communication: its result, already there."""
        future = asyncio.get_running_loop().create_future()
        future.set_result(value)
        return future

    # -- communication helpers -------------------------------------------------------
    def _poly_shares(self, storage: numpy.ndarray) -> numpy.ndarray:
        return self._field.polynomial_shares(storage, self._threshold - 1, self._xs, generator=self._generator)

    async def _exchange(self, operation: Operation, outgoing: Sequence[Any], round_: int = 0) -> list[Any]:
        """All-to-all: send ``outgoing[d]`` to every member d, in one step; return what each
        member sent us (our own entry taken from ``outgoing``)."""
        ranks = self._ranks
        return await self._communicator.exchange(operation, round=round_, send=dict(zip(ranks, outgoing, strict=True)),
                                                 recv=ranks)

    def _open(self, received: Sequence[Any], shape: tuple[int, ...], degree: int | None = None) -> numpy.ndarray:
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

    # -- batches -----------------------------------------------------------------------
    async def _round(self, requests: list[Request], layout: Layout, round_: int, send: Mapping[int, numpy.ndarray],
                     send_words: int, recv: Mapping[int, int]) -> tuple[list[Request], Layout, numpy.ndarray | None,
                                                                         dict[int, numpy.ndarray]]:
        """One round of a batch: ``send[dst]`` holds every operation's words for ``dst``
        (``send_words`` per element); ``recv[src]`` is how many words per element ``src`` sends.

        Returns the requests still alive (the others are failed here, each with its own
        error), their layout, the element positions they had (None if all are alive) and
        what each source sent, reshaped to ``(elements, words)`` and cut down to them.
        """
        layouts = {src: layout.words(words) for src, words in recv.items() if words}
        received, failed = await self._communicator.exchange_batch(
            [request.operation for request in requests], round=round_, send=send, offsets=layout.words(send_words),
            recv=layouts)
        shaped = {src: data.reshape(layout.total, recv[src]) for src, data in received.items()}
        if not failed:
            return requests, layout, None, shaped
        for index, error in failed.items():
            requests[index].fail(error)
        alive = [index for index in range(len(requests)) if index not in failed]
        kept, positions = layout.keep(alive)
        return ([requests[index] for index in alive], kept, positions,
                {src: data[positions] for src, data in shaped.items()})

    def _vectors(self, count: int) -> ArrayVectors | IntVectors:
        return vectors(self._field, count, self._xs, self._generator)

    def _coefficient_ints(self, needed: int) -> list[int]:
        """Lagrange coefficients for interpolating at 0 from the first ``needed`` members."""
        cached = self._coefficient_lists.get(needed)
        if cached is None:
            coefficients = self._field.lagrange_coefficients(self._xs[:needed])
            cached = self._coefficient_lists[needed] = self._field.int_list(coefficients)
        return cached

    def _interpolate(self, vec: ArrayVectors | IntVectors, rows: Mapping[int, numpy.ndarray], degree: int,
                     parts: Mapping[int, int] | None = None) -> Any:
        """The secrets whose shares (of ``degree``) every member sent as the first part of its
        rows (of ``parts[src]`` parts, default 1); every member's data is checked, the first
        ``degree + 1`` are used."""
        needed = degree + 1
        values = [vec.unwire(rows[src], 1 if parts is None else parts[src], src)[0] for src in self._ranks]
        return vec.recombine(values[:needed], self._coefficient_ints(needed))

    # -- sharing and revealing -------------------------------------------------------
    def share(self, *, src: int, secret: numpy.ndarray | None, shape: Any,
              encoding: Any = None) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: player ``src`` secret-shares ``secret``; everyone gets its share.

        ``secret`` is ignored on other players; ``shape`` must be given alike by everyone.
        One round (a scatter).  An operation: it takes its identity when called.

        Raises
        ------
        ValueError
            At the call, if ``src`` is not a rank in ``[0, world_size)``, or (on ``src``) if
            ``secret`` is not a numpy array of shape ``shape``.
        """
        comm = self._communicator
        src = require_rank(src, comm.world_size, "src")
        operation = comm.begin(Tag.SHARE, "share", roles_code(src))
        shape = self._shape(shape)
        encoding = self._encoding if encoding is None else encoding
        values = None
        if comm.rank == src:
            if not isinstance(secret, numpy.ndarray):
                raise ValueError(f"secret must be a numpy array, got {type(secret).__name__}")
            if secret.shape != shape:
                raise ValueError(f"secret has shape {secret.shape}, expected {shape}")
            shares = self._poly_shares(encoding.encode(secret, self._field))
            values = [self._field.to_wire(shares[i, ...]) for i in range(comm.world_size)]
        return self._share_body(operation, src, values, shape)

    async def _share_body(self, operation: Operation, src: int, values: list[Any] | None,
                          shape: tuple[int, ...]) -> ShamirArrayShare:
        send = dict(zip(self._ranks, values, strict=True)) if values is not None else {}
        received = (await self._communicator.exchange(operation, send=send, recv=[src]))[0]
        return ShamirArrayShare(self._received(received, shape, src))

    def reveal(self, share: ShamirArrayShare, *, dst: int | Sequence[int] | None = None,
               encoding: Any = None) -> Any:
        """Collective: reveal a secret to ``dst`` (default: everyone); others get None.

        Every member sends its share to every member of ``dst`` in one round; each member of
        ``dst`` then needs every member's share, so this raises if a member has failed (as
        Cicada does).  An operation: it takes its identity when called; reveals to everyone
        started together run as one batch.

        ``dst`` is a rank or a sequence of distinct ranks (their order does not matter).

        Raises
        ------
        ValueError
            At the call, if ``share`` is not a share of this suite's field, or ``dst`` holds a
            rank outside ``[0, world_size)``, something that is not a rank, or a repeated
            rank (the message names it, e.g. ``dst=[0, 0]``).
        """
        share = self._share(share, "share")
        comm = self._communicator
        encoding = self._encoding if encoding is None else encoding
        if dst is None:  # the common case: everyone, batched
            operation = comm.begin(Tag.REVEAL, "reveal")
            return self._batcher.submit(Tag.REVEAL, self._reveal_batch, operation, (share.storage, encoding))
        destinations = sorted(require_ranks(dst, comm.world_size, "dst"))
        if len(destinations) == comm.world_size:
            operation = comm.begin(Tag.REVEAL, "reveal")
            return self._batcher.submit(Tag.REVEAL, self._reveal_batch, operation, (share.storage, encoding))
        operation = comm.begin(Tag.REVEAL, "reveal", roles_code(tuple(destinations)))
        return self._reveal_to(operation, share, destinations, encoding)

    async def _reveal_to(self, operation: Operation, share: ShamirArrayShare, destinations: list[int],
                         encoding: Any) -> numpy.ndarray | None:
        comm = self._communicator
        wire = self._field.to_wire(share.storage)
        recv = self._ranks if comm.rank in destinations else []
        received = await comm.exchange(operation, send=dict.fromkeys(destinations, wire), recv=recv)
        if not recv:
            return None
        return encoding.decode(self._open(received, share.shape), self._field)

    async def _reveal_batch(self, requests: list[Request]) -> None:
        storages = [request.payload[0] for request in requests]
        shapes = [storage.shape for storage in storages]
        layout = Layout([storage.size for storage in storages])
        vec = self._vectors(layout.total)
        wire = vec.wire([vec.inputs(storages, shapes)])
        requests, layout, _, rows = await self._round(requests, layout, 0, dict.fromkeys(self._ranks, wire),
                                                      self._words, dict.fromkeys(self._ranks, self._words))
        if not requests:
            return
        secrets = self._interpolate(vec, rows, self._threshold - 1)
        shapes = [request.payload[0].shape for request in requests]
        encodings = [request.payload[1] for request in requests]
        first = encodings[0]
        if len(requests) > 1 and all(encoding is first for encoding in encodings):
            # The usual case: one encoding for all; decode every element at once, then split.
            flat = first.decode(vec.outputs(secrets, [0, layout.total], [(layout.total,)])[0], self._field)
            offsets = layout.offsets
            for j, request in enumerate(requests):
                request.resolve(flat[offsets[j]:offsets[j + 1]].reshape(shapes[j]))
            return
        for request, secret in zip(requests, vec.outputs(secrets, layout.offsets, shapes), strict=True):
            request.resolve(request.payload[1].decode(secret, self._field))

    def reshare(self, operand: ShamirArrayShare) -> Coroutine[Any, Any, ShamirArrayShare]:
        """Collective: fresh random shares of the same secret (one all-to-all round)."""
        operand = self._share(operand, "operand")
        return self._reshare_body(self._communicator.begin(Tag.RESHARE, "reshare"), operand.storage)

    async def _reshare_body(self, operation: Operation, storage: numpy.ndarray) -> ShamirArrayShare:
        return ShamirArrayShare(await self._reshare(operation, storage))

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
        shape = () if shape is None else self._shape(shape)
        return self._field_uniform(self._communicator.begin(Tag.UNIFORM, "field_uniform"), shape)

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
