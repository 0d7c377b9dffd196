"""TLS credentials for players: generating, inspecting and checking them.

With TLS every link is encrypted and mutually authenticated.  A peer is accepted only if
its certificate chains to one of this player's trusted certificates (checked by OpenSSL
during the TLS handshake) AND names the rank the peer claims, as a subjectAltName URI
``urn:cicada-async:rank:N`` (checked by :func:`check_rank` once the peer has said which
rank it is).

Two ways to set up credentials:

* Self-signed player certificates (``cicada-async credentials --rank N``, or
  :func:`write_credentials`): every player trusts every player's certificate.  These
  certificates are not CA certificates (``basicConstraints CA=False``, no ``keyCertSign``),
  so a player cannot use its own key to mint a certificate for another rank.
* Your own CA: give each player a certificate signed by the CA that carries the rank URI,
  and trust the CA certificate.

Problems with a player's own files (unreadable, malformed, expired, key not matching the
certificate, no rank) raise :class:`CredentialError`, which is both an
:class:`~cicada_async.errors.AuthenticationError` and a :class:`ValueError`, with a one-line
message naming the file.
"""

from __future__ import annotations

import datetime
import os
import re
import secrets
import ssl
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._failures import describe_ssl_error, one_line
from .errors import AuthenticationError

__all__ = [
    "RANK_URI",
    "CredentialError",
    "TLSConfig",
    "certificate_info",
    "certificate_rank",
    "certificate_ranks",
    "check_rank",
    "describe_ssl_error",
    "load_certificate",
    "tls_config",
    "write_credentials",
]

#: The subjectAltName URI that names a player's rank in its certificate.
RANK_URI = "urn:cicada-async:rank:{rank}"

_RANK_PREFIX = RANK_URI.split("{", 1)[0]
_RANK_RE = re.compile(r"(0|[1-9][0-9]*)")
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_KEY_LABELS = {b"PRIVATE KEY", b"EC PRIVATE KEY", b"RSA PRIVATE KEY", b"DSA PRIVATE KEY"}


class CredentialError(AuthenticationError, ValueError):
    """A TLS credential file of this player is unusable (unreadable, malformed, expired, ...)."""


# -- generating ------------------------------------------------------------------------------
def _check_rank_argument(rank: Any) -> int:
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 0:
        raise ValueError(f"rank must be a non-negative integer, got {rank!r}")
    return rank


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically, the file having ``mode`` from its creation on."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file with mode 0600 (owner only); widen it only if asked to.
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def write_credentials(rank: int, directory: str | Path = ".", *, days: int = 365,
                      name: str | None = None) -> tuple[Path, Path]:
    """Create a key and a self-signed certificate for player ``rank``.

    Writes ``player-{rank}.pem`` (private key and certificate; mode 0600 from the moment the
    file exists) and ``player-{rank}.cert`` (the certificate only, for the other players to
    trust) in ``directory``, replacing existing files of those names.  The certificate
    names the rank as the subjectAltName URI ``urn:cicada-async:rank:{rank}``, is valid
    from a minute ago for ``days`` days, and is not a CA certificate.

    Returns
    -------
    tuple[Path, Path]
        The paths of the identity (``.pem``) and certificate (``.cert``) files.
    """
    rank = _check_rank_argument(rank)
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        raise ValueError(f"days must be a positive integer, got {days!r}")
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"directory {str(directory)!r} does not exist")
    common_name = f"cicada-async player {rank}" if name is None else str(name)
    if not common_name:
        raise ValueError("name must not be empty")

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(secrets.randbits(159) | 1)
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(RANK_URI.format(rank=rank))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False),
                       critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    identity = directory / f"player-{rank}.pem"
    cert = directory / f"player-{rank}.cert"
    _write_private(identity, key_pem + cert_pem, 0o600)
    _write_private(cert, cert_pem, 0o644)  # public: the other players need to read it
    return identity, cert


