"""Listening addresses: URL parsing and formatting, and the default address of a player.

Addresses are URLs: ``tcp://host:port``, ``tcp://host`` (the OS picks a free port) and
``file:///path/to/socket`` (a Unix socket).  An IPv6 host is written in brackets, as in
any URL: ``tcp://[::1]:5000``, ``tcp://[2001:db8::7]``; a link-local one may name its
interface, ``tcp://[fe80::1%eth0]:5000`` (RFC 6874's ``%25eth0`` is accepted too).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import urllib.parse
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["default_address", "format_address", "parse_address"]

_HOST_NAME = re.compile(r"[^\s\[\]@/?#:%]+")
"""A host name or IPv4 address: anything without blanks or the URL's delimiters (the
resolver decides whether the name exists)."""


def parse_address(address: str) -> tuple[str, Any]:
    """Split a URL address into ``("tcp", (host, port))`` or ``("file", path)``.

    ``host`` is as written, without the brackets of an IPv6 address (whose zone, if any,
    follows a ``%``); ``port`` is 0 when the URL has none (the OS picks one).  Raises
    ValueError naming the address for anything else: another scheme, a missing host, an
    IPv6 address without brackets, an unclosed bracket, a port that is not an integer in
    [0, 65535], or a path, query, fragment or user name after a TCP host.
    """
    if not isinstance(address, str):
        raise ValueError(f"address must be a URL string, got {address!r}")
    scheme, separator, rest = address.partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in ("tcp", "file"):
        raise ValueError(f"address {address!r}: scheme must be tcp or file (tcp://host:port or file:///path)")
    if scheme == "file":
        path = urllib.parse.urlparse(address).path
        if not path:
            raise ValueError(f"address {address!r} lacks a path")
        return "file", path
    return "tcp", _parse_tcp(address, rest)


def _parse_tcp(address: str, rest: str) -> tuple[str, int]:
    """``(host, port)`` of the part of a ``tcp://`` URL after the scheme."""
    extra = re.search(r"[/?#@]", rest)
    if extra is not None:
        raise ValueError(f"address {address!r}: a tcp address is tcp://host:port, with nothing after the port "
                         f"(found {rest[extra.start():]!r})" if extra.group() != "@" else
                         f"address {address!r}: a tcp address takes no user name")
    if rest.startswith("["):
        host, bracket, after = rest[1:].partition("]")
        if not bracket:
            raise ValueError(f"address {address!r}: unclosed '[' (an IPv6 host is written tcp://[::1]:port)")
        host = _ipv6_host(address, host)
        if after and not after.startswith(":"):
            raise ValueError(f"address {address!r}: expected ':port' after ']', found {after!r}")
        port_text = after[1:] if after else None
    else:
        if rest.count(":") > 1:
            raise ValueError(f"address {address!r}: an IPv6 host must be in brackets, {_bracketed(rest)}")
        host, colon, port_text_or_empty = rest.partition(":")
        port_text = port_text_or_empty if colon else None
        if not host:
            raise ValueError(f"address {address!r} lacks a host")
        if "]" in host or not _HOST_NAME.fullmatch(host):
            raise ValueError(f"address {address!r}: {host!r} is not a host name or address")
    return host, _port(address, port_text)


def _bracketed(rest: str) -> str:
    """How to write ``rest`` (a host and maybe a port, unbracketed) in brackets."""
    head, _, tail = rest.rpartition(":")
    ways = []
    if tail.isdigit() and _is_ipv6(head):
        ways.append(f"tcp://[{head}]:{tail} for port {tail}")
    if _is_ipv6(rest):
        ways.append(f"tcp://[{rest}] for no port")
    return "as " + " or ".join(ways) if ways else "as in tcp://[::1]:5000"


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _ipv6_host(address: str, host: str) -> str:
    """The IPv6 address between brackets, checked; its zone (after ``%``) is kept as
    written, except that RFC 6874's ``%25`` before a zone name is read as ``%``."""
    literal, percent, zone = host.partition("%")
    if percent:
        if not zone:
            raise ValueError(f"address {address!r}: empty IPv6 zone after '%'")
        if zone.startswith("25") and len(zone) > 2 and not zone.isdigit():
            zone = zone[2:]  # RFC 6874: the '%' of a zone is written '%25' in a URL
        if not _HOST_NAME.fullmatch(zone):
            raise ValueError(f"address {address!r}: {zone!r} is not an interface name or index")
    try:
        ipaddress.IPv6Address(literal)
    except ValueError:
        raise ValueError(f"address {address!r}: {literal!r} between brackets is not an IPv6 address") from None
    return f"{literal}%{zone}" if percent else literal


def _port(address: str, text: str | None) -> int:
    if text is None:
        return 0
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"address {address!r} has an invalid port {text!r} (expected an integer in [0, 65535])")
    port = int(text)
    if port > 65535:
        raise ValueError(f"address {address!r}: port {port} is out of range [0, 65535]")
    return port


def format_address(scheme: str, where: Any) -> str:
    """The URL of ``where``: a path for ``"file"``, a ``(host, port, ...)`` tuple for ``"tcp"``
    (an IPv6 host, zone included, goes in brackets); :func:`parse_address` reads it back."""
    if scheme == "file":
        return f"file://{where}"
    host, port = where[0], where[1]
    if ":" in host:
        host = f"[{host}]"
    return f"tcp://{host}:{port}"


def default_address(root_address: str) -> str:
    """A listening address reachable by the others: the interface that routes to rank 0.

    For a TCP root, the local address the OS would use to reach it, of the same family (an
    IPv6 one, with its interface if link-local, when rank 0's address is IPv6 or its name
    resolves only to IPv6), port chosen by the OS; rank 0's host itself if no route is found.
    For a ``file://`` root, a fresh socket file in the same directory.
    """
    scheme, where = parse_address(root_address)
    if scheme == "file":
        directory = os.path.dirname(where) or "."
        return f"file://{directory}/cicada-{os.getpid()}-{id(where):x}.sock"
    host, port = where
    try:
        candidates = socket.getaddrinfo(host, port or 9, type=socket.SOCK_DGRAM)
    except OSError as exc:
        log.debug("default address: cannot resolve %s (%s); listening on its host", root_address, exc)
        candidates = []
    for family, kind, protocol, _, target in candidates:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        try:
            with socket.socket(family, kind, protocol) as probe:
                probe.connect(target)  # a UDP "connection" sends nothing: it only picks a route
                local = probe.getsockname()
        except OSError:
            continue
        return format_address("tcp", (_with_zone(local), 0))[:-len(":0")]
    return format_address("tcp", (host, 0))[:-len(":0")]


def _with_zone(sockname: tuple[Any, ...]) -> str:
    """The host of a socket name, with ``%interface`` for a scoped (link-local) IPv6 one."""
    host = str(sockname[0])
    scope = sockname[3] if len(sockname) >= 4 else 0
    if not scope or "%" in host:
        return host
    try:
        return f"{host}%{socket.if_indextoname(scope)}"
    except OSError:
        return f"{host}%{scope}"
