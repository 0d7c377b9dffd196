"""Turning OS, TLS and stream errors into library errors and short explanations (one place).

(Placeholder in this branch: the full module is written beside it.)
"""

from __future__ import annotations

import ssl

from .errors import RemoteProtocolError

__all__ = ["describe_loss"]


def describe_loss(error: BaseException | None, goodbye: bool) -> str:
    """A short human explanation of why a link ended."""
    if isinstance(error, RemoteProtocolError):
        return f"sent invalid data ({error})"
    if isinstance(error, ssl.SSLError):
        return f"failed (TLS error: {error.reason or error})"
    if error is not None:
        return f"failed (link lost: {type(error).__name__}: {error})"
    if goodbye:
        return "left (closed its link)"
    return "failed (link closed)"
