"""Communicator ids: equal on every member, computed without communicating.

An id is a 64-bit blake2b digest of where the communicator comes from: the world's
session bytes for the world communicator; the parent's id, the operation ("shrink",
"split"), its sequence number on the parent, a label and the member list for the others.
Python's ``hash`` is never used: it is salted per process.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

__all__ = ["child_id", "world_id"]


def _digest(*chunks: bytes) -> int:
    h = hashlib.blake2b(digest_size=8, person=b"cicada-comm-id")
    for chunk in chunks:
        h.update(struct.pack("<Q", len(chunk)))
        h.update(chunk)
    value = int.from_bytes(h.digest(), "little")
    return value or 1  # 0 is reserved for link-level frames


def world_id(session: bytes) -> int:
    """The id of the world communicator of a session."""
    return _digest(b"world", session)


def child_id(parent: int, operation: str, sequence: int, label: str, members: Sequence[int]) -> int:
    """The id of a communicator derived from ``parent`` by ``operation``."""
    return _digest(
        b"child",
        struct.pack("<QQ", parent, sequence),
        operation.encode("utf-8"),
        label.encode("utf-8"),
        struct.pack(f"<{len(members)}Q", *members),
    )
