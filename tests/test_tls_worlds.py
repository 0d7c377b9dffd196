"""TLS worlds end to end: rank-bound certificates, impostors, shrink and exclusion over TLS."""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
import socket

import numpy
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from programs import stopped_player_is_excluded

from cicada_async import (
    AsyncSocketCommunicator,
    AuthenticationError,
    CommunicatorError,
    Failed,
    PeerFailed,
    Revoked,
    Terminated,
    Timeout,
)
from cicada_async import tls as tls_module
from cicada_async.shamir import ShamirBasicProtocolSuite

pytestmark = pytest.mark.processes


@pytest.fixture(scope="module")
def creds(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls-creds")
    for rank in range(4):
        tls_module.write_credentials(rank, directory)
    return directory


def identities(creds, ranks):
    return [str(creds / f"player-{rank}.pem") for rank in ranks]


def trusted(creds, n):
    return [str(creds / f"player-{rank}.cert") for rank in range(n)]


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request, monkeypatch):
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    monkeypatch.setenv("CICADA_ASYNC_LOOP", request.param)  # forked players inherit it
    return request.param


def test_a_tls_world_computes(creds, loop_kind):
    async def fn(comm):
        link = comm.endpoint.links[(comm.rank + 1) % 3]
        assert link.ssl_object is not None and link.ssl_object.version() in ("TLSv1.2", "TLSv1.3")
        values = await comm.allgather(comm.rank)
        big = await comm.broadcast(src=1, value=numpy.arange(300_000.0) if comm.rank == 1 else None)
        suite = ShamirBasicProtocolSuite(comm, threshold=2)
        total = None
        for src in range(3):
            share = await suite.share(src=src, secret=numpy.array(float(src + 1)), shape=())
            total = share if total is None else suite.add(total, share)
        return values, float(big.sum()), float(await suite.reveal(total))

    results = AsyncSocketCommunicator.run(world_size=3, fn=fn, identities=identities(creds, range(3)),
                                          trusted=trusted(creds, 3))
    assert results == [([0, 1, 2], float(numpy.arange(300_000.0).sum()), 6.0)] * 3


def test_a_player_given_another_ranks_identity_is_stopped_before_connecting(creds):
    results = AsyncSocketCommunicator.run(world_size=3, fn=_allgather, identities=identities(creds, [0, 1, 1]),
                                          trusted=trusted(creds, 3), startup_timeout=10)
    assert isinstance(results[2], Failed) and isinstance(results[2].exception, AuthenticationError)
    assert "names rank 1, but this player is rank 2" in str(results[2].exception)
    assert all(isinstance(r, Failed) and "player 2" in str(r.exception) for r in results[:2]), results


def test_a_player_presenting_another_ranks_certificate_is_refused(creds, monkeypatch):
    # A malicious player 2 skips its own check and presents player 1's (trusted) certificate.
    real_check = tls_module._check_identity
    monkeypatch.setattr(tls_module, "_check_identity", lambda path, rank: real_check(path, None))
    results = AsyncSocketCommunicator.run(world_size=3, fn=_allgather, identities=identities(creds, [0, 1, 1]),
                                          trusted=trusted(creds, 3), startup_timeout=3)
    assert all(isinstance(result, Failed) for result in results), results
    texts = [str(result.exception) for result in results]
    # The honest players refuse it and say why by their startup deadline; the impostor is refused.
    for text, result in zip(texts[:2], results[:2], strict=True):
        assert isinstance(result.exception, AuthenticationError), texts
        assert "claims rank 2" in text and "rank(s) [1]" in text, texts
    assert isinstance(results[2].exception, AuthenticationError), texts


def test_an_untrusted_certificate_is_refused(creds, tmp_path):
    tls_module.write_credentials(2, tmp_path)  # a player 2 nobody trusts
    stranger = str(tmp_path / "player-2.pem")
    trust = [*trusted(creds, 3), str(tmp_path / "player-2.cert")]  # it trusts everyone, not the reverse
    results = AsyncSocketCommunicator.run(
        world_size=3, fn=_allgather, identities=[*identities(creds, [0, 1]), stranger], trusted=trust[:3],
        startup_timeout=10)
    assert all(isinstance(r, Failed) for r in results), results
    # The stranger learns its certificate is not trusted; the others are told at once why the
    # world will not form (the launcher aborts them), instead of waiting for the deadline.
    assert isinstance(results[2].exception, AuthenticationError)
    assert "not trusted" in str(results[2].exception)
    for result in results[:2]:
        assert isinstance(result.exception, CommunicatorError) and "player 2" in str(result.exception)


