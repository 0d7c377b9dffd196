"""TLS inside a link: records over in-memory BIOs, ciphertext to and from the raw transport.

Running TLS inside the link (rather than in the event loop's SSL transport) behaves the same
on asyncio and uvloop, lets the link see every handshake failure, and decrypts straight into
the frame decoder's buffer.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

__all__ = ["TLSSession"]

CHUNK = 1 << 20
_BUFFER = 256 * 1024
_HANDSHAKE_BUFFER = 32 * 1024  # before authentication: a stranger's connection holds little
"""Plaintext encrypted per step when sending a large frame."""


class TLSSession:
    """One TLS session: :meth:`handshake_step`, :meth:`decrypt` and :meth:`encrypt`.

    ``write`` is called with ciphertext to put on the wire.
    """

    __slots__ = ("done", "incoming", "outgoing", "pending", "ssl", "view", "write")

    def __init__(self, context: ssl.SSLContext, server_side: bool, server_hostname: str | None,
                 write: Callable[[bytes], None]) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.ssl = context.wrap_bio(self.incoming, self.outgoing, server_side=server_side,
                                    server_hostname=server_hostname)
        self.done = False  # handshake complete
        self.view = memoryview(bytearray(_HANDSHAKE_BUFFER))  # ciphertext from the socket lands here
        self.pending: list[bytes] = []  # plaintext written before the handshake completed
        self.write = write

    def grow(self) -> None:
        """Use a full-size buffer for ciphertext from now on (the peer is authenticated)."""
        if len(self.view) < _BUFFER:
            self.view = memoryview(bytearray(_BUFFER))

    def flush(self) -> None:
        """Put the ciphertext waiting in the outgoing BIO on the wire."""
        if self.outgoing.pending:
            self.write(self.outgoing.read())

    def received(self, nbytes: int) -> None:
        """``nbytes`` of ciphertext arrived in :attr:`view`."""
        self.incoming.write(self.view[:nbytes])

    def handshake_step(self) -> bool:
        """Advance the handshake with the ciphertext that has arrived; True once complete.

        Raises
        ------
        ssl.SSLError, OSError
            If the handshake failed (the alert telling the peer why has been flushed).
        """
        try:
            self.ssl.do_handshake()
        except ssl.SSLWantReadError:
            self.flush()
            return False
        except (ssl.SSLError, OSError):
            self.flush()
            raise
        self.done = True
        self.flush()
        pending, self.pending = self.pending, []
        for data in pending:
            self.encrypt(data)
        return True

    def decrypt(self, buffer: memoryview) -> int | None:
        """Decrypt into ``buffer``; return the byte count, 0 when no more plaintext is ready,
        or None once the peer closed its TLS session.  Raises ``ssl.SSLError`` if broken."""
        try:
            return int(self.ssl.read(len(buffer), buffer))
        except ssl.SSLWantReadError:
            return 0
        except ssl.SSLZeroReturnError:
            return None

    def encrypt(self, data: bytes | memoryview) -> None:
        """Encrypt ``data`` and write it (kept until the handshake completes)."""
        if not self.done:
            self.pending.append(bytes(data))
            return
        view = memoryview(data).cast("B")
        for start in range(0, len(view), CHUNK):
            self.ssl.write(view[start : start + CHUNK])
            self.write(self.outgoing.read())
