"""TLS credentials, checks and contexts (cicada_async.tls): files, error cases, real handshakes."""

from __future__ import annotations

import asyncio
import datetime
import os
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cicada_async import tls
from cicada_async._transport import Link
from cicada_async.communicator.connect import TLSConfig
from cicada_async.errors import AuthenticationError
from cicada_async.tls import CredentialError

NOW = datetime.datetime.now(datetime.UTC)
BROKEN_CERT = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
DAY = datetime.timedelta(days=1)


# -- helpers -----------------------------------------------------------------------------------
def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_cert(key, *, ranks=(0,), cn="test player", not_before=None, not_after=None, ca=False,
              signer=None, issuer=None, uris=None) -> x509.Certificate:
    """A certificate for ``key``, self-signed unless ``signer`` (a key) and ``issuer`` (a Name) are given."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - DAY)
        .not_valid_after(not_after or NOW + DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
    )
    names = [x509.UniformResourceIdentifier(tls.RANK_URI.format(rank=rank)) for rank in ranks]
    names += [x509.UniformResourceIdentifier(uri) for uri in uris or ()]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False), critical=True)
    return builder.sign(signer or key, hashes.SHA256())


def write(path: Path, *parts: bytes) -> str:
    path.write_bytes(b"".join(parts))
    return str(path)


@pytest.fixture(scope="module")
def creds(tmp_path_factory) -> Path:
    """Credentials of players 0, 1 and 2, written by write_credentials."""
    directory = tmp_path_factory.mktemp("creds")
    for rank in range(3):
        tls.write_credentials(rank, directory)
    return directory


def pem(creds: Path, rank: int) -> str:
    return str(creds / f"player-{rank}.pem")


def cert(creds: Path, rank: int) -> str:
    return str(creds / f"player-{rank}.cert")


def everyone(creds: Path) -> list[str]:
    return [cert(creds, rank) for rank in range(3)]


def one_line_naming(exc_info, path) -> None:
    message = str(exc_info.value)
    assert "\n" not in message
    assert os.path.basename(str(path)) in message, message


# -- write_credentials -------------------------------------------------------------------------
def test_write_credentials_files(tmp_path):
    identity, certificate = tls.write_credentials(3, tmp_path, days=10)
    assert identity == tmp_path / "player-3.pem" and certificate == tmp_path / "player-3.cert"
    assert stat.S_IMODE(identity.stat().st_mode) == 0o600
    assert stat.S_IMODE(certificate.stat().st_mode) & 0o077 != 0o077  # public, readable by others
    data = identity.read_bytes()
    key = serialization.load_pem_private_key(data, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    in_pem = x509.load_pem_x509_certificates(data)
    assert len(in_pem) == 1
    assert b"PRIVATE KEY" not in certificate.read_bytes()
    only = x509.load_pem_x509_certificates(certificate.read_bytes())
    assert only == in_pem
    c = only[0]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert (c.public_key().public_bytes(serialization.Encoding.DER, spki)
            == key.public_key().public_bytes(serialization.Encoding.DER, spki))
    assert c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "cicada-async player 3"
    assert c.issuer == c.subject
    san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:cicada-async:rank:3"]
    constraints = c.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False
    usage = c.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign and not usage.crl_sign
    eku = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    now = datetime.datetime.now(datetime.UTC)
    assert now - datetime.timedelta(minutes=2) < c.not_valid_before_utc < now
    assert abs(c.not_valid_after_utc - (now + datetime.timedelta(days=10))) < datetime.timedelta(minutes=1)
    assert tls.certificate_rank(c) == 3
    assert set(tmp_path.iterdir()) == {identity, certificate}  # no temporary files left behind


def test_write_credentials_name_and_replace(tmp_path):
    identity, certificate = tls.write_credentials(0, tmp_path, name="alice")
    first = identity.read_bytes()
    identity.chmod(0o644)  # a careless user widened it: a replacement is private again
    identity2, _ = tls.write_credentials(0, str(tmp_path), name="alice")
    assert identity2 == identity and identity.read_bytes() != first
    assert stat.S_IMODE(identity.stat().st_mode) == 0o600
    info = tls.certificate_info(certificate)
    assert info["subject"] == "CN=alice"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["player-0.cert", "player-0.pem"]


def test_private_key_never_readable_by_others(tmp_path, monkeypatch):
    """The key file has mode 0600 from creation on, even with a permissive umask."""
    seen = {}
    real_replace = os.replace

    def spy(source, target):
        if str(target).endswith(".pem"):
            seen["mode"] = stat.S_IMODE(os.stat(source).st_mode)
            seen["size"] = os.stat(source).st_size
        return real_replace(source, target)

    monkeypatch.setattr(tls.os, "replace", spy)
    old = os.umask(0)
    try:
        identity, certificate = tls.write_credentials(1, tmp_path)
    finally:
        os.umask(old)
    assert seen["mode"] == 0o600 and seen["size"] > 0
    assert stat.S_IMODE(identity.stat().st_mode) == 0o600
    assert stat.S_IMODE(certificate.stat().st_mode) == 0o644


@pytest.mark.parametrize("kwargs", [dict(rank=-1), dict(rank=True), dict(rank="1"), dict(rank=0, days=0),
                                    dict(rank=0, directory="/nonexistent/cicada")])
def test_write_credentials_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        tls.write_credentials(**kwargs)


# -- inspecting --------------------------------------------------------------------------------
def test_certificate_info(creds):
    for path in (cert(creds, 1), pem(creds, 1)):
        info = tls.certificate_info(path)
        c = tls.load_certificate(path)
        assert info["subject"] == "CN=cicada-async player 1"
        assert info["ranks"] == [1] and info["rank"] == 1
        assert info["ca"] is False
        assert info["not_before"] < datetime.datetime.now(datetime.UTC) < info["not_after"]
        assert info["sha256"] == c.fingerprint(hashes.SHA256()).hex(":").upper()
        assert info["status"] == "valid" and info["valid"] is True


def test_certificate_info_validity_and_der(tmp_path):
    key = _key()
    expired = make_cert(key, not_before=NOW - 3 * DAY, not_after=NOW - DAY)
    future = make_cert(key, not_before=NOW + DAY, not_after=NOW + 3 * DAY)
    info = tls.certificate_info(write(tmp_path / "old.cert", _pem_cert(expired)))
    assert info["status"] == "expired" and not info["valid"]
    info = tls.certificate_info(write(tmp_path / "new.cert", _pem_cert(future)))
    assert info["status"] == "not yet valid" and not info["valid"]
    der = write(tmp_path / "c.der", expired.public_bytes(serialization.Encoding.DER))
    assert tls.load_certificate(der) == expired


def test_certificate_rank():
    key = _key()
    assert tls.certificate_rank(make_cert(key, ranks=(7,))) == 7
    assert tls.certificate_rank(make_cert(key, ranks=())) is None
    assert tls.certificate_rank(make_cert(key, ranks=(1, 2))) is None
    assert tls.certificate_ranks(make_cert(key, ranks=(2, 1))) == [1, 2]
    assert tls.certificate_rank(make_cert(key, ranks=(), uris=["urn:cicada-async:rank:01"])) is None
    assert tls.certificate_rank(make_cert(key, ranks=(), uris=["urn:cicada-async:rank:x"])) is None
    assert tls.certificate_rank(make_cert(key, ranks=(4,), uris=["https://example.org/"])) == 4


def test_load_certificate_errors(tmp_path):
    with pytest.raises(CredentialError, match="cannot read") as info:
        tls.load_certificate(tmp_path / "missing.cert")
    one_line_naming(info, "missing.cert")
    with pytest.raises(CredentialError, match="no certificate") as info:
        tls.load_certificate(write(tmp_path / "text.cert", b"hello\n"))
    one_line_naming(info, "text.cert")
    with pytest.raises(CredentialError, match="malformed") as info:
        tls.load_certificate(write(tmp_path / "broken.cert", BROKEN_CERT))
    one_line_naming(info, "broken.cert")


# -- tls_config --------------------------------------------------------------------------------
def test_tls_config_contexts(creds):
    config = tls.tls_config(identity=pem(creds, 0), trusted=everyone(creds))
    assert isinstance(config, TLSConfig)
    assert config.check_rank is tls.check_rank
    for context, protocol in ((config.server, ssl.PROTOCOL_TLS_SERVER), (config.client, ssl.PROTOCOL_TLS_CLIENT)):
        assert isinstance(context, ssl.SSLContext) and context.protocol == protocol
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
        assert context.verify_flags & ssl.VERIFY_X509_PARTIAL_CHAIN
        assert context.check_hostname is False
    # one file, Paths and a rank check are accepted too
    tls.tls_config(identity=Path(pem(creds, 1)), trusted=Path(cert(creds, 0)), rank=1)


@pytest.mark.parametrize("identity, trusted", [(True, False), (False, True), (False, False)])
def test_tls_config_needs_both(creds, identity, trusted):
    with pytest.raises(ValueError, match="TLS needs") as info:
        tls.tls_config(identity=pem(creds, 0) if identity else None, trusted=everyone(creds) if trusted else None)
    assert type(info.value) is ValueError and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="at least one"):
        tls.tls_config(identity=pem(creds, 0), trusted=[])


def _identity_cases(tmp: Path, creds: Path) -> dict[str, tuple[str, str]]:
    key, other = _key(), _key()
    return {
        "expired": (write(tmp / "expired.pem", _pem_key(key),
                          _pem_cert(make_cert(key, not_before=NOW - 3 * DAY, not_after=NOW - DAY))), "expired on"),
        "not yet valid": (write(tmp / "future.pem", _pem_key(key),
                                _pem_cert(make_cert(key, not_before=NOW + DAY, not_after=NOW + 3 * DAY))),
                          "not valid before"),
        "malformed key": (write(tmp / "garbled.pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                                _pem_cert(make_cert(key))), "malformed private key"),
        "malformed certificate": (write(tmp / "garbled-cert.pem", _pem_key(key),
                                        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
                                  "malformed certificate"),
        "not pem": (write(tmp / "junk.pem", b"\x00\x01junk"), "not a PEM file"),
        "no key": (cert(creds, 0), "no private key"),
        "no certificate": (write(tmp / "keyonly.pem", _pem_key(key)), "no certificate"),
        "mismatched key": (write(tmp / "mismatch.pem", _pem_key(other), _pem_cert(make_cert(key))),
                           "does not match"),
        "no rank": (write(tmp / "norank.pem", _pem_key(key), _pem_cert(make_cert(key, ranks=()))), "names no rank"),
        "two ranks": (write(tmp / "tworanks.pem", _pem_key(key), _pem_cert(make_cert(key, ranks=(0, 1)))),
                      "exactly one"),
        "encrypted": (write(tmp / "encrypted.pem",
                            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.BestAvailableEncryption(b"secret")),
                            _pem_cert(make_cert(key))), "encrypted"),
        "missing": (str(tmp / "nothere.pem"), "cannot read"),
    }


CASES = ["expired", "not yet valid", "malformed key", "malformed certificate", "not pem", "no key",
         "no certificate", "mismatched key", "no rank", "two ranks", "encrypted", "missing"]


@pytest.mark.parametrize("case", CASES)
def test_tls_config_bad_identity(tmp_path, creds, case):
    path, message = _identity_cases(tmp_path, creds)[case]
    with pytest.raises(AuthenticationError, match=message) as info:
        tls.tls_config(identity=path, trusted=everyone(creds))
    one_line_naming(info, path)
    assert isinstance(info.value, ValueError)  # a CredentialError: a configuration mistake too


def test_tls_config_identity_of_another_rank(creds):
    with pytest.raises(AuthenticationError, match="names rank 1, but this player is rank 2") as info:
        tls.tls_config(identity=pem(creds, 1), trusted=everyone(creds), rank=2)
    one_line_naming(info, "player-1.pem")


def test_tls_config_bad_trusted(tmp_path, creds):
    key = _key()
    cases = {
        "expired": (make_cert(key, not_before=NOW - 3 * DAY, not_after=NOW - DAY), "expired on"),
        "future": (make_cert(key, not_before=NOW + DAY, not_after=NOW + 3 * DAY), "not valid before"),
        "norank": (make_cert(key, ranks=()), "names no rank and is not a CA"),
        "caplayer": (make_cert(key, ranks=(1,), ca=True), "also a CA"),
    }
    for name, (certificate, message) in cases.items():
        path = write(tmp_path / f"{name}.cert", _pem_cert(certificate))
        with pytest.raises(AuthenticationError, match=message) as info:
            tls.tls_config(identity=pem(creds, 0), trusted=[cert(creds, 0), path])
        one_line_naming(info, path)
    # a bundle: the bad certificate is the second one
    bundle = write(tmp_path / "bundle.cert", (creds / "player-1.cert").read_bytes(),
                   _pem_cert(cases["expired"][0]))
    with pytest.raises(AuthenticationError, match="certificate 2 in trusted") as info:
        tls.tls_config(identity=pem(creds, 0), trusted=[bundle])
    one_line_naming(info, bundle)
    for path, message in ((str(tmp_path / "nothere.cert"), "cannot read"),
                          (write(tmp_path / "junk.cert", b"junk"), "no certificate"),
                          (write(tmp_path / "bad.cert", BROKEN_CERT), "malformed")):
        with pytest.raises(AuthenticationError, match=message) as info:
            tls.tls_config(identity=pem(creds, 0), trusted=[path])
        one_line_naming(info, path)


# -- describe_ssl_error ------------------------------------------------------------------------
def _error(cls, reason, **attributes):
    exc = cls(1, f"[SSL: {reason}] something ({reason.lower()})")
    exc.reason = reason
    for name, value in attributes.items():
        setattr(exc, name, value)
    return exc


def test_describe_ssl_error():
    cases = [
        (_error(ssl.SSLCertVerificationError, "CERTIFICATE_VERIFY_FAILED", verify_code=10,
                verify_message="certificate has expired"), "its certificate has expired"),
        (_error(ssl.SSLCertVerificationError, "CERTIFICATE_VERIFY_FAILED", verify_code=18,
                verify_message="self-signed certificate"), "self-signed and not trusted here"),
        (_error(ssl.SSLCertVerificationError, "CERTIFICATE_VERIFY_FAILED", verify_code=79,
                verify_message="invalid CA certificate"), "may not sign certificates"),
        (_error(ssl.SSLError, "TLSV1_ALERT_UNKNOWN_CA"), "refused our certificate"),
        (_error(ssl.SSLError, "TLSV13_ALERT_CERTIFICATE_REQUIRED"), "required a certificate"),
        (_error(ssl.SSLError, "PEER_DID_NOT_RETURN_A_CERTIFICATE"), "did not present a certificate"),
        (_error(ssl.SSLError, "WRONG_VERSION_NUMBER"), "does not speak TLS"),
        (_error(ssl.SSLError, "SOMETHING_NEW"), "TLS error"),
        (ConnectionResetError(), "closed the connection during the TLS handshake"),
    ]
    for exc, expected in cases:
        text = tls.describe_ssl_error(exc, "127.0.0.1:5000", 2)
        assert text.startswith("TLS handshake with player 2 at 127.0.0.1:5000 failed: "), text
        assert expected in text and "\n" not in text, text
    text = tls.describe_ssl_error(cases[0][0], "file:///tmp/x.sock", None)
    assert text.startswith("TLS handshake with the peer at file:///tmp/x.sock failed: its certificate has expired")


def _memory_handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> dict[str, BaseException]:
    """A TLS handshake between two contexts through memory buffers: the errors of each side."""
    bios = {side: (ssl.MemoryBIO(), ssl.MemoryBIO()) for side in ("server", "client")}
    objects = {"server": server.wrap_bio(*bios["server"], server_side=True),
               "client": client.wrap_bio(*bios["client"], server_side=False)}
    other = {"server": "client", "client": "server"}
    done: set[str] = set()
    errors: dict[str, BaseException] = {}
    for _ in range(10):
        for side, obj in objects.items():
            if side in errors:
                continue
            try:
                if side in done:
                    obj.read(1)  # after the handshake: read what the peer said (alerts)
                else:
                    obj.do_handshake()
                    done.add(side)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                pass
            except ssl.SSLError as exc:
                errors[side] = exc
            data = bios[side][1].read()
            if data:
                bios[other[side]][0].write(data)
    return {"done": done, **errors}  # type: ignore[dict-item]


def test_memory_handshakes_and_their_descriptions(tmp_path, creds):
    # A certificate for rank 2 forged by player 1 (signed with player 1's key, naming it as issuer).
    forged = _forged(tmp_path, creds)
    good = tls.tls_config(identity=pem(creds, 0), trusted=everyone(creds))
    liar = _context_without_checks(ssl.PROTOCOL_TLS_CLIENT, forged, everyone(creds))
    result = _memory_handshake(good.server, liar)
    assert isinstance(result["server"], ssl.SSLCertVerificationError)
    text = tls.describe_ssl_error(result["server"], "127.0.0.1:1", 2)
    assert "may not sign certificates" in text, text
    # The client of a TLS 1.3 handshake finishes first, then reads the server's alert.
    assert isinstance(result["client"], ssl.SSLError)
    assert "refused our certificate" in tls.describe_ssl_error(result["client"], "127.0.0.1:1", 0)

    # A server whose certificate the client does not trust.
    only_self = tls.tls_config(identity=pem(creds, 1), trusted=[cert(creds, 1)])
    result = _memory_handshake(good.server, only_self.client)
    assert isinstance(result["client"], ssl.SSLCertVerificationError)
    assert "self-signed and not trusted here" in tls.describe_ssl_error(result["client"], "h:1", 0)

    # Everything in order: both sides finish.
    other = tls.tls_config(identity=pem(creds, 1), trusted=everyone(creds))
    result = _memory_handshake(good.server, other.client)
    assert result == {"done": {"server", "client"}}


def _forged(tmp: Path, creds: Path) -> str:
    data = (creds / "player-1.pem").read_bytes()
    signer = serialization.load_pem_private_key(data, password=None)
    issuer = tls.load_certificate(creds / "player-1.cert").subject
    key = _key()
    forged = make_cert(key, ranks=(2,), cn="cicada-async player 2", signer=signer, issuer=issuer)
    return write(tmp / "forged-2.pem", _pem_key(key), _pem_cert(forged))


def _context_without_checks(protocol, identity: str, trusted: list[str]) -> ssl.SSLContext:
    """Like tls_config's contexts, but without its checks of the identity (to send bad certificates)."""
    context = ssl.SSLContext(protocol)
    if protocol == ssl.PROTOCOL_TLS_CLIENT:
        context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.load_cert_chain(identity)
    for path in trusted:
        context.load_verify_locations(path)
    return context


