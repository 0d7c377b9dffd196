"""Checks of the ranks users pass as ``src`` / ``dst`` (communicator, Shamir suites, Logger).

One place, so the same mistake gives the same message everywhere: each check returns plain
``int`` ranks or raises ``ValueError`` naming the argument, the world's range and, for a
list, the repeated rank.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

__all__ = ["require_rank", "require_rank_list", "require_ranks"]


def require_rank(rank: Any, world_size: int, what: str = "rank") -> int:
    """An integer rank in ``[0, world_size)``; ``what`` names the argument."""
    if not isinstance(rank, numbers.Integral) or isinstance(rank, bool):
        raise ValueError(f"{what} must be an integer rank in [0, {world_size}), got {rank!r}")
    value = int(rank)
    if not 0 <= value < world_size:
        raise ValueError(f"{what} must be in the range [0, {world_size}), got {value}")
    return value


def require_rank_list(ranks: Any, world_size: int, what: str) -> list[int]:
    """A sequence of distinct ranks in ``[0, world_size)``, in the order given.

    A repeated rank is a ``ValueError`` naming it (``dst=[0, 0]`` is a mistake, not a
    request to send twice).
    """
    if isinstance(ranks, (str, bytes)):
        raise ValueError(f"{what} must be a sequence of ranks, got {ranks!r}")
    try:
        result = [require_rank(rank, world_size, what) for rank in ranks]
    except TypeError:
        raise ValueError(f"{what} must be a sequence of ranks, got {ranks!r}") from None
    seen: set[int] = set()
    for rank in result:
        if rank in seen:
            raise ValueError(f"{what} must not repeat a rank: rank {rank} appears {result.count(rank)} times "
                             f"in {result}")
        seen.add(rank)
    return result


def require_ranks(ranks: int | Sequence[int] | Any, world_size: int, what: str) -> list[int]:
    """One rank or a sequence of distinct ranks (as :func:`require_rank_list`), as a list."""
    if isinstance(ranks, numbers.Integral) and not isinstance(ranks, bool):
        return [require_rank(ranks, world_size, what)]
    return require_rank_list(ranks, world_size, what)
