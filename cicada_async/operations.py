"""Operations and scopes: how concurrent work keeps its messages apart.

Every collective, protocol-suite operation and synchronised ``Logger`` call takes an
*identity* when it is called, from the caller's current *scope*; its messages carry it, and
the other players' halves of the same operation match it exactly, whatever order their event
loops run things in (the scheme and its invariants: :mod:`cicada_async._core.identity`).  So
a program may run operations concurrently::

    products = await asyncio.gather(*(protocol.multiply(a, b) for a, b in pairs))

Two tools cover what the library cannot number by itself:

* :func:`operation` decorates your own coroutine that runs concurrently with others and
  communicates after its first ``await``: calling it takes the next number in the caller's
  scope, and its body runs in a scope of its own.
* :class:`scope` (``with cicada_async.scope(key):``) is for work whose order differs between
  players, such as client requests reaching each player's service in a different order: the
  operations inside are numbered from zero under ``key``, whatever runs elsewhere.

Calling an operation from a task that does not own the current scope (typically an
undecorated coroutine started by ``asyncio.gather`` or ``create_task``) raises
:class:`~cicada_async.errors.ConcurrencyError` at the call, because its number would then
depend on scheduling.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from ._core.identity import NotOwner, Scope
from .errors import ConcurrencyError

__all__ = ["current_scope", "inside", "operation", "own_root", "scope", "spawn_with_own_root"]

P = ParamSpec("P")
T = TypeVar("T")

PROCESS_ROOT = Scope.root()
"""The root scope of code that runs outside any scope set up by the library."""

_current: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("cicada_async.scope", default=None)


def current_scope() -> Scope:
    """The scope in which an operation called now would take its identity."""
    return _current.get() or PROCESS_ROOT


def current_task() -> asyncio.Task[Any] | None:
    """The running task, or None outside a task (a callback, or no loop at all)."""
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _task_name(task: Any) -> str:
    return "no task (a callback)" if task is None else f"task {task.get_name()!r}"


def concurrency_error(prefix: str, what: str, where: Scope, task: Any, owner: Any) -> ConcurrencyError:
    """The error for ``what`` called from ``task`` in ``where``, which ``owner`` owns."""
    return ConcurrencyError(
        f"{prefix}{what} was called from {_task_name(task)}, but scope {where.describe()} is owned by "
        f"{_task_name(owner)}, which is still running: the order of the two tasks' operations would "
        "depend on scheduling, which differs between players. Decorate the coroutine that calls it "
        "with @cicada_async.operation (each call then gets its identity in the caller's order), or "
        "run its body under `with cicada_async.scope(key):` with a key every player derives the "
        "same way (e.g. a request id)."
    )


async def _run_in(where: Scope, body: Awaitable[T]) -> T:
    token = _current.set(where)
    try:
        return await body
    finally:
        _current.reset(token)


def operation(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Decorate a coroutine function whose calls may run concurrently and communicate.

    Calling the decorated function takes the next identity in the caller's scope, at once
    (before any ``await``), and returns a coroutine whose body runs in a child scope of its
    own.  It can be awaited directly, gathered, wrapped in tasks (``asyncio.create_task``,
    ``wait_for``) and nested.  Every player must call it in the same order within a scope,
    as with any collective.

    Raises
    ------
    TypeError
        If ``fn`` is not a coroutine function.
    ConcurrencyError
        At the call, if the calling task does not own the current scope.

    Examples
    --------
    ::

        @cicada_async.operation
        async def product_of(protocol, a, b):
            return await protocol.reveal(await protocol.multiply(a, b))

        results = await asyncio.gather(*(product_of(protocol, a, b) for a, b in pairs))
    """
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"@cicada_async.operation needs a coroutine function (async def), got {fn!r}")
    name = getattr(fn, "__qualname__", repr(fn))

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, T]:
        parent = current_scope()
        task = current_task()
        try:
            child = parent.user_child(task)
        except NotOwner as exc:
            raise concurrency_error("", f"operation {name}()", parent, task, exc.owner) from None
        return _run_in(child, fn(*args, **kwargs))

    return call


@contextmanager
def scope(key: Any) -> Iterator[None]:
    """Run the block in a scope named by ``key``, independent of what runs elsewhere.

    For work whose order differs between players, e.g. one request of a service: operations
    inside the block are numbered from zero under ``key``, so they meet the same operations
    of the other players as long as every player uses the same key for the same request.

    Parameters
    ----------
    key:
        A str, int, bytes or tuple of them, derived the same way on every player (a request
        id, say).

    Raises
    ------
    TypeError
        If ``key`` has another type.
    ValueError
        If a scope with the same key is still open under the same parent scope.
    """
    where = current_scope().keyed_child(key)
    token = _current.set(where)
    try:
        yield
    finally:
        _current.reset(token)
        where.release()


@contextmanager
def inside(where: Scope) -> Iterator[None]:
    """Make ``where`` the current scope inside the block (an operation's own scope, say)."""
    token = _current.set(where)
    try:
        yield
    finally:
        _current.reset(token)


@contextmanager
def own_root(label: Any) -> Iterator[Scope]:
    """Give the code in the block a root scope of its own, named by ``label``.

    For several players living in one process (``cicada_async.testing``): each player's
    program then numbers its operations from its own root, as it would in a process of its
    own.  Players must use equal labels for roots that are meant to correspond, and no label
    twice on one communicator.
    """
    root = Scope.root(label)
    token = _current.set(root)
    try:
        yield root
    finally:
        _current.reset(token)


def spawn_with_own_root(label: Any, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> asyncio.Task[T]:
    """Call ``fn(*args)`` and run it as a task, both in a context with a root scope of its own
    named by ``label`` (see :func:`own_root`).

    For several players in one process: each player's program is started this way.
    """
    context = contextvars.copy_context()
    context.run(_current.set, Scope.root(label))
    loop = asyncio.get_running_loop()
    return context.run(lambda: loop.create_task(fn(*args), context=context))
