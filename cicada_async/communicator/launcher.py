"""Run a program as several local player processes: ``AsyncSocketCommunicator.run``.

The parent never runs an event loop, so ``run`` is a plain blocking call that works from
scripts, from a Jupyter cell (whose thread already runs a loop) and from inside a coroutine.
Players are forked by default on POSIX, as in Cicada, so a function defined in a notebook or
in a script without a ``__main__`` guard works; ``start_method="spawn"`` or
``"forkserver"`` are available (then ``fn`` must be importable).  Each player builds a fresh
event loop (uvloop when installed, unless ``CICADA_ASYNC_LOOP=asyncio``).

Start-up: every player opens its listening socket and reports its address through a pipe;
the parent hands the full list back and the players link up (:func:`~.connect.direct`).
If a player dies before the world is complete, the parent tells the others at once, so
``run`` never waits on a dead player.  After start-up the pipe carries only the result.

Players die with the launcher, however it dies (SIGKILL included), and leave no files:
see :mod:`cicada_async.communicator._parent`.

The pipe between parent and child is the only place pickle is used: it carries the
player's own result back to the parent that started it, never bytes from a peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import os
import pickle
import shutil
import signal
import tempfile
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from .._transport import Limits
from ..errors import AuthenticationError, CommunicatorError, Timeout
from ..tls import tls_config
from ._launchers import detect
from ._parent import LauncherCleanup, ParentWatch
from .connect import Timer, direct, listen
from .socket import AsyncSocketCommunicator

log = logging.getLogger(__name__)

__all__ = ["Failed", "Terminated", "loop_factory", "run"]


class Failed:
    """The result of a player whose function raised: the exception and its traceback text."""

    __slots__ = ("exception", "traceback")

    def __init__(self, exception: BaseException, traceback: str) -> None:
        self.exception = exception
        self.traceback = traceback

    def __repr__(self) -> str:
        return f"Failed(exception={self.exception!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Failed, (self.exception, self.traceback))


class Terminated:
    """The result of a player whose process ended without reporting (e.g. killed by a signal).

    ``exitcode`` is the process exit code; ``-N`` means it was killed by signal ``N``.
    """

    __slots__ = ("exitcode",)

    def __init__(self, exitcode: int | None) -> None:
        self.exitcode = exitcode

    def __repr__(self) -> str:
        return f"Terminated(exitcode={self.exitcode!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Terminated) and other.exitcode == self.exitcode

    def __hash__(self) -> int:
        return hash(("Terminated", self.exitcode))


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop factory for a new player: uvloop when installed, else asyncio's.

    Set ``CICADA_ASYNC_LOOP=asyncio`` to force asyncio's loop, ``uvloop`` to require uvloop.
    """
    choice = os.environ.get("CICADA_ASYNC_LOOP", "").strip().lower()
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def _reset_after_fork() -> None:
    """Forget the parent's event loop state in a freshly forked child."""
    asyncio.events._set_running_loop(None)
    with contextlib.suppress(Exception):
        asyncio.set_event_loop(None)
    with contextlib.suppress(ValueError, OSError):
        signal.set_wakeup_fd(-1)  # the parent loop's self-pipe is not ours to write to
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGINT, signal.default_int_handler)


