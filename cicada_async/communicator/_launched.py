"""``run`` under a job launcher: this process supervises the one player of its rank.

The launcher (``mpiexec``, ``mpirun``, ``srun``) started this process once per rank.  The
player runs in a child process, and this process waits for it: if the player dies, even by a
signal, this process still ends normally and reports :class:`Terminated`, so the launcher sees
an ordinary exit instead of a death by signal (Hydra's proxy kills the whole job when a
launched process dies by a signal, whatever ``-disable-auto-cleanup`` says).  The player dies
with this process, as players of a local ``run`` die with theirs.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import multiprocessing
import multiprocessing.connection
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from .._transport import Limits
from ._launchers import Launched, MeetingPoint, meeting_point
from ._parent import ParentWatch
from .connect import connect_world, prepare_directory
from .launcher import Failed, Terminated, play, read_outcome

log = logging.getLogger(__name__)

__all__ = ["run_launched"]


async def _player(*, rank: int, world_size: int, point: MeetingPoint, fn: Callable[..., Any],
                  args: Sequence[Any], kwargs: dict[str, Any], name: str, timeout: float,
                  startup_timeout: float, identity: str | None, trusted: Sequence[str] | None,
                  limits: Limits, parent: ParentWatch) -> Any:
    parent.watch()
    try:
        communicator = await connect_world(world_size=world_size, rank=rank, address=point.address,
                                           root_address=point.root_address, identity=identity, trusted=trusted,
                                           token=point.token, name=name, timeout=timeout,
                                           startup_timeout=startup_timeout, limits=limits)
        try:
            result = fn(communicator, *args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        finally:
            await communicator.endpoint.aclose(timeout)
        return result
    finally:
        parent.unwatch()


def _player_main(*, conn: multiprocessing.connection.Connection, parent: ParentWatch,
                 inherited: Sequence[multiprocessing.connection.Connection], **options: Any) -> None:
    parent.start(inherited)
    os.environ["CICADA_LAUNCHED"] = "1"  # a run() inside fn is not this job's
    play(conn, parent, lambda: _player(parent=parent, **options), rank=options["rank"], name=options.get("name"))


def run_launched(launched: Launched, *, world_size: int, fn: Callable[..., Any],
                 identities: Sequence[str] | None, trusted: Sequence[str] | None, args: Sequence[Any],
                 kwargs: dict[str, Any], name: str, timeout: float, startup_timeout: float,
                 show_traceback: bool, limits: Limits) -> list[Any]:
    """Run the player of ``launched.rank`` in a child process; return ``[its result]``.

    Raises
    ------
    LauncherError
        If the launcher's size is not ``world_size``, or the players cannot know where to meet.
    """
    point = meeting_point(launched, os.environ, world_size=world_size, temporary=tempfile.gettempdir(),
                          uid=os.getuid())
    prepare_directory(point.directory)
    rank = launched.rank
    prefix = f"Comm {name} player {rank}"
    log.info("%s: started by %s; rank 0 listens at %s", prefix, launched.launcher, point.root_address)
    context: Any = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    alive_r, alive_w = context.Pipe(duplex=False)
    parent_end, child_end = context.Pipe(duplex=False)
    own_socket = point.address[len("file://"):] if point.address and point.address.startswith("file://") else None
    watch = ParentWatch(parent_pid=os.getpid(), pipe=alive_r, files=[own_socket] if own_socket else [],
                        directory=point.directory, prefix=prefix)
    process = context.Process(
        name=prefix, target=_player_main, daemon=True,
        kwargs=dict(conn=child_end, parent=watch, inherited=[alive_w, parent_end], rank=rank,
                    world_size=world_size, point=point, fn=fn, args=tuple(args), kwargs=dict(kwargs), name=name,
                    timeout=timeout, startup_timeout=startup_timeout,
                    identity=None if identities is None else identities[rank],
                    trusted=None if trusted is None else list(trusted), limits=limits))
    process.start()
    child_end.close()
    try:
        result: Any = None
        ready = multiprocessing.connection.wait([parent_end, process.sentinel])
        if parent_end in ready:
            result = read_outcome(parent_end)
        process.join()
        if result is None and process.exitcode not in (0, None):
            result = Terminated(process.exitcode)
    finally:
        if process.is_alive():
            process.kill()
            process.join()
        for conn in (parent_end, alive_r, alive_w):
            conn.close()
        if own_socket is not None:
            with contextlib.suppress(OSError):
                os.unlink(own_socket)
        if point.directory is not None:
            with contextlib.suppress(OSError):
                os.rmdir(point.directory)  # the last player out removes it
    if isinstance(result, (Failed, Terminated)):
        log.error("%s failed: %r", prefix, result.exception if isinstance(result, Failed) else result)
        if show_traceback and isinstance(result, Failed):
            log.error("%s traceback:\n%s", prefix, result.traceback)
    return [result]