def test_an_expired_certificate_is_refused_with_a_clear_message(creds, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired player 2")])
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30)).not_valid_after(now - datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier("urn:cicada-async:rank:2")]),
                       critical=False)
        .sign(key, hashes.SHA256()))
    expired = tmp_path / "expired-2.pem"
    expired.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())
                        + certificate.public_bytes(serialization.Encoding.PEM))
    results = AsyncSocketCommunicator.run(world_size=3, fn=_allgather,
                                          identities=[*identities(creds, [0, 1]), str(expired)],
                                          trusted=trusted(creds, 3), startup_timeout=10)
    assert isinstance(results[2], Failed) and isinstance(results[2].exception, AuthenticationError)
    assert "expired" in str(results[2].exception) and "\n" not in str(results[2].exception)
    # The others are told at once that the world will not form.
    assert all(isinstance(r, Failed) and "player 2" in str(r.exception) for r in results[:2]), results


async def _allgather(comm):
    return await comm.allgather(comm.rank)


def test_shrink_after_a_sigkill_over_tls(creds, loop_kind):
    async def fn(comm):
        if comm.rank == 1:
            await comm.barrier()
            os.kill(os.getpid(), signal.SIGKILL)
        await comm.barrier()
        try:
            await comm.allgather(comm.rank)
        except (PeerFailed, Revoked):
            pass
        await comm.revoke()
        new, oldranks = await comm.shrink(name="tls-shrunk")
        pair = await new.split(name="low" if new.rank < 2 else "high")
        assert pair.endpoint is comm.endpoint and pair.endpoint.links[(comm.rank + 2) % 4].ssl_object is not None
        return oldranks, await new.allgather(comm.rank), await pair.allgather(comm.rank)

    results = AsyncSocketCommunicator.run(world_size=4, fn=fn, identities=identities(creds, range(4)),
                                          trusted=trusted(creds, 4))
    assert results[1] == Terminated(-9)
    assert [results[r] for r in (0, 2, 3)] == [([0, 2, 3], [0, 2, 3], [0, 2]), ([0, 2, 3], [0, 2, 3], [0, 2]),
                                               ([0, 2, 3], [0, 2, 3], [3])]


def test_a_stopped_player_is_excluded_over_tls(creds, watchdog):
    results = AsyncSocketCommunicator.run(world_size=4, fn=stopped_player_is_excluded,
                                          identities=identities(creds, range(4)), trusted=trusted(creds, 4),
                                          timeout=1)
    assert results[2] == "excluded", results
    assert [results[r][:2] for r in (0, 1, 3)] == [([0, 1, 3], [0, 1, 3])] * 3, results


async def test_connect_over_tls_in_one_loop(creds):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def player(rank):
        return await AsyncSocketCommunicator.connect(
            world_size=3, rank=rank, root_address=f"tcp://127.0.0.1:{port}",
            address="tcp://127.0.0.1" if rank else None,
            identity=str(creds / f"player-{rank}.pem"), trusted=trusted(creds, 3), token="t")

    comms = await asyncio.gather(*(player(rank) for rank in range(3)))
    try:
        assert await asyncio.gather(*(c.allgather(c.rank) for c in comms)) == [[0, 1, 2]] * 3
    finally:
        for comm in comms:
            await comm.endpoint.aclose(1)


async def test_a_missing_player_over_tls_is_reported_as_missing_not_as_a_refused_certificate(creds):
    """Rank 2 never starts.  Rank 0 gives up at its deadline and tells rank 1 why (a REJECT
    over the TLS link), so rank 1 does not blame its certificate for a silent close."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def player(rank):
        return await AsyncSocketCommunicator.connect(
            world_size=3, rank=rank, root_address=f"tcp://127.0.0.1:{port}",
            address="tcp://127.0.0.1" if rank else None, startup_timeout=1.5,
            identity=str(creds / f"player-{rank}.pem"), trusted=trusted(creds, 3), token="t")

    root, other = await asyncio.gather(player(0), player(1), return_exceptions=True)
    assert isinstance(root, Timeout) and "player(s) [2]" in str(root), root
    assert isinstance(other, Timeout), repr(other)
    assert "certificate" not in str(other) and "gave up" in str(other), other
    assert "player(s) [2]" in str(other), other