# -- real handshakes between Links -------------------------------------------------------------
class _Pair:
    def __init__(self) -> None:
        self.server_links: list[Link] = []
        self.server: asyncio.AbstractServer | None = None
        self.client: Link | None = None
        self.accepting = asyncio.Event()

    async def open(self, server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> Link:
        loop = asyncio.get_running_loop()

        def factory() -> Link:
            link = Link(max_payload=1 << 20, label="test:0<-?")
            self.server_links.append(link)
            self.accepting.set()
            return link

        self.server = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_context)
        port = self.server.sockets[0].getsockname()[1]
        _, self.client = await loop.create_connection(lambda: Link(max_payload=1 << 20, label="test:1->0"),
                                                      "127.0.0.1", port, ssl=client_context,
                                                      server_hostname="127.0.0.1")
        return self.client

    async def accepted(self) -> Link:
        """The server's link, once its side of the handshake is complete too."""
        async with asyncio.timeout(5):
            await self.accepting.wait()  # the factory runs when the connection is accepted
            await self.server_links[0].connected
        return self.server_links[0]

    async def close(self) -> None:
        links = [link for link in [self.client, *self.server_links] if link is not None]
        for link in links:
            link.abort()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for link in links:
            if link.transport is not None:
                await asyncio.wait_for(asyncio.shield(link.lost), 5)


