"""How OS, TLS and stream errors become library errors and one-line explanations.

The one place that knows what an :class:`OSError`, an :class:`ssl.SSLError` or a stream that
ended means for a player:

* :func:`describe_ssl_error` explains a failed TLS handshake (what OpenSSL's verification
  messages and alerts mean for a player, e.g. "its certificate has expired").
* :func:`describe_loss` explains why an established link ended.
* :func:`tls_handshake_failed`, :func:`closed_during_handshake` and :func:`nobody_listening`
  build the library errors that connection set-up raises for them (the caller raises them
  ``from`` the original exception).

Pure functions of their arguments: nothing here does I/O, and nothing from ``cicada_async``
but :mod:`cicada_async.errors` is imported, so every layer may use it.
"""

from __future__ import annotations

import ssl

from .errors import AuthenticationError, CommunicatorError, RemoteProtocolError

__all__ = [
    "HANDSHAKE_ERRORS",
    "closed_during_handshake",
    "describe_loss",
    "describe_ssl_error",
    "nobody_listening",
    "one_line",
    "tls_handshake_failed",
]

HANDSHAKE_ERRORS: tuple[type[BaseException], ...] = (ssl.SSLError, OSError, ConnectionError)
"""What a failed TLS handshake raises: an SSL error, or the reset / EOF of a peer that dropped
the connection in the middle of it."""


def one_line(exc: BaseException) -> str:
    """``exc``'s message on one line (its type name if it has no message)."""
    return " ".join(str(exc).split()) or type(exc).__name__


# OpenSSL's verification messages (their numeric codes differ between OpenSSL versions) and
# what they mean for a player; matched in order, by substring.
_VERIFY_MESSAGES = (
    ("has expired", "has expired"),
    ("not yet valid", "is not valid yet"),
    ("in certificate chain", "chains to a self-signed certificate that is not trusted here"),
    ("self-signed", "is self-signed and not trusted here"),
    ("self signed", "is self-signed and not trusted here"),
    ("issuer certificate", "is not signed by any certificate trusted here"),
    ("first certificate", "is not signed by any certificate trusted here"),
    ("invalid ca", "is signed by a certificate that may not sign certificates (not a CA)"),
    ("certificate signing", "is signed by a certificate that may not sign certificates (no keyCertSign)"),
    ("signature failure", "has an invalid signature"),
    ("purpose", "is not meant for this purpose (its extendedKeyUsage lacks serverAuth/clientAuth)"),
)

_REASONS = {
    "TLSV1_ALERT_UNKNOWN_CA": "refused our certificate: it is not trusted there",
    "SSLV3_ALERT_BAD_CERTIFICATE": "refused our certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "refused our certificate as expired (or not yet valid)",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "refused our certificate",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "refused our certificate as unsupported",
    "TLSV1_ALERT_DECRYPT_ERROR": "refused our certificate (its signature did not verify)",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "required a certificate but we presented none",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "did not present a certificate",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "failed the TLS handshake (no common TLS version or cipher, or a missing "
                                     "certificate)",
    "TLSV1_ALERT_PROTOCOL_VERSION": "does not support a TLS version we accept (TLS 1.2 or later)",
    "UNSUPPORTED_PROTOCOL": "does not support a TLS version we accept (TLS 1.2 or later)",
    "NO_PROTOCOLS_AVAILABLE": "does not support a TLS version we accept (TLS 1.2 or later)",
    "NO_SHARED_CIPHER": "has no cipher in common with us",
    "WRONG_VERSION_NUMBER": "does not speak TLS (is it running without TLS?)",
    "HTTP_REQUEST": "does not speak TLS",
    "PACKET_LENGTH_TOO_LONG": "does not speak TLS (is it running without TLS?)",
    "RECORD_LAYER_FAILURE": "does not speak TLS (is it running without TLS?)",
    "UNEXPECTED_EOF_WHILE_READING": "closed the connection during the TLS handshake (did it refuse our "
                                    "certificate?)",
    "UNEXPECTED_MESSAGE": "sent an unexpected TLS message",
}