# -- inspecting ------------------------------------------------------------------------------
def certificate_ranks(cert: x509.Certificate) -> list[int]:
    """Every rank named by ``cert``'s ``urn:cicada-async:rank:N`` subjectAltName URIs, sorted.

    A URI with the rank prefix but no canonical decimal number after it counts as ``-1``
    (it names no valid rank), so that such a certificate is never accepted.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    ranks: set[int] = set()
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.lower().startswith(_RANK_PREFIX):
            suffix = uri[len(_RANK_PREFIX):]
            ranks.add(int(suffix) if _RANK_RE.fullmatch(suffix) else -1)
    return sorted(ranks)


def certificate_rank(cert: x509.Certificate) -> int | None:
    """The rank ``cert`` names, or None if it names none, or more than one, or an invalid one."""
    ranks = certificate_ranks(cert)
    if len(ranks) == 1 and ranks[0] >= 0:
        return ranks[0]
    return None


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError as exc:
        raise CredentialError(f"cannot read {what} {os.fspath(path)!r}: {exc.strerror or exc}") from None


def _pem_blocks(data: bytes) -> list[tuple[bytes, bytes]]:
    return [(match.group(1), match.group(0)) for match in _PEM_BLOCK.finditer(data)]


def _certificates(data: bytes, path: str | os.PathLike[str], what: str) -> list[x509.Certificate]:
    blocks = [block for label, block in _pem_blocks(data) if label in (b"CERTIFICATE", b"TRUSTED CERTIFICATE")]
    certificates = []
    if not blocks and data[:1] == b"\x30":  # DER
        blocks = [data]
    for block in blocks:
        try:
            if block is data:
                certificates.append(x509.load_der_x509_certificate(block))
            else:
                certificates.append(x509.load_pem_x509_certificate(block))
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise CredentialError(f"{what} {os.fspath(path)!r} holds a malformed certificate "
                                  f"({one_line(exc)})") from None
    return certificates


def load_certificate(path: str | os.PathLike[str]) -> x509.Certificate:
    """The (first) certificate in a ``.cert`` file or in an identity ``.pem`` (PEM or DER).

    Raises :class:`CredentialError` if the file cannot be read or holds no certificate.
    """
    certificates = _certificates(_read(path, "certificate file"), path, "certificate file")
    if not certificates:
        raise CredentialError(f"certificate file {os.fspath(path)!r} holds no certificate")
    return certificates[0]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _validity(cert: x509.Certificate, now: datetime.datetime | None = None) -> str:
    now = now or _now()
    if now < cert.not_valid_before_utc:
        return "not yet valid"
    if now > cert.not_valid_after_utc:
        return "expired"
    return "valid"


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def certificate_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a certificate file (``.cert``, or identity ``.pem``) says, for people to read.

    Returns a dict with ``path``, ``subject`` (RFC 4514 string), ``issuer``, ``ranks`` (list
    of ranks named), ``rank`` (the single rank, or None), ``ca`` (bool), ``not_before`` and
    ``not_after`` (aware UTC datetimes), ``sha256`` (colon-separated hex fingerprint),
    ``status`` (``"valid"``, ``"expired"`` or ``"not yet valid"``) and ``valid`` (bool).
    """
    cert = load_certificate(path)
    status = _validity(cert)
    return {
        "path": os.fspath(path),
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "ranks": certificate_ranks(cert),
        "rank": certificate_rank(cert),
        "ca": _is_ca(cert),
        "not_before": cert.not_valid_before_utc,
        "not_after": cert.not_valid_after_utc,
        "sha256": _fingerprint(cert),
        "status": status,
        "valid": status == "valid",
    }


# -- checking and building contexts ----------------------------------------------------------
def _check_validity(cert: x509.Certificate, label: str) -> None:
    now = _now()
    status = _validity(cert, now)
    if status == "expired":
        raise CredentialError(f"{label} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC")
    if status == "not yet valid":
        raise CredentialError(f"{label} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC")


