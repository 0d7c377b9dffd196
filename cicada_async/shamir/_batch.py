"""Operations started together run together: elementwise operations called in the same
turn of the event loop form a *batch*, computed on one flat array and sent in one frame per
peer.

Each operation still takes its own identity when it is called, and its part of every frame
carries that identity (BATCH frames, :mod:`cicada_async._core.framing`).  Batches are an
optimisation local to each player: another player may form different batches from the same
calls (its loop may run them in other turns) and everything still matches, operation by
operation, and each operation succeeds or fails on its own data, exactly as it would alone.
So ``await asyncio.gather(*(protocol.multiply(a, b) for a, b in pairs))`` costs about one
multiplication of the concatenated arrays, not ``len(pairs)`` round trips.

A batched operation returns an :class:`OperationFuture`: an :class:`asyncio.Future` that
``await``, ``asyncio.gather``, ``wait_for`` and ``create_task`` all accept.  Awaiting the only
operation of a batch runs the batch in the awaiting task (no task is created: the sequential
case stays cheap); otherwise the batch runs in a task of its own, started when the loop
comes round.
"""

from __future__ import annotations

import asyncio
import collections.abc
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any

import numpy

from ..communicator.interface import Operation

__all__ = ["Batch", "Batcher", "Layout", "OperationFuture", "Request"]


class OperationFuture(asyncio.Future[Any]):
    """The result of an operation that may run in a batch (see the module docstring).

    Also a coroutine in the sense of :class:`collections.abc.Coroutine`, so that
    ``asyncio.create_task(protocol.multiply(a, b))`` works as it does for any coroutine.
    """

    __slots__ = ("_batch", "_driver")

    def __init__(self, batch: Batch) -> None:
        super().__init__(loop=batch.loop)
        self._batch: Batch | None = batch
        self._driver: Generator[Any, None, Any] | None = None

    def __await__(self) -> Generator[Any, None, Any]:
        batch = self._batch
        self._batch = None
        if batch is not None and not batch.started and len(batch.requests) == 1:
            yield from batch.run().__await__()  # the sequential case: run it here and now
        return (yield from super().__await__())

    __iter__ = __await__

    # -- the coroutine protocol (for asyncio.create_task) ----------------------------------
    def send(self, value: Any) -> Any:
        """Advance the awaiting of this future (as a coroutine's ``send``)."""
        if self._driver is None:
            self._driver = self.__await__()
        return self._driver.send(value)

    def throw(self, *args: Any) -> Any:
        """Throw an exception into the awaiting of this future (as a coroutine's ``throw``)."""
        if self._driver is None:
            self._driver = self.__await__()
        return self._driver.throw(*args)

    def close(self) -> None:
        """Stop awaiting (as a coroutine's ``close``)."""
        if self._driver is not None:
            self._driver.close()


collections.abc.Coroutine.register(OperationFuture)


class Request:
    """One operation of a batch: its identity, its input, and where its result goes."""

    __slots__ = ("future", "operation", "payload")

    def __init__(self, operation: Operation, payload: Any, future: OperationFuture) -> None:
        self.operation = operation
        self.payload = payload
        self.future = future

    def resolve(self, value: Any) -> None:
        if not self.future.done():
            self.future.set_result(value)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


Runner = Callable[[list[Request]], Awaitable[None]]


class Batch:
    """Operations of one kind waiting to run together; :meth:`run` runs them once."""

    __slots__ = ("batcher", "key", "loop", "requests", "runner", "started")

    def __init__(self, batcher: Batcher, key: Any, runner: Runner) -> None:
        self.batcher = batcher
        self.key = key
        self.runner = runner
        self.loop = batcher.loop
        self.requests: list[Request] = []
        self.started = False

    async def run(self) -> None:
        """Run the batch's protocol; every request ends resolved or failed."""
        if self.started:
            return
        self.started = True
        self.batcher.close(self)
        requests = self.requests
        try:
            await self.runner(requests)
        except asyncio.CancelledError:
            for request in requests:
                request.future.cancel()
            raise
        except BaseException as error:
            for request in requests:
                request.fail(error)
            if not isinstance(error, Exception):
                raise
        finally:
            for request in requests:  # a runner must settle every request; never leave one hanging
                request.fail(RuntimeError("the batch ended without a result for this operation (a bug)"))

    def _start(self) -> None:
        if not self.started:
            assert self.loop is not None  # set by Batcher.submit before a batch starts
            task = self.loop.create_task(self.run())
            self.batcher.tasks.add(task)
            task.add_done_callback(self.batcher.tasks.discard)


class Batcher:
    """The open batches of one protocol suite, by kind."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._open: dict[Any, Batch] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def submit(self, key: Any, runner: Runner, operation: Operation, payload: Any) -> OperationFuture:
        """Add an operation to the open batch for ``key`` (one is opened if needed)."""
        batch = self._open.get(key)
        if batch is None:
            loop = self.loop = asyncio.get_running_loop()
            batch = self._open[key] = Batch(self, key, runner)
            loop.call_soon(batch._start)
        future = OperationFuture(batch)
        batch.requests.append(Request(operation, payload, future))
        return future

    def close(self, batch: Batch) -> None:
        """``batch`` has started: later operations go to a new one."""
        if self._open.get(batch.key) is batch:
            del self._open[batch.key]


class Layout:
    """Where each operation's elements lie in the flat arrays of a batch.

    ``offsets[j]:offsets[j+1]`` are operation j's elements; :meth:`words` scales them to
    the words of the field's wire format.
    """

    __slots__ = ("offsets", "sizes")

    def __init__(self, sizes: Sequence[int]) -> None:
        self.sizes = list(sizes)
        offsets = [0]
        for size in self.sizes:
            offsets.append(offsets[-1] + size)
        self.offsets = offsets

    @property
    def total(self) -> int:
        """Elements in all."""
        return self.offsets[-1]

    def words(self, per_element: int) -> list[int]:
        """The offsets of a layout with ``per_element`` words per element."""
        return [offset * per_element for offset in self.offsets]

    def keep(self, indices: Sequence[int]) -> tuple[Layout, numpy.ndarray]:
        """The layout of only the operations ``indices``, and the element positions they had."""
        positions = numpy.concatenate([numpy.arange(self.offsets[j], self.offsets[j + 1]) for j in indices]
                                      ) if indices else numpy.zeros(0, dtype=numpy.intp)
        return Layout([self.sizes[j] for j in indices]), positions
