"""cicada_async: an asyncio-native runtime for fault-tolerant secure multiparty computation.

Players (one event loop each) are joined by per-peer TCP, Unix-socket or TLS streams; they
secret-share numpy arrays with Shamir's scheme, compute on the shares and reveal results.
When a player dies or hangs, the survivors ``revoke`` the communicator, ``await shrink()``
to an agreed smaller group over the links they still have, and carry on.
"""

from .communicator import AsyncSocketCommunicator, Communicator, Failed, Operation, Tag, Terminated
from .errors import (
    AuthenticationError,
    CommunicatorError,
    ConcurrencyError,
    Excluded,
    NotRunning,
    PeerFailed,
    RemoteProtocolError,
    Revoked,
    Timeout,
    TokenMismatch,
)
from .logger import Logger
from .operations import operation, scope

__version__ = "0.1.0"

__all__ = [
    "AsyncSocketCommunicator",
    "AuthenticationError",
    "Communicator",
    "CommunicatorError",
    "ConcurrencyError",
    "Excluded",
    "Failed",
    "Logger",
    "NotRunning",
    "Operation",
    "PeerFailed",
    "RemoteProtocolError",
    "Revoked",
    "Tag",
    "Terminated",
    "Timeout",
    "TokenMismatch",
    "__version__",
    "operation",
    "scope",
]
