"""A player's share of a secret array."""

from __future__ import annotations

from typing import Any

import numpy

__all__ = ["ShamirArrayShare"]


class ShamirArrayShare:
    """This player's share of a secret array.

    ``storage`` holds field elements (the field's dtype) in the secret's shape.  Shares are
    plain data: they do not refer to the communicator or suite that made them, so a suite
    built after a shrink (with the survivors' ``indices``) can open them.
    """

    __slots__ = ("_storage",)

    def __init__(self, storage: numpy.ndarray) -> None:
        if not isinstance(storage, numpy.ndarray):
            raise ValueError(f"storage must be a numpy array, got {type(storage).__name__}")
        self._storage = storage

    def __repr__(self) -> str:
        return f"ShamirArrayShare(shape={self._storage.shape})"

    def __getitem__(self, index: Any) -> ShamirArrayShare:
        # A trailing Ellipsis keeps a single element a 0-d array (not a numpy scalar).
        where = (*index, Ellipsis) if isinstance(index, tuple) else (index, Ellipsis)
        return ShamirArrayShare(self._storage[where])

    def __len__(self) -> int:
        return len(self._storage)

    @property
    def storage(self) -> numpy.ndarray:
        """The field elements of this share (the field's dtype, the secret's shape)."""
        return self._storage

    @storage.setter
    def storage(self, storage: numpy.ndarray) -> None:
        self._storage = storage

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the secret."""
        return self._storage.shape