@pytest.mark.both_loops
async def test_handshake_and_check_rank(creds):
    config0 = tls.tls_config(identity=pem(creds, 0), trusted=everyone(creds))
    config1 = tls.tls_config(identity=pem(creds, 1), trusted=everyone(creds))
    pair = _Pair()
    try:
        client = await pair.open(config0.server, config1.client)
        server = await pair.accepted()
        assert not server.closed
        tls.check_rank(client, 0)  # the client checks the server is rank 0
        tls.check_rank(server, 1)  # and the server that the client is rank 1
        wrong = r"claims rank 2 but its certificate names rank\(s\) \[1\]"
        with pytest.raises(AuthenticationError, match=wrong) as info:
            tls.check_rank(server, 2)
        assert str(info.value).startswith("TLS: the peer at 127.0.0.1:")
        with pytest.raises(AuthenticationError, match=r"claims rank 1 but its certificate names rank\(s\) \[0\]"):
            tls.check_rank(client, 1)
    finally:
        await pair.close()


@pytest.mark.both_loops
async def test_forged_certificate_is_rejected(tmp_path, creds):
    """Player 1 signs a certificate for rank 2 with its own key: nobody accepts it."""
    forged = _forged(tmp_path, creds)
    honest = tls.tls_config(identity=pem(creds, 0), trusted=everyone(creds))
    # As a server: the honest client refuses it during the handshake.
    liar_server = _context_without_checks(ssl.PROTOCOL_TLS_SERVER, forged, everyone(creds))
    pair = _Pair()
    try:
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            await pair.open(liar_server, honest.client)
        assert "may not sign certificates" in tls.describe_ssl_error(info.value, "127.0.0.1:1", 2)
    finally:
        await pair.close()
    # As a client: the honest server drops the connection; its Link never becomes connected.
    liar_client = _context_without_checks(ssl.PROTOCOL_TLS_CLIENT, forged, everyone(creds))
    pair = _Pair()
    try:
        try:
            client = await pair.open(honest.server, liar_client)
        except (ConnectionError, ssl.SSLError):
            client = None  # TLS 1.2 style: the handshake itself fails
        if client is not None:
            await asyncio.wait_for(asyncio.shield(client.lost), 5)
            assert client.closed
        assert all(not link.connected.done() for link in pair.server_links)
    finally:
        await pair.close()


