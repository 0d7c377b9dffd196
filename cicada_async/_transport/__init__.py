"""The transport: per-peer links over asyncio transports and the endpoint that routes them.

Errors from the OS, the TLS layer and the peer's bytes are turned into library errors here
(with the explanations of :mod:`cicada_async._failures`), and only here.
"""

from .endpoint import Endpoint, FrameSink, Limits
from .link import SOFT_WRITE_LIMIT, Link

__all__ = ["SOFT_WRITE_LIMIT", "Endpoint", "FrameSink", "Limits", "Link"]