async def _pipe_message(conn: multiprocessing.connection.Connection, deadline: float) -> Any:
    """Wait (without blocking the loop) for the next message from the parent."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    fd = conn.fileno()

    def on_readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        async with asyncio.timeout_at(deadline):
            await ready
    finally:
        loop.remove_reader(fd)
    try:
        return conn.recv()
    except EOFError:
        return ("abort", "the launcher went away")


def _aborted(prefix: str, message: tuple[Any, ...]) -> CommunicatorError:
    """The error for an ``("abort", reason[, authentication])`` message from the launcher: an
    ``AuthenticationError`` when another player failed authentication, so every player of a
    world that an impostor stopped says so, whichever of them saw the impostor first."""
    kind = AuthenticationError if len(message) > 2 and message[2] else CommunicatorError
    return kind(f"{prefix}: start-up aborted: {message[1]}")


async def _watch_abort(conn: multiprocessing.connection.Connection, deadline: float, prefix: str) -> None:
    message = await _pipe_message(conn, deadline)
    if message[0] == "abort":
        raise _aborted(prefix, message)
    raise CommunicatorError(f"{prefix}: unexpected message from the launcher: {message[0]!r}")


async def _watched(parent: ParentWatch, player: Awaitable[Any]) -> Any:
    """Await ``player`` while the loop watches the launcher (ending this process if it dies)."""
    parent.watch()
    try:
        return await player
    finally:
        parent.unwatch()


async def _player(*, conn: multiprocessing.connection.Connection, rank: int, world_size: int,
                  address: str, fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any],
                  name: str, timeout: float, startup_timeout: float, identity: str | None,
                  trusted: Sequence[str] | None, limits: Limits) -> Any:
    prefix = f"Comm {name} player {rank}"
    timer = Timer(startup_timeout)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timer.remaining
    tls = None
    if identity is not None or trusted is not None:
        tls = tls_config(identity=identity, trusted=trusted, rank=rank)
    listener = await listen(address=address, rank=rank, name=name, tls=tls, limits=limits)
    try:
        conn.send(("address", listener.address))
        try:
            message = await _pipe_message(conn, deadline)
        except TimeoutError:
            raise Timeout(f"{prefix}: start-up timed-out after {startup_timeout:g}s waiting for "
                          "the other players to start") from None
        if message[0] == "abort":
            raise _aborted(prefix, message)
        addresses = message[1]
        setup = asyncio.ensure_future(direct(listener=listener, addresses=addresses, rank=rank, name=name,
                                             timer=timer, tls=tls, limits=limits))
        watch = asyncio.ensure_future(_watch_abort(conn, deadline + 1, prefix))
        try:
            await asyncio.wait([setup, watch], return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            if not setup.done():
                setup.cancel()
            await asyncio.gather(setup, watch, return_exceptions=True)
        aborted = watch.exception() if watch.done() and not watch.cancelled() else None
        if aborted is not None and not (setup.done() and not setup.cancelled() and setup.exception() is None):
            if listener.failures:  # say what we saw ourselves: an impostor, an untrusted peer...
                raise AuthenticationError(f"{aborted}; a peer failed authentication here: "
                                          f"{listener.failures[-1]}")
            raise aborted
        endpoint = setup.result()
    finally:
        await listener.aclose()
    conn.send(("ready",))
    communicator = AsyncSocketCommunicator(endpoint=endpoint, name=name, timeout=timeout)
    try:
        result = fn(communicator, *args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
    finally:
        # Whatever fn did, what it sent reaches the others before this player says goodbye.
        await endpoint.aclose(timeout)
    return result


def _player_main(*, conn: multiprocessing.connection.Connection, forked: bool, parent: ParentWatch,
                 inherited: Sequence[multiprocessing.connection.Connection], **options: Any) -> None:
    """Entry point of a player process."""
    parent.start(inherited)  # first: from here on this player dies with the launcher
    if forked:
        _reset_after_fork()
    play(conn, parent, lambda: _watched(parent, _player(conn=conn, **options)), rank=options["rank"],
         name=options.get("name"))


def play(conn: multiprocessing.connection.Connection, parent: ParentWatch,
         player: Callable[[], Coroutine[Any, Any, Any]],
         *, rank: int, name: str | None) -> None:
    """In a player process: run ``player()`` on a fresh loop and send how it ended to the
    process that started it (``("result", value)`` or ``("failed", exception, traceback)``),
    then clean up.  Read it with :func:`read_outcome`."""
    runner = asyncio.Runner(loop_factory=loop_factory())
    try:
        message: tuple[Any, ...] = ("result", runner.run(player()))
    except Exception as exc:
        message = ("failed", exc, traceback.format_exc())
    finally:
        try:
            runner.close()
        except Exception as exc:  # never let closing the loop hide how the player ended
            log.debug("Comm %s player %s: closing the event loop: %r", name, rank, exc)
    try:
        payload = pickle.dumps(message)
    except Exception as exc:
        text = f"player {rank} produced a result that cannot be pickled: {exc!r}"
        if message[0] == "failed":
            payload = pickle.dumps(("failed", CommunicatorError(f"{message[1]!r} (unpicklable: {exc})"),
                                    message[2]))
        else:
            payload = pickle.dumps(("failed", TypeError(text), traceback.format_exc()))
    try:
        conn.send_bytes(payload)
    except OSError:
        parent.lost()
    conn.close()
    parent.cleanup()


def read_outcome(conn: multiprocessing.connection.Connection) -> Any:
    """What a player process started by this one sent with :func:`play`: its result, or
    :class:`Failed`; ``None`` if it sent nothing (it died).  Only ever our own child's bytes."""
    try:
        message = conn.recv()
    except (EOFError, OSError):
        return None
    except Exception as exc:  # a result that cannot be unpickled here
        return Failed(CommunicatorError(f"the player's result could not be read: {exc!r}"), traceback.format_exc())
    return message[1] if message[0] == "result" else Failed(message[1], message[2])