def _check_identity(path: str, rank: int | None) -> None:
    data = _read(path, "TLS identity file")
    where = f"TLS identity file {path!r}"
    blocks = _pem_blocks(data)
    keys = [(label, block) for label, block in blocks if label in _KEY_LABELS or label == b"ENCRYPTED PRIVATE KEY"]
    if not blocks:
        raise CredentialError(f"{where} is not a PEM file (expected a private key and a certificate)")
    if not keys:
        raise CredentialError(f"{where} holds no private key (an identity needs the key and the certificate)")
    if len(keys) > 1:
        raise CredentialError(f"{where} holds more than one private key")
    label, key_pem = keys[0]
    if label == b"ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in key_pem:
        raise CredentialError(f"{where} holds an encrypted private key; cicada-async needs it unencrypted "
                              "(protect the file with its permissions instead)")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CredentialError(f"{where} holds a malformed private key ({one_line(exc)})") from None
    certificates = _certificates(data, path, "TLS identity file")
    if not certificates:
        raise CredentialError(f"{where} holds no certificate (an identity needs the key and the certificate)")
    cert = certificates[0]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if (key.public_key().public_bytes(serialization.Encoding.DER, spki)
            != cert.public_key().public_bytes(serialization.Encoding.DER, spki)):
        raise CredentialError(f"{where}: the private key does not match the certificate "
                              "(this player's own certificate must be the first one in the file)")
    _check_validity(cert, f"the certificate in {where}")
    ranks = certificate_ranks(cert)
    named = certificate_rank(cert)
    if named is None:
        if not ranks:
            raise CredentialError(f"the certificate in {where} names no rank (it needs a subjectAltName URI "
                                  f"{RANK_URI.format(rank='N')})")
        raise CredentialError(f"the certificate in {where} does not name exactly one valid rank "
                              f"(found {ranks})")
    if rank is not None and named != rank:
        raise CredentialError(f"the certificate in {where} names rank {named}, but this player is rank {rank}")


def _check_trusted(path: str) -> None:
    where = f"trusted certificate file {path!r}"
    certificates = _certificates(_read(path, "trusted certificate file"), path, "trusted certificate file")
    if not certificates:
        raise CredentialError(f"{where} holds no certificate")
    for index, cert in enumerate(certificates):
        label = where if len(certificates) == 1 else f"certificate {index + 1} in {where}"
        _check_validity(cert, label)
        ranks = certificate_ranks(cert)
        ca = _is_ca(cert)
        if ranks and ca:
            raise CredentialError(f"{label} names rank(s) {ranks} but is also a CA certificate, so its owner "
                                  "could sign certificates for other ranks; refusing to trust it")
        if not ranks and not ca:
            raise CredentialError(f"{label} names no rank and is not a CA certificate, so it cannot "
                                  f"authenticate any player (expected a subjectAltName URI "
                                  f"{RANK_URI.format(rank='N')})")
        if ranks and certificate_rank(cert) is None:
            raise CredentialError(f"{label} does not name exactly one valid rank (found {ranks})")


def _as_paths(value: Any, what: str) -> list[str]:
    if isinstance(value, (str, os.PathLike)):
        value = [value]
    try:
        paths = [os.fspath(item) for item in value]
    except TypeError:
        raise ValueError(f"{what} must be a file name or a sequence of file names, got {value!r}") from None
    return paths


@dataclass(frozen=True)
class TLSConfig:
    """TLS settings for a player's links, as :func:`tls_config` builds them.

    ``server`` and ``client`` are SSL contexts requiring certificates from both sides;
    ``check_rank(link, rank)`` raises :class:`AuthenticationError` unless the peer's
    certificate names ``rank`` (see :func:`check_rank`).  The connection code
    (:mod:`cicada_async.communicator.connect`, which re-exports this class) takes it as its
    ``tls`` argument.
    """

    server: ssl.SSLContext
    client: ssl.SSLContext
    check_rank: Callable[[Any, int], None]


