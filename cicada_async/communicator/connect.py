"""Connection set-up: listening, opening links, and the hello handshake.

Low-level building blocks, used by :meth:`AsyncSocketCommunicator.run` and
:meth:`AsyncSocketCommunicator.connect`, and available for unusual deployments:

* :class:`Timer`: one deadline for the whole set-up (every step draws on it).
* :func:`listen`: open this player's listening socket.
* :func:`direct`: join a world when every player's address is known.
* :func:`rendezvous`: join a world when only rank 0's address is known; every player must
  give the same token.
* :func:`connect_world`: the whole thing (listen, rendezvous, communicator), with defaults
  from the ``CICADA_*`` environment variables.

Addresses are URLs: ``tcp://host:port``, ``tcp://host`` (the OS picks a free port) and
``file:///path/to/socket`` (a Unix socket); an IPv6 host goes in brackets, ``tcp://[::1]:5000``
(a link-local one with its interface, ``tcp://[fe80::1%eth0]``).  Each pair of players shares one link, opened by
the higher rank; both sides check protocol version, communicator name, world size, ranks and
token (and, with TLS, the certificate's rank) before the link is used.

This is the public module; the work is done in private siblings: ``_addresses`` (URLs),
``_timer`` (:class:`Timer`), ``_listener`` (:class:`Listener`, :func:`listen`), ``_links``
(opening one link and its hello exchange) and ``_setup`` (:func:`direct`,
:func:`rendezvous`).  :class:`TLSConfig` lives in :mod:`cicada_async.tls` and
:class:`Limits` in the transport; both are re-exported here.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from .._transport import Limits
from ..tls import TLSConfig, tls_config
from ._addresses import default_address, parse_address
from ._launchers import LauncherError, detect, meeting_point
from ._listener import Listener, listen
from ._setup import check_world, direct, rendezvous
from ._setup import session_bytes as session_bytes  # importable from here, as before (not in __all__)
from ._timer import Timer
from .socket import AsyncSocketCommunicator

__all__ = [
    "Limits",
    "Listener",
    "TLSConfig",
    "Timer",
    "connect_world",
    "direct",
    "listen",
    "parse_address",
    "rendezvous",
]

async def connect_world(*, world_size: int | None = None, rank: int | None = None,
                        address: str | None = None, root_address: str | None = None,
                        identity: str | None = None, trusted: Sequence[str] | None = None,
                        token: Any = None, name: str = "world", timeout: float = 5,
                        startup_timeout: float = 5, limits: Limits | None = None) -> AsyncSocketCommunicator:
    """Create this player's world communicator by rendezvous with rank 0.

    Unset arguments come from ``CICADA_WORLD_SIZE``, ``CICADA_RANK``, ``CICADA_ADDRESS``,
    ``CICADA_ROOT_ADDRESS``, ``CICADA_IDENTITY``, ``CICADA_TRUSTED`` (comma-separated) and
    ``CICADA_TOKEN``.  Rank 0 listens on ``root_address``; the others listen on ``address``,
    or by default on the local interface that routes to rank 0, port chosen by the OS.
    The listening socket is closed once the world is complete: later communicators made by
    ``shrink`` and ``split`` reuse the links.
    """
    env = os.environ
    world_size, rank, address, root_address, token, directory = launched_defaults(
        world_size=world_size, rank=rank, address=address, root_address=root_address, token=token)
    if world_size is None:
        world_size = _env_int("CICADA_WORLD_SIZE")
    if rank is None:
        rank = _env_int("CICADA_RANK")
    if address is None:
        address = env.get("CICADA_ADDRESS") or None
    if root_address is None:
        root_address = env.get("CICADA_ROOT_ADDRESS") or None
    if identity is None:
        identity = env.get("CICADA_IDENTITY") or None
    if trusted is None:
        trusted = [path for path in env.get("CICADA_TRUSTED", "").split(",") if path] or None
    if token is None:
        token = env.get("CICADA_TOKEN") or None
    world_size, rank = check_world(world_size, rank)
    if root_address is None:
        raise ValueError("root_address is required (or set CICADA_ROOT_ADDRESS)")
    if rank == 0:
        if address is not None and address != root_address:
            raise ValueError(f"player 0 listens on root_address ({root_address}); address must be unset or "
                             f"the same, got {address}")
        address = root_address
    elif address is None:
        address = default_address(root_address)
    timer = Timer(startup_timeout)
    tls = None
    if identity is not None or trusted is not None:
        tls = tls_config(identity=identity, trusted=trusted, rank=rank)
    limits = limits or Limits()
    listener = await listen(address=address, rank=rank, name=name, tls=tls, limits=limits)
    try:
        if rank == 0:
            root_address = listener.address
        endpoint = await rendezvous(listener=listener, root_address=root_address, world_size=world_size,
                                    rank=rank, name=name, token=token, timer=timer, tls=tls, limits=limits)
    finally:
        await listener.aclose()
        if directory is not None:  # a launched job's socket directory: the last player out removes it
            with contextlib.suppress(OSError):
                os.rmdir(directory)
    return AsyncSocketCommunicator(endpoint=endpoint, name=name, timeout=timeout)


def launched_defaults(*, world_size: int | None, rank: int | None, address: str | None, root_address: str | None,
                      token: Any) -> tuple[int | None, int | None, str | None, str | None, Any, str | None]:
    """Fill what is unset from a job launcher's variables (``mpiexec``, ``mpirun``, ``srun``),
    when this process was started by one and ``rank`` and ``CICADA_RANK`` are unset; see
    :mod:`cicada_async.communicator._launchers`.  Returns ``(world_size, rank, address,
    root_address, token, directory)``, ``directory`` being the job's socket directory (created
    here, private to this user) when its players meet on this host.

    Raises
    ------
    ValueError
        If the launcher's variables are inconsistent, its size disagrees with ``world_size``,
        or nothing says where rank 0 listens.
    """
    if rank is not None:
        return world_size, rank, address, root_address, token, None
    launched = detect(os.environ, parent_pid=os.getppid())
    if launched is None:
        return world_size, rank, address, root_address, token, None
    size = world_size if world_size is not None else launched.size
    if size is None:
        size = _env_int("CICADA_WORLD_SIZE")
    point = meeting_point(launched, os.environ, world_size=size, temporary=tempfile.gettempdir(), uid=os.getuid())
    prepare_directory(point.directory)
    return (size, launched.rank, address or point.address, root_address or point.root_address,
            token if token is not None else point.token, point.directory)


def prepare_directory(directory: str | None) -> None:
    """Create a launched job's socket directory (shared by its players on this host), private
    to this user; refuse one that another user made or that others may enter."""
    if directory is None:
        return
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, 0o700)
    status = os.stat(directory)
    if status.st_uid != os.getuid() or status.st_mode & 0o077:
        raise LauncherError(f"{directory} is not a private directory of this user; remove it and start again")


def _env_int(variable: str) -> int:
    value = os.environ.get(variable)
    if value is None:
        raise ValueError(f"{variable} is not set and no value was given")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{variable} must be an integer, got {value!r}") from None
