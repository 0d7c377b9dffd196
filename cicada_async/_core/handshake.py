"""The hello exchange that opens every link.  Sans-IO: message dicts in, verdicts out.

A link is opened by the higher-ranked player of the pair (in a rendezvous, every player
first opens a link to rank 0).  The opener sends ``JOIN``; the other side checks it and
answers ``ACCEPT`` or ``REJECT``:

``JOIN``     ``{"protocol", "name", "world_size", "rank", "to", "token", "address"}``
``ACCEPT``   ``{"protocol", "rank"}``, plus ``"addresses"`` (every player's listening address,
             in rank order) when rank 0 answers a rendezvous
``REJECT``   ``{"reason", "message"}``; ``reason`` is one of :data:`REASONS`

Tokens never travel in the clear: players send a digest of the token.  The
messages are plain dicts encoded with :mod:`~cicada_async._core.codec`, carried in
``HELLO`` frames whose tag is the message type: :func:`hello_frame` builds one,
:func:`parse_hello` reads one back.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Any

from ..errors import RemoteProtocolError
from .codec import decode, encode
from .framing import Frame, Kind, encode_header

__all__ = [
    "HELLO_ITEMS",
    "MAX_HELLO",
    "MAX_JOIN",
    "PROTOCOL_VERSION",
    "REASONS",
    "HelloType",
    "Rejected",
    "accept_message",
    "check_accept",
    "check_join",
    "check_reject",
    "hello_frame",
    "join_message",
    "parse_hello",
    "reject_message",
    "token_digest",
]

PROTOCOL_VERSION = 2  # 2: 32-byte headers with operation identities (ident, round)
REASONS = ("protocol", "name", "world_size", "rank", "token", "auth", "aborted")
MAX_HELLO = 1 << 20
"""Largest payload a joining player accepts before its link is established (an ACCEPT,
which lists every player's address)."""
MAX_JOIN = 16 * 1024
"""Largest payload a listener accepts from a connection that has not proved the token (a
JOIN is a few hundred bytes): a stranger's connection holds little and decodes in no time."""
HELLO_ITEMS = 64
"""Most values a JOIN or REJECT may decode to (an ACCEPT: this plus one per player)."""


class HelloType(enum.IntEnum):
    """The tag of a HELLO frame."""

    JOIN = 1
    ACCEPT = 2
    REJECT = 3


@dataclass(frozen=True)
class Rejected(Exception):
    """A JOIN or ACCEPT that must be refused; ``reason`` is one of :data:`REASONS`."""

    reason: str
    message: str

    def __str__(self) -> str:
        return self.message


def token_digest(token: Any) -> bytes:
    """Digest of a rendezvous token; equal tokens give equal digests.

    ``None`` (no token) is distinct from every string.
    """
    text = "\x00none" if token is None else f"\x01{token}"
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16, person=b"cicada-token").digest()


def join_message(*, name: str, world_size: int, rank: int, to: int, token: bytes,
                 address: str | None = None) -> dict[str, Any]:
    """The JOIN that ``rank`` sends to player ``to``."""
    return {
        "protocol": PROTOCOL_VERSION,
        "name": name,
        "world_size": world_size,
        "rank": rank,
        "to": to,
        "token": token,
        "address": address,
    }


def accept_message(*, rank: int, addresses: list[str] | None = None) -> dict[str, Any]:
    """The ACCEPT that ``rank`` answers with."""
    message: dict[str, Any] = {"protocol": PROTOCOL_VERSION, "rank": rank}
    if addresses is not None:
        message["addresses"] = list(addresses)
    return message


def reject_message(reason: str, message: str) -> dict[str, Any]:
    """A REJECT giving ``reason`` (one of :data:`REASONS`)."""
    return {"reason": reason, "message": message}


def hello_frame(kind: HelloType, message: dict[str, Any]) -> bytes:
    """The whole ``HELLO`` frame (header and payload) carrying ``message`` as a ``kind``."""
    payload = encode(message).tobytes()
    return encode_header(Kind.HELLO, kind, 0, len(payload)) + payload


