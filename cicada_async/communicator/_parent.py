"""Players die with the launcher that started them, and leave no files behind.

Two sides, both used only by :mod:`cicada_async.communicator.launcher`:

:class:`ParentWatch` (in each player process)
    * The launcher holds the write end of one pipe and never writes to it; each player has
      the read end.  A forked player first closes the copies it inherited of the launcher's
      pipe ends (that write end, and the launcher's end of its own and its elder siblings'
      start-up pipes), so end-of-file arrives the moment the launcher dies, however it dies.
      From the start of the player's coroutine to its end the loop watches the read end
      (``loop.add_reader``): end-of-file ends the player.  Portable, and level-triggered, so
      a launcher that died before the watch began is seen at once.
    * On Linux, a player whose parent is the launcher (start methods fork and spawn) also
      asks the kernel for :data:`DEATH_SIGNAL` when its parent dies (``PR_SET_PDEATHSIG``
      via ``prctl``), then compares ``os.getppid()`` with the launcher's pid, which closes
      the race with a launcher that died before the request.  A Python signal handler runs
      between bytecodes, so this also ends a player before its event loop exists and while
      ``fn`` computes without yielding to the loop.
    * Ending: remove the player's socket file, and the launcher's temporary directory if it
      is empty (the last player out removes it), log a warning, and die of SIGTERM.  ``fn``'s
      ``finally`` blocks do not run, as with SIGTERM's default action.

:class:`LauncherCleanup` (in the launcher, around ``run``)
    While active, and only if SIGTERM has its default action and ``run`` is called from the
    main thread, a SIGTERM to the launcher first kills its players (SIGKILL), waits for them
    (bounded) and removes the temporary directory, then lets the launcher die of SIGTERM as
    it would have.  SIGKILL cannot be caught: then the players clean up after themselves.

Limits: under the fork server the players' parent is the server, so only the pipe tells them,
and a player stuck in a long computation notices when it next yields to its loop (on Linux,
with fork or spawn, it notices at once unless it is inside one long C call).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing.connection
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterable, Sequence
from types import FrameType, TracebackType
from typing import Any, NoReturn

log = logging.getLogger(__name__)

__all__ = ["DEATH_SIGNAL", "LauncherCleanup", "ParentWatch", "set_death_signal"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

#: The signal the kernel sends a player when the launcher dies (Linux): a real-time signal
#: nothing else sends, so its handler knows what happened.  Not SIGTERM: while a launcher
#: with several threads dies, ``os.getppid()`` can still return its pid, so a SIGTERM could
#: not be told apart from one sent to the player while the launcher lives.
DEATH_SIGNAL: int | None = signal.SIGRTMAX - 2 if hasattr(signal, "SIGRTMAX") else None


def set_death_signal(signum: int) -> bool:
    """Ask the kernel to send ``signum`` to this process when its parent dies (Linux only).

    Returns ``False`` where this is not available.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - every Linux libc has prctl
        return False
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    if prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:  # pragma: no cover - cannot fail for a valid signal
        log.debug("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
        return False
    return True


def _die_of(signum: int) -> NoReturn:
    """End this process as ``signum``'s default action would (exit status ``-signum``)."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # pragma: no cover - the signal ends the process first


class ParentWatch:
    """A player's watch on the launcher that started it.

    Parameters
    ----------
    parent_pid:
        The launcher's pid, which ``os.getppid()`` returns while it lives; ``None`` when the
        player's parent is another process (a fork server, which its players keep alive), and
        then only the pipe tells.
    pipe:
        The read end of a pipe whose write end only the launcher holds and never writes to:
        it reads end-of-file when the launcher dies.
    files:
        Paths this player may create (its Unix socket); removed when it ends this way.
    directory:
        The launcher's temporary directory; removed, if empty, by a player that outlived it.
    prefix:
        How log messages name the player (``"Comm world player 1"``).
    """

    def __init__(self, *, parent_pid: int | None, pipe: multiprocessing.connection.Connection | None = None,
                 files: Sequence[str] = (), directory: str | None = None, prefix: str = "player") -> None:
        self.parent_pid = parent_pid
        self.pipe = pipe
        self.files = list(files)
        self.directory = directory
        self.prefix = prefix
        self._lost = False

    @property
    def orphaned(self) -> bool:
        """True once the launcher is known to be gone."""
        return self._lost or (self.parent_pid is not None and os.getppid() != self.parent_pid)

    def start(self, inherited: Iterable[multiprocessing.connection.Connection] = ()) -> None:
        """Tie this process to the launcher; call first thing in the player process.

        ``inherited`` are the launcher's pipe ends a forked player holds copies of; they are
        closed here.  Ends the process at once if the launcher is already gone.
        """
        for conn in inherited:
            conn.close()
        LauncherCleanup.forget()
        if self.parent_pid is not None and DEATH_SIGNAL is not None:
            signal.signal(DEATH_SIGNAL, self._on_death_signal)
            set_death_signal(DEATH_SIGNAL)
        if self.orphaned:
            self._lost = True
            self.end("the launcher died before this player started")

    def lost(self) -> None:
        """Record that the launcher is gone (its pipe broke)."""
        self._lost = True

    def watch(self) -> None:
        """From the player's running loop: end the player as soon as :attr:`pipe` reads
        end-of-file (at once if it already does).  Undo with :meth:`unwatch`."""
        if self.pipe is not None:
            asyncio.get_running_loop().add_reader(self.pipe.fileno(), self._on_readable)

    def unwatch(self) -> None:
        """Stop watching :attr:`pipe`."""
        if self.pipe is not None and not self.pipe.closed:
            asyncio.get_running_loop().remove_reader(self.pipe.fileno())

    def cleanup(self) -> None:
        """Remove this player's files, and the launcher's directory if the launcher is gone
        and the directory is empty (the last player out removes it).  Never raises."""
        for path in self.files:
            with contextlib.suppress(OSError):
                os.unlink(path)
        if self.directory is not None and self.orphaned:
            with contextlib.suppress(OSError):
                os.rmdir(self.directory)

    def end(self, reason: str) -> NoReturn:
        """Clean up and end this process as SIGTERM would."""
        self.cleanup()
        log.warning("%s: %s; ending this player", self.prefix, reason)
        _die_of(signal.SIGTERM)

    def _on_death_signal(self, signum: int, frame: FrameType | None) -> None:
        self._lost = True
        self.end("the launcher died")

    def _on_readable(self) -> None:
        # Nothing is ever written to the pipe: readable means end-of-file, the launcher died.
        self._lost = True
        self.end("the launcher's pipe closed")


class LauncherCleanup:
    """The launcher's side: a SIGTERM stops the players and removes their files first.

    Use as a context manager around starting and supervising the players; add each started
    process to :attr:`processes` and set :attr:`directory` to the temporary directory.  The
    handler is installed only from the main thread and only over SIGTERM's default action
    (a program's own SIGTERM handler is left alone); it is removed on exit.
    """

    def __init__(self) -> None:
        self.processes: list[Any] = []
        self.directory: str | None = None
        self._pid = os.getpid()
        self._installed = False
        self._busy = False

    def __enter__(self) -> LauncherCleanup:
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL):
            signal.signal(signal.SIGTERM, self._on_sigterm)
            self._installed = True
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self._installed = False

    @staticmethod
    def forget() -> None:
        """In a freshly forked player: give SIGTERM back its default action if the handler
        it inherited is a launcher's (a program's own handler is kept, as before)."""
        if isinstance(getattr(signal.getsignal(signal.SIGTERM), "__self__", None), LauncherCleanup):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:  # a player forked a moment ago, before ParentWatch.start
            _die_of(signum)
        if self._busy:  # a repeat while cleaning up
            return
        self._busy = True
        for process in list(self.processes):
            with contextlib.suppress(Exception):
                process.kill()
        for process in list(self.processes):
            with contextlib.suppress(Exception):
                process.join(5)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
        _die_of(signum)