@pytest.mark.both_loops
async def test_ca_signed_players(tmp_path):
    """Users with their own CA: trust the CA; its player certificates carry the rank URI."""
    ca_key = _key()
    ca = make_cert(ca_key, ranks=(), cn="test CA", ca=True)
    ca_file = write(tmp_path / "ca.cert", _pem_cert(ca))
    identities = []
    for rank in range(2):
        key = _key()
        leaf = make_cert(key, ranks=(rank,), cn=f"player {rank}", signer=ca_key, issuer=ca.subject)
        identities.append(write(tmp_path / f"p{rank}.pem", _pem_key(key), _pem_cert(leaf)))
    config0 = tls.tls_config(identity=identities[0], trusted=[ca_file], rank=0)
    config1 = tls.tls_config(identity=identities[1], trusted=[ca_file], rank=1)
    pair = _Pair()
    try:
        client = await pair.open(config0.server, config1.client)
        tls.check_rank(client, 0)
    finally:
        await pair.close()


def test_check_rank_without_tls():
    class Transport:
        def get_extra_info(self, name, default=None):
            return ("10.0.0.1", 4242) if name == "peername" else default

    link = Link.__new__(Link)
    link.transport = Transport()  # type: ignore[assignment]
    link.label = "world:0<-?"
    with pytest.raises(AuthenticationError, match=r"10\.0\.0\.1:4242 claims rank 1 .*not a TLS link"):
        tls.check_rank(link, 1)


async def test_strangers_dropped_over_the_cap_of_a_tls_listener_are_not_authentication_failures(creds):
    """Idle connections to a TLS listener beyond its cap are dropped by us mid-handshake; that
    is not their certificate failing, so nothing is recorded as an authentication failure (which
    would turn a start-up timeout into an AuthenticationError and log a warning each)."""
    from cicada_async.communicator.connect import Limits, listen, parse_address

    config = tls.tls_config(identity=pem(creds, 0), trusted=everyone(creds))
    listener = await listen(address="tcp://127.0.0.1", rank=0, tls=config, limits=Limits(max_pending_connections=4))
    host, port = parse_address(listener.address)[1]
    writers = []
    try:
        for _ in range(20):
            _, writer = await asyncio.open_connection(host, port)
            writers.append(writer)
        await asyncio.sleep(0.3)  # the 16 dropped links' handshakes end on the next turns
        assert listener.dropped == 16
        assert listener.failures == []
    finally:
        for writer in writers:
            writer.close()
        await listener.aclose()