def run(*, world_size: int, fn: Callable[..., Any], identities: Sequence[str] | None = None,
        trusted: Sequence[str] | None = None, args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None, family: str = "tcp", name: str = "world",
        timeout: float = 5, startup_timeout: float = 5, show_traceback: bool = False,
        start_method: str | None = None, limits: Limits | None = None) -> list[Any]:
    """Run ``await fn(communicator, *args, **kwargs)`` in ``world_size`` local player processes.

    A plain blocking call.  Returns each player's result in rank order: the value ``fn``
    returned, :class:`Failed` for a player that raised, or :class:`Terminated` for one whose
    process died.  Failures are also logged, e.g.
    ``Comm world player 3 failed: Terminated(exitcode=-9)``.

    If the calling process dies (SIGKILL, SIGTERM, anything), its players end within
    milliseconds and the temporary directory of ``family="file"`` is removed; a SIGTERM
    (when SIGTERM has its default action and ``run`` is called from the main thread) first
    kills the players and removes the directory, then ends the process as before.

    Parameters
    ----------
    world_size:
        Number of players.
    fn:
        ``async def fn(communicator, *args, **kwargs)``; its return value must be picklable.
    identities, trusted:
        TLS: one identity file per player (key + certificate) and the trusted certificates.
    family:
        ``"tcp"`` (loopback) or ``"file"`` (Unix sockets in a temporary directory).
    name:
        Name of the world communicator.
    timeout:
        The communicator's receive deadline, also bounding the final flush when ``fn`` returns.
    startup_timeout:
        Deadline for connecting, counted from when each player's process is up.
    show_traceback:
        Log the traceback of every player that raised.
    start_method:
        ``"fork"`` (default on POSIX), ``"spawn"`` or ``"forkserver"``.
    limits:
        Memory bounds applied to every peer (see :class:`~cicada_async.communicator.connect.Limits`).
    """
    if not isinstance(world_size, int) or isinstance(world_size, bool) or world_size < 1:
        raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {fn!r}")
    if family not in ("tcp", "file"):
        raise ValueError(f"family must be 'tcp' or 'file', got {family!r}")
    if identities is not None and len(identities) != world_size:
        raise ValueError(f"identities must hold one file per player ({world_size}), got {len(identities)}")
    launched = detect(os.environ, parent_pid=os.getppid())
    if launched is not None:  # started once per rank by mpiexec, mpirun, srun...: be that rank's player
        from ._launched import run_launched

        return run_launched(launched, world_size=world_size, fn=fn, identities=identities, trusted=trusted,
                            args=args, kwargs=dict(kwargs or {}), name=name, timeout=timeout,
                            startup_timeout=startup_timeout, show_traceback=show_traceback,
                            limits=limits or Limits())
    if start_method is None:
        start_method = "fork" if os.name == "posix" else "spawn"
    context = _start_context(start_method)
    kwargs = dict(kwargs or {})
    limits = limits or Limits()
    forked = start_method == "fork"
    # A player's parent is this process, except under a fork server.
    parent_pid = os.getpid() if start_method in ("fork", "spawn") else None

    with LauncherCleanup() as cleanup:
        directory = cleanup.directory = tempfile.mkdtemp(prefix="cicada-") if family == "file" else None
        parents: list[multiprocessing.connection.Connection] = []
        processes = cleanup.processes
        # Only this process holds the write end, and never writes: the players' read ends
        # reach end-of-file the moment it dies.
        alive_r, alive_w = context.Pipe(duplex=False)
        try:
            for rank in range(world_size):
                parent_end, child_end = context.Pipe(duplex=True)
                path = f"{directory}/player-{rank}.sock" if directory else None
                address = f"file://{path}" if path else "tcp://127.0.0.1"
                watch = ParentWatch(parent_pid=parent_pid, pipe=alive_r, files=[path] if path else [],
                                    directory=directory, prefix=f"Comm {name} player {rank}")
                process = context.Process(
                    name=f"Comm {name} player {rank}",
                    target=_player_main,
                    kwargs=dict(conn=child_end, forked=forked, parent=watch,
                                # a forked child holds copies of these; it closes them
                                inherited=[alive_w, *parents, parent_end] if forked else [],
                                rank=rank, world_size=world_size,
                                address=address, fn=fn, args=tuple(args), kwargs=kwargs, name=name,
                                timeout=timeout, startup_timeout=startup_timeout,
                                identity=None if identities is None else identities[rank],
                                trusted=None if trusted is None else list(trusted), limits=limits),
                    daemon=True,
                )
                process.start()
                processes.append(process)
                child_end.close()
                parents.append(parent_end)
            results = _supervise(processes, parents)
        finally:
            for process in processes:
                if process.is_alive():
                    process.kill()
                process.join()
            for conn in [*parents, alive_r, alive_w]:
                conn.close()
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)

    for rank, result in enumerate(results):
        if isinstance(result, Failed):
            log.error("Comm %s player %s failed: %r", name, rank, result.exception)
        elif isinstance(result, Terminated):
            log.error("Comm %s player %s failed: %r", name, rank, result)
        else:
            log.debug("Comm %s player %s result: %r", name, rank, result)
    if show_traceback:
        for rank, result in enumerate(results):
            if isinstance(result, Failed):
                log.error("Comm %s player %s traceback:\n%s", name, rank, result.traceback)
    return results


