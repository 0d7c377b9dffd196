"""Listening addresses: URL parsing and formatting, and the default address of a player.

Addresses are URLs: ``tcp://host:port``, ``tcp://host`` (the OS picks a free port) and
``file:///path/to/socket`` (a Unix socket).
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from typing import Any

__all__ = ["default_address", "format_address", "parse_address"]


def parse_address(address: str) -> tuple[str, Any]:
    """Split a URL address into ``("tcp", (host, port))`` or ``("file", path)``.

    Raises ValueError for anything else.
    """
    if not isinstance(address, str):
        raise ValueError(f"address must be a URL string, got {address!r}")
    url = urllib.parse.urlparse(address)
    if url.scheme == "tcp":
        if not url.hostname:
            raise ValueError(f"address {address!r} lacks a host")
        try:
            port = url.port or 0
        except ValueError:
            raise ValueError(f"address {address!r} has an invalid port") from None
        return "tcp", (url.hostname, port)
    if url.scheme == "file":
        if not url.path:
            raise ValueError(f"address {address!r} lacks a path")
        return "file", url.path
    raise ValueError(f"address {address!r}: scheme must be tcp or file")


def format_address(scheme: str, where: Any) -> str:
    """The URL of ``where``: a path for ``"file"``, a ``(host, port, ...)`` tuple for ``"tcp"``."""
    if scheme == "file":
        return f"file://{where}"
    host, port = where[0], where[1]
    if ":" in host:
        host = f"[{host}]"
    return f"tcp://{host}:{port}"


def default_address(root_address: str) -> str:
    """A listening address reachable by the others: the interface that routes to rank 0."""
    scheme, where = parse_address(root_address)
    if scheme == "file":
        directory = os.path.dirname(where) or "."
        return f"file://{directory}/cicada-{os.getpid()}-{id(where):x}.sock"
    host, port = where
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((host, port or 9))
            local = probe.getsockname()[0]
    except OSError:
        local = host
    return f"tcp://{local}" if ":" not in local else f"tcp://[{local}]"
