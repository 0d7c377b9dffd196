"""Coordinated logging: every player's record in rank order, as in Cicada."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any

from ._ranks import require_ranks
from .communicator.interface import Communicator, Operation, Tag, roles_code

__all__ = ["Logger"]


class Logger:
    """Wrap a :class:`logging.Logger` so that players write their records in rank order.

    With ``sync`` (the default) every logging call is a collective: the players whose rank
    is in ``src`` write their record one after the other, in rank order, then every member
    returns together.  With ``sync=False`` a call writes locally (if this player is in
    ``src``) without communicating, so it works on a revoked communicator and in error
    handlers: set ``log.sync = False`` or use ``with log.override(sync=False):`` there.

    Parameters
    ----------
    logger:
        The Python logger that writes the records.
    communicator:
        The communicator whose members coordinate.
    sync:
        Whether calls are coordinated (a collective) or local.

    Examples
    --------
    ::

        log = Logger(logging.getLogger(), communicator)
        await log.info(f"Player {communicator.rank} is ready.")   # every player, in rank order
        await log.info("Total: 8.0", src=0)                         # player 0 only
    """

    def __init__(self, logger: logging.Logger, communicator: Communicator, sync: bool = True) -> None:
        if not isinstance(communicator, Communicator):
            raise ValueError(f"communicator must be a Communicator, got {communicator!r}")
        self._logger = logger
        self._communicator = communicator
        self._sync = bool(sync)

    def __repr__(self) -> str:
        return f"<Logger {self._logger.name!r} on {self._communicator!r} sync={self._sync}>"

    @property
    def logger(self) -> logging.Logger:
        """The wrapped Python logger."""
        return self._logger

    @property
    def communicator(self) -> Communicator:
        """The communicator that coordinates the output."""
        return self._communicator

    @property
    def sync(self) -> bool:
        """Whether logging calls are coordinated; must be set alike on every member."""
        return self._sync

    @sync.setter
    def sync(self, value: bool) -> None:
        self._sync = bool(value)

    @contextlib.contextmanager
    def override(self, *, sync: bool | None = None) -> Iterator[dict[str, Any]]:
        """Temporarily change ``sync`` inside a ``with`` block."""
        original = {"sync": self._sync}
        if sync is not None:
            self._sync = bool(sync)
        try:
            yield original
        finally:
            self._sync = original["sync"]

    def debug(self, msg: object, *args: Any, src: int | Sequence[int] | None = None,
              **kwargs: Any) -> Coroutine[Any, Any, None]:
        """Log ``msg`` at DEBUG level (a collective when ``sync``)."""
        return self.log(logging.DEBUG, msg, *args, src=src, **kwargs)

    def info(self, msg: object, *args: Any, src: int | Sequence[int] | None = None,
             **kwargs: Any) -> Coroutine[Any, Any, None]:
        """Log ``msg`` at INFO level (a collective when ``sync``)."""
        return self.log(logging.INFO, msg, *args, src=src, **kwargs)

    def warning(self, msg: object, *args: Any, src: int | Sequence[int] | None = None,
                **kwargs: Any) -> Coroutine[Any, Any, None]:
        """Log ``msg`` at WARNING level (a collective when ``sync``)."""
        return self.log(logging.WARNING, msg, *args, src=src, **kwargs)

    def error(self, msg: object, *args: Any, src: int | Sequence[int] | None = None,
              **kwargs: Any) -> Coroutine[Any, Any, None]:
        """Log ``msg`` at ERROR level (a collective when ``sync``)."""
        return self.log(logging.ERROR, msg, *args, src=src, **kwargs)

    def critical(self, msg: object, *args: Any, src: int | Sequence[int] | None = None,
                 **kwargs: Any) -> Coroutine[Any, Any, None]:
        """Log ``msg`` at CRITICAL level (a collective when ``sync``)."""
        return self.log(logging.CRITICAL, msg, *args, src=src, **kwargs)

    def log(self, level: int, msg: object, *args: Any, src: int | Sequence[int] | None = None,
            **kwargs: Any) -> Coroutine[Any, Any, None]:
        """Log ``msg`` at ``level``; only players in ``src`` (default: all) write.

        With ``sync`` the writers go in rank order, each waiting for the previous one; the
        last writer then releases everybody, so all members return together.  A synchronised
        call is an operation: it takes its identity when called (see
        :mod:`cicada_async.operations`), and raises what the communicator raises (e.g.
        ``Revoked``).  Without ``sync`` it writes at once, locally.

        Raises
        ------
        ValueError
            At the call, if ``src`` holds a rank outside ``[0, world_size)``, something that
            is not a rank, or a repeated rank (the message names it).
        """
        comm = self._communicator
        writers = self._writers(src)
        if not self._sync:
            if comm.rank in writers:
                kwargs.setdefault("stacklevel", 3)  # the caller of debug(), info(), ...
                self._logger.log(level, msg, *args, **kwargs)
            return _done()
        kwargs.setdefault("stacklevel", 2)  # the coroutine that awaits the call
        roles = roles_code(tuple(writers)) if len(writers) != comm.world_size else 0
        operation = comm.begin(Tag.LOGSYNC, "Logger.log", roles)
        return self._log_in_order(operation, writers, level, msg, args, kwargs)

    async def _log_in_order(self, operation: Operation, writers: list[int], level: int, msg: object,
                            args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        comm = self._communicator
        rank = comm.rank
        others = [other for other in comm.ranks if other != rank]
        if not writers:
            await comm.exchange(operation, send=dict.fromkeys(others), recv=others)
            return
        last = writers[-1]
        if rank in writers:
            position = writers.index(rank)
            # Round 0: the baton, from each writer to the next.
            await comm.exchange(operation, send={}, recv=[writers[position - 1]] if position else [])
            self._logger.log(level, msg, *args, **kwargs)
            if rank != last:
                await comm.exchange(operation, send={writers[position + 1]: None}, recv=[])
        if rank == last:  # round 1: the last writer releases everybody
            await comm.exchange(operation, round=1, send=dict.fromkeys(others), recv=[])
        else:
            await comm.exchange(operation, round=1, send={}, recv=[last])

    def _writers(self, src: int | Sequence[int] | None) -> list[int]:
        comm = self._communicator
        if src is None:
            return list(comm.ranks)
        return sorted(require_ranks(src, comm.world_size, "src"))


async def _done() -> None:
    return None
