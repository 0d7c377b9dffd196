"""One deadline for the whole connection set-up: every step draws on it."""

from __future__ import annotations

import time

__all__ = ["Timer"]


class Timer:
    """A deadline for a multi-step operation, started at construction.

    Parameters
    ----------
    threshold:
        Seconds allowed in total.
    """

    def __init__(self, threshold: float) -> None:
        if not threshold > 0:
            raise ValueError(f"threshold must be a positive number of seconds, got {threshold!r}")
        self.threshold = threshold
        self.start = time.monotonic()

    @property
    def elapsed(self) -> float:
        """Seconds since the timer started."""
        return time.monotonic() - self.start

    @property
    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self.threshold - self.elapsed)

    @property
    def expired(self) -> bool:
        """True once the threshold has passed."""
        return self.elapsed >= self.threshold