def _start_context(method: str) -> (
    multiprocessing.context.ForkContext | multiprocessing.context.SpawnContext
    | multiprocessing.context.ForkServerContext
):
    """The multiprocessing context of start method ``method`` (one whose ``Process`` is known)."""
    if method == "fork":
        return multiprocessing.get_context("fork")
    if method == "spawn":
        return multiprocessing.get_context("spawn")
    if method == "forkserver":
        return multiprocessing.get_context("forkserver")
    raise ValueError(f"cannot find context for {method!r}")  # as multiprocessing.get_context says


_UNSET = object()


def _supervise(processes: list[Any], parents: list[multiprocessing.connection.Connection]) -> list[Any]:
    """Drive start-up and collect results; return when every process has exited."""
    world_size = len(processes)
    addresses: list[str | None] = [None] * world_size
    results: list[Any] = [_UNSET] * world_size
    ready = [False] * world_size
    open_pipes = {conn: rank for rank, conn in enumerate(parents)}
    sentinels = {process.sentinel: rank for rank, process in enumerate(processes)}
    exited = [False] * world_size
    distributed = False
    aborted = False

    def abort(reason: str, authentication: bool = False) -> None:
        nonlocal aborted
        if aborted or (distributed and all(ready)):
            return
        aborted = True
        for rank, conn in enumerate(parents):
            if conn in open_pipes and not ready[rank] and not exited[rank]:
                with contextlib.suppress(OSError):
                    conn.send(("abort", reason, authentication))

    def receive(conn: multiprocessing.connection.Connection, rank: int) -> None:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            del open_pipes[conn]
            return
        except Exception as exc:  # a result that cannot be unpickled here
            results[rank] = Failed(CommunicatorError(f"player {rank}'s result could not be read: {exc!r}"),
                                   traceback.format_exc())
            return
        kind = message[0]
        if kind == "address":
            addresses[rank] = message[1]
        elif kind == "ready":
            ready[rank] = True
        elif kind == "result":
            results[rank] = message[1]
        elif kind == "failed":
            results[rank] = Failed(message[1], message[2])
            if not ready[rank]:
                abort(f"player {rank} failed to start ({message[1]!r})",
                      authentication=isinstance(message[1], AuthenticationError))

    while open_pipes or not all(exited):
        waitables: list[Any] = list(open_pipes)
        waitables += [sentinel for sentinel, rank in sentinels.items() if not exited[rank]]
        for item in multiprocessing.connection.wait(waitables):
            if item in open_pipes:
                receive(item, open_pipes[item])
            elif item in sentinels:
                rank = sentinels[item]
                exited[rank] = True
                conn = parents[rank]
                while conn in open_pipes:  # read what it sent before it exited
                    receive(conn, rank)
                if not ready[rank]:
                    abort(f"player {rank} exited before the world was complete "
                          f"(exit code {processes[rank].exitcode})")
        if not distributed and not aborted and all(address is not None for address in addresses):
            distributed = True
            for conn in parents:
                if conn in open_pipes:
                    with contextlib.suppress(OSError):
                        conn.send(("addresses", list(addresses)))
    for rank, process in enumerate(processes):
        process.join()
        if results[rank] is _UNSET:
            results[rank] = Terminated(process.exitcode)
    return results