def parse_hello(frame: Frame, *, max_items: int = HELLO_ITEMS) -> Any:
    """The message a received ``HELLO`` frame carries (check it with the ``check_*`` functions);
    it may hold at most ``max_items`` values.

    Raises
    ------
    RemoteProtocolError
        If the frame's tag is no :class:`HelloType`, or its payload does not decode.
    """
    if frame.tag not in (HelloType.JOIN, HelloType.ACCEPT, HelloType.REJECT):
        raise RemoteProtocolError(f"unknown handshake message {frame.tag}")
    return decode(frame.payload, max_items=max_items)


_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 63) - 1


def _field(message: Any, key: str, kind: type) -> Any:
    if not isinstance(message, dict) or key not in message:
        raise RemoteProtocolError(f"handshake message lacks {key!r}")
    value = message[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RemoteProtocolError(f"handshake field {key!r} has type {type(value).__name__}")
    if isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX:
        # Not a rank, size or version; and too large to print in a verdict (ints over
        # 4300 digits cannot be turned into text).
        raise RemoteProtocolError(f"handshake field {key!r} is out of range")
    return value


def check_join(message: Any, *, name: str, world_size: int, rank: int, token: bytes,
               expected: set[int]) -> tuple[int, str | None]:
    """Check a JOIN received by ``rank``; return ``(claimed rank, listening address)``.

    Raises
    ------
    Rejected
        If the JOIN is well-formed but does not belong here (another protocol version,
        name, world size or token; a rank that is out of range or already connected).
    RemoteProtocolError
        If it is malformed (not a dict, a field missing or of the wrong type, an int
        field beyond 64 bits).
    """
    protocol = _field(message, "protocol", int)
    if protocol != PROTOCOL_VERSION:
        raise Rejected("protocol", f"peer speaks protocol {protocol}, this player speaks {PROTOCOL_VERSION}")
    peer_name = _field(message, "name", str)
    peer_world = _field(message, "world_size", int)
    peer_rank = _field(message, "rank", int)
    to = _field(message, "to", int)
    peer_token = _field(message, "token", bytes)
    address = message.get("address")
    if address is not None and not isinstance(address, str):
        raise RemoteProtocolError("handshake field 'address' is not a string")
    if peer_name != name:
        raise Rejected("name", f"player {peer_rank} joins communicator {peer_name!r}, expected {name!r}")
    if peer_world != world_size:
        raise Rejected("world_size",
                       f"player {peer_rank} expects {peer_world} players, this world has {world_size}")
    if to != rank:
        raise Rejected("rank", f"player {peer_rank} meant to reach player {to}, reached player {rank}")
    if peer_token != token:
        raise Rejected("token", f"player {peer_rank} gave a different token")
    if peer_rank not in expected:
        raise Rejected("rank", f"player {rank} does not expect a link from player {peer_rank} "
                               "(out of range, already linked by another connection, or the lower rank)")
    return peer_rank, address


def check_accept(message: Any, *, expected_rank: int, world_size: int,
                 with_addresses: bool) -> list[str] | None:
    """Check an ACCEPT received from ``expected_rank``; return its addresses if it has them.

    Raises
    ------
    Rejected
        If it comes from another protocol version or another rank.
    RemoteProtocolError
        If it is malformed (as for :func:`check_join`), or lacks the addresses expected.
    """
    protocol = _field(message, "protocol", int)
    if protocol != PROTOCOL_VERSION:
        raise Rejected("protocol", f"peer speaks protocol {protocol}, this player speaks {PROTOCOL_VERSION}")
    peer_rank = _field(message, "rank", int)
    if peer_rank != expected_rank:
        raise Rejected("rank", f"expected player {expected_rank} but player {peer_rank} answered")
    if not with_addresses:
        return None
    addresses = _field(message, "addresses", list)
    if len(addresses) != world_size or not all(isinstance(a, str) for a in addresses):
        raise RemoteProtocolError("handshake 'addresses' is not a list of world_size strings")
    return addresses


def check_reject(message: Any) -> Rejected:
    """Turn a received REJECT into the verdict it carries (returned, not raised).

    Raises
    ------
    RemoteProtocolError
        If it is malformed.
    """
    reason = _field(message, "reason", str)
    text = _field(message, "message", str)
    if reason not in REASONS:
        reason = "protocol"
    return Rejected(reason, text)
