"""Validation of the arguments users pass to communicator calls (ranks, tags, timeouts).

Each check returns the value normalised (a plain ``int`` or ``float``) or raises
``ValueError`` saying which argument is wrong and why.  The rank checks are shared with the
Shamir suites and the Logger (:mod:`cicada_async._ranks`).
"""

from __future__ import annotations

import numbers
from typing import Any

from .._ranks import require_rank, require_rank_list
from .interface import USER_TAG_MAX, Tag

__all__ = ["check_timeout", "require_rank", "require_rank_list", "require_tag"]

_LIBRARY_TAGS = frozenset(int(tag) for tag in Tag)
_TAG_RANGE = f"0 ... 2**31 - 1 ({USER_TAG_MAX})"


def check_timeout(value: Any) -> float:
    """A positive number of seconds."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not float(value) > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {value!r}")
    return float(value) if not isinstance(value, int) else value


def require_tag(tag: Any) -> int:
    """A user tag: an integer in ``[0, USER_TAG_MAX]`` (negative tags are the library's).

    Raises ``ValueError`` naming the allowed range (0 ... 2**31 - 1) for anything else: a
    negative (reserved) tag, one that does not fit in the frame's signed 32-bit tag field,
    or a value that is not an integer.
    """
    if not isinstance(tag, numbers.Integral) or isinstance(tag, bool):
        raise ValueError(f"tag must be an integer in {_TAG_RANGE}, got {tag!r}")
    tag = int(tag)
    if tag < 0:
        name = f" ({Tag(tag).name}, used by the library)" if tag in _LIBRARY_TAGS else ""
        raise ValueError(f"tag {tag}{name} is reserved: user tags must be in {_TAG_RANGE}")
    if tag > USER_TAG_MAX:
        raise ValueError(f"tag {tag} does not fit in 32 bits: user tags must be in {_TAG_RANGE}")
    return tag