def describe_ssl_error(exc: BaseException, address: str, claimed_rank: int | None) -> str:
    """One line explaining a failed TLS handshake with the peer at ``address``.

    ``claimed_rank`` is the rank the peer is supposed to be (None if unknown).  Meant for
    the connection code to put in :class:`AuthenticationError` messages, e.g.
    ``TLS handshake with player 2 at 127.0.0.1:5000 failed: its certificate has expired
    (CERTIFICATE_VERIFY_FAILED: certificate has expired)``.  Besides :class:`ssl.SSLError`,
    it accepts the ``ConnectionResetError`` / EOF a peer causes by dropping the connection
    in the middle of the handshake (which is how a refused certificate shows when the peer
    sends no alert).
    """
    who = f"player {claimed_rank} at {address}" if claimed_rank is not None else f"the peer at {address}"
    reason = getattr(exc, "reason", None)
    code = getattr(exc, "verify_code", None)
    detail = str(reason or type(exc).__name__)
    if isinstance(exc, ssl.SSLCertVerificationError) or isinstance(code, int):
        message = getattr(exc, "verify_message", None) or ""
        meaning = next((text for key, text in _VERIFY_MESSAGES if key in message.lower()), None)
        text = f"its certificate {meaning}" if meaning else f"its certificate was refused ({message or detail})"
        if message:
            detail = f"{detail}: {message}"
    elif isinstance(reason, str) and reason in _REASONS:
        text = f"it {_REASONS[reason]}"
    elif isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError, EOFError)):
        text = ("it closed the connection during the TLS handshake (it may have refused our certificate, "
                "or it may not use TLS)")
    else:
        text = "TLS error"
        detail = one_line(exc)
    return " ".join(f"TLS handshake with {who} failed: {text} ({detail})".split())


def describe_loss(error: BaseException | None, goodbye: bool) -> str:
    """A short human explanation of why a link ended.

    ``error`` is what ended it (None for a clean end of stream); ``goodbye`` is true when the
    peer said goodbye before closing.
    """
    if isinstance(error, RemoteProtocolError):
        return f"sent invalid data ({error})"
    if isinstance(error, ssl.SSLError):
        return f"failed (TLS error: {getattr(error, 'reason', None) or error})"
    if error is not None:
        return f"failed (link lost: {type(error).__name__}: {error})"
    if goodbye:
        return "left (closed its link)"
    return "failed (link closed)"


# -- errors raised while setting up links ----------------------------------------------------
def tls_handshake_failed(exc: BaseException, address: str, claimed_rank: int | None,
                         prefix: str | None = None) -> AuthenticationError:
    """The error for a TLS handshake with the peer at ``address`` that raised ``exc``.

    ``prefix`` (e.g. ``"Comm world player 1"``), when given, starts the message.
    """
    text = describe_ssl_error(exc, address, claimed_rank)
    return AuthenticationError(text if prefix is None else f"{prefix}: {text}")


def closed_during_handshake(prefix: str, peer: int, error: BaseException | None, *, tls: bool,
                            address: str) -> CommunicatorError:
    """The error for a link to player ``peer`` (at ``address``) that ended before the hello
    exchange finished; ``error`` is what ended it, if anything.

    With TLS this is an :class:`AuthenticationError`: with TLS 1.3, a peer that refuses our
    certificate just drops the link (an SSL error, when there is one, says more).
    """
    if tls:
        cause = error if isinstance(error, ssl.SSLError) else ConnectionResetError()
        return tls_handshake_failed(cause, address, peer, prefix)
    return CommunicatorError(
        f"{prefix}: player {peer} closed the link during the handshake" + (f" ({error})" if error else "")
    )


def nobody_listening(address: str, exc: BaseException) -> TimeoutError:
    """The error for ``address`` still refusing connections (``exc``) when the deadline comes.

    A plain :class:`TimeoutError`: the set-up code turns it into its startup
    :class:`~cicada_async.errors.Timeout`, which names the players still missing.
    """
    return TimeoutError(f"nobody accepted a connection at {address} ({exc})")
