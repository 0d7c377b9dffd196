"""How the messages one peer sent for a batch of operations are laid out like the batch.

:meth:`AsyncSocketCommunicator.exchange_batch` receives one entry per (source, operation):
a ``(data, start, stop)`` slice of a batch frame, a whole array (a DATA frame), or the
exception that ended the wait.  :func:`assemble` turns one source's entries into one flat
array in the batch's layout, or records why an operation got nothing usable: a wrong
shape or type means the two players' operations differ, which must never be computed on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy

from ..errors import RemoteProtocolError
from .interface import Operation, tagname

__all__ = ["assemble"]


def assemble(entries: list[Any], offsets: Sequence[int], dtype: numpy.dtype, failed: dict[int, BaseException],
              src: int, prefix: str, operation: Operation) -> numpy.ndarray:
    """Lay the messages one source sent for a batch of operations out like the batch.

    Fast path: they are one contiguous piece of one frame (the peer batched the same
    operations); otherwise each is checked and copied into place.  Operations whose message
    is missing or malformed go into ``failed`` (their part stays zero).
    """
    first = entries[0]
    if type(first) is tuple and not failed:
        data, start, position = first
        for j in range(1, len(entries)):
            entry = entries[j]
            if type(entry) is not tuple or entry[0] is not data or entry[1] != position:
                break
            position = entry[2]
        else:
            if position - start == offsets[-1] and data.dtype == dtype and all(
                    entries[j][2] - entries[j][1] == offsets[j + 1] - offsets[j] for j in range(len(entries))):
                return data[start:position]
    out = numpy.zeros(offsets[-1], dtype=dtype)
    for j, entry in enumerate(entries):
        if isinstance(entry, BaseException):
            failed.setdefault(j, entry)
            continue
        if type(entry) is tuple:
            data, start, stop = entry
            entry = data[start:stop]
        size = offsets[j + 1] - offsets[j]
        if not isinstance(entry, numpy.ndarray) or entry.ndim != 1 or entry.dtype != dtype or len(entry) != size:
            what = f"{operation.name}() ({tagname(operation.kind)})"
            failed.setdefault(j, RemoteProtocolError(
                f"{prefix}: player {src} sent {describe(entry)} for {what}, where this player expects "
                f"{size} values of {dtype}: the two players' operations differ", rank=src))
            continue
        out[offsets[j]:offsets[j + 1]] = entry
    return out


def describe(value: Any) -> str:
    if isinstance(value, numpy.ndarray):
        return f"{value.size} values of {value.dtype}" if value.ndim == 1 else f"an array of shape {value.shape}"
    return f"a {type(value).__name__}"