def tls_config(*, identity: str | os.PathLike[str] | None,
               trusted: Sequence[str | os.PathLike[str]] | str | os.PathLike[str] | None,
               rank: int | None = None) -> TLSConfig:
    """Build the TLS settings of a player from its identity file and trusted certificates.

    Parameters
    ----------
    identity:
        PEM file holding this player's private key (unencrypted) and certificate (followed
        by any intermediate CA certificates).
    trusted:
        Files of trusted certificates: the other players' self-signed certificates, or a CA.
    rank:
        Optional: this player's rank, checked against its own certificate.

    Both contexts require a certificate from the other side, verify it against ``trusted``
    (a trusted leaf certificate is a trust anchor by itself) and allow TLS 1.2 or later.
    Host names are not checked: ranks are, by :func:`check_rank`.

    Raises
    ------
    ValueError
        If only one of ``identity`` and ``trusted`` is given.
    CredentialError
        If a file is unreadable, malformed, expired or not yet valid, if the key does not
        match the certificate, or if a certificate names no rank.
    """
    if identity is None and trusted is None:
        raise ValueError("TLS needs an identity file and trusted certificates; neither was given")
    if identity is None:
        raise ValueError("TLS needs an identity file too: trusted certificates were given without one")
    if trusted is None:
        raise ValueError("TLS needs trusted certificates too: an identity file was given without any")
    if rank is not None:
        _check_rank_argument(rank)
    identity_path = _as_paths(identity, "identity")
    if len(identity_path) != 1:
        raise ValueError(f"identity must be one file name, got {identity!r}")
    trusted_paths = _as_paths(trusted, "trusted")
    if not trusted_paths:
        raise ValueError("trusted must name at least one certificate file")
    _check_identity(identity_path[0], rank)
    for path in trusted_paths:
        _check_trusted(path)
    return TLSConfig(server=_context(ssl.PROTOCOL_TLS_SERVER, identity_path[0], trusted_paths),
                     client=_context(ssl.PROTOCOL_TLS_CLIENT, identity_path[0], trusted_paths),
                     check_rank=check_rank)


def _context(protocol: int, identity: str, trusted: list[str]) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if protocol == ssl.PROTOCOL_TLS_CLIENT:
        context.check_hostname = False  # ranks are checked instead of host names
    context.verify_mode = ssl.CERT_REQUIRED
    # A trusted certificate is a trust anchor even when it is a leaf (self-signed, CA=False).
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    try:
        context.load_cert_chain(identity)
    except (ssl.SSLError, OSError) as exc:
        raise CredentialError(f"TLS identity file {identity!r} was refused by OpenSSL ({one_line(exc)})") from None
    for path in trusted:
        try:
            context.load_verify_locations(cafile=path)
        except (ssl.SSLError, OSError) as exc:
            raise CredentialError(f"trusted certificate file {path!r} was refused by OpenSSL "
                                  f"({one_line(exc)})") from None
    return context


# -- checking peers --------------------------------------------------------------------------
def _peer_address(link: Any) -> str:
    transport = getattr(link, "transport", None)
    peername = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = peername[0], peername[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(peername, (str, bytes)) and peername:
        return os.fsdecode(peername)
    return getattr(link, "label", "") or "?"


def check_rank(link: Any, rank: int) -> None:
    """Raise :class:`AuthenticationError` unless the peer's certificate names ``rank``.

    ``link`` is a :class:`~cicada_async._transport.Link` over a TLS transport whose
    handshake is complete: OpenSSL has already verified the certificate chain and validity,
    this checks the rank URI.  The message names the peer's address (the caller adds which
    communicator and player it is about), e.g. ``TLS: the peer at 127.0.0.1:53228 claims
    rank 2 but its certificate names rank(s) [1]``.
    """
    transport = getattr(link, "transport", None)
    address = _peer_address(link)
    ssl_object = getattr(link, "ssl_object", None)
    if ssl_object is None and transport is not None:
        ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        raise AuthenticationError(f"TLS: the peer at {address} claims rank {rank} but its link is not a TLS link")
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        raise AuthenticationError(f"TLS: the peer at {address} claims rank {rank} but presented no certificate")
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise AuthenticationError(f"TLS: the peer at {address} claims rank {rank} but its certificate cannot be "
                                  f"parsed ({one_line(exc)})") from None
    ranks = certificate_ranks(cert)
    if ranks != [rank]:
        named = f"rank(s) {ranks}" if ranks else "no rank"
        raise AuthenticationError(f"TLS: the peer at {address} claims rank {rank} but its certificate names {named}")
