"""Communicators: groups of players exchanging messages over per-peer asyncio links.

``Communicator`` is the abstract interface; ``AsyncSocketCommunicator`` implements it over
TCP, Unix-socket or TLS streams.  ``Failed`` and ``Terminated`` are the results
``AsyncSocketCommunicator.run`` gives for players that raised or died.  The low-level
connection functions live in :mod:`cicada_async.communicator.connect`.
"""

from .interface import Communicator, Operation, Tag, tagname
from .launcher import Failed, Terminated
from .socket import AsyncSocketCommunicator

__all__ = ["AsyncSocketCommunicator", "Communicator", "Failed", "Operation", "Tag", "Terminated", "tagname"]
