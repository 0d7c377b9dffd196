"""IPv6 wherever an address is taken: parsing, listen, direct, rendezvous, connect, the CLI, TLS."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy
import pytest

from cicada_async import AsyncSocketCommunicator, CommunicatorError, Timeout
from cicada_async import tls as tls_module
from cicada_async._core.framing import Kind, encode_header
from cicada_async.communicator.connect import Timer, direct, listen, parse_address, rendezvous

ROOT = Path(__file__).resolve().parents[1]
ENTRY = "from cicada_async.cli import main; raise SystemExit(main())"


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="this host has no IPv6 loopback (::1)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
        probe.bind(("::1", 0))
        return probe.getsockname()[1]


def _link_local() -> str | None:
    """A link-local IPv6 address of this host with its interface (``fe80::...%eth0``), if any."""
    try:
        lines = Path("/proc/net/if_inet6").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) == 6 and fields[0].startswith("fe80") and fields[5] != "lo":
            groups = ":".join(fields[0][i:i + 4] for i in range(0, 32, 4))
            host = f"{socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, groups))}%{fields[5]}"
            try:
                with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
                    probe.bind(socket.getaddrinfo(host, 0, socket.AF_INET6)[0][4])
            except OSError:
                continue
            return host
    return None


# -- parsing and formatting (no sockets) ------------------------------------------------------

@pytest.mark.parametrize(("address", "expected"), [
    ("tcp://[::1]:5000", ("::1", 5000)),
    ("tcp://[::1]", ("::1", 0)),
    ("tcp://[::1]:0", ("::1", 0)),
    ("tcp://[::]:65535", ("::", 65535)),
    ("tcp://[2001:db8::7]:25252", ("2001:db8::7", 25252)),
    ("tcp://[2001:DB8::7]:1", ("2001:DB8::7", 1)),  # as written
    ("tcp://[::ffff:192.0.2.1]:80", ("::ffff:192.0.2.1", 80)),
    ("tcp://[fe80::1%eth0]:5000", ("fe80::1%eth0", 5000)),
    ("tcp://[fe80::1%25eth0]:5000", ("fe80::1%eth0", 5000)),  # RFC 6874's spelling
    ("tcp://[fe80::1%Eth0]", ("fe80::1%Eth0", 0)),  # interface names are case-sensitive
    ("tcp://[fe80::1%3]:7", ("fe80::1%3", 7)),  # an interface index
    ("tcp://127.0.0.1:80", ("127.0.0.1", 80)),
    ("tcp://Some-Host.example:9", ("Some-Host.example", 9)),
    ("tcp://localhost", ("localhost", 0)),
])
def test_parse_tcp(address, expected):
    assert parse_address(address) == ("tcp", expected)


@pytest.mark.parametrize("address", [
    "tcp://[::1]:5000", "tcp://[::1]:0", "tcp://[2001:db8::7]:25252", "tcp://[fe80::1%eth0]:5000",
    "tcp://[::ffff:192.0.2.1]:80", "tcp://127.0.0.1:80", "tcp://host.example:1",
])
def test_format_reads_back(address):
    from cicada_async.communicator._addresses import format_address

    scheme, where = parse_address(address)
    assert format_address(scheme, where) == address
    assert parse_address(format_address(scheme, where)) == (scheme, where)


def test_format_brackets_socket_names():
    from cicada_async.communicator._addresses import format_address

    assert format_address("tcp", ("::1", 5000, 0, 0)) == "tcp://[::1]:5000"  # an AF_INET6 getsockname()
    assert format_address("tcp", ("127.0.0.1", 5000)) == "tcp://127.0.0.1:5000"


@pytest.mark.parametrize(("address", "says"), [
    ("tcp://::1:5", "must be in brackets, as tcp://[::1]:5 for port 5 or tcp://[::1:5] for no port"),
    ("tcp://::1", "must be in brackets, as tcp://[::1] for no port"),
    ("tcp://2001:db8::7:25252", "must be in brackets"),
    ("tcp://[::1", "unclosed '['"),
    ("tcp://[::1:5", "unclosed '['"),
    ("tcp://[::1]:65536", "port 65536 is out of range [0, 65535]"),
    ("tcp://[::1]:99999999999999999999", "out of range"),
    ("tcp://[::1]:-1", "invalid port '-1'"),
    ("tcp://[::1]:", "invalid port ''"),
    ("tcp://[::1]:http", "invalid port 'http'"),
    ("tcp://[::1]5000", "expected ':port' after ']'"),
    ("tcp://[::1]x:5", "expected ':port' after ']'"),
    ("tcp://[not-ipv6]:5", "'not-ipv6' between brackets is not an IPv6 address"),
    ("tcp://[192.0.2.1]:5", "is not an IPv6 address"),
    ("tcp://[]:5", "is not an IPv6 address"),
    ("tcp://[fe80::1%]:5", "empty IPv6 zone"),
    ("tcp://[::1]:5/path", "nothing after the port"),
    ("tcp://user@[::1]:5", "no user name"),
    ("tcp://", "lacks a host"),
    ("tcp://:5", "lacks a host"),
    ("tcp://host:", "invalid port"),
    ("tcp://ho st:5", "is not a host name"),
    ("udp://[::1]:5", "scheme must be tcp or file"),
])
def test_bad_addresses_name_themselves(address, says):
    with pytest.raises(ValueError) as info:
        parse_address(address)
    assert repr(address) in str(info.value) and says in str(info.value), str(info.value)


@needs_ipv6
def test_default_address_follows_the_roots_family():
    from cicada_async.communicator._addresses import default_address

    assert default_address("tcp://[::1]:5000") == "tcp://[::1]"
    assert default_address("tcp://[::1]") == "tcp://[::1]"
    assert default_address("tcp://127.0.0.1:5000") == "tcp://127.0.0.1"
    link_local = _link_local()
    if link_local is not None:  # the zone is kept: without it the address is unusable
        assert default_address(f"tcp://[{link_local}]:5000") == f"tcp://[{link_local}]"


@needs_ipv6
def test_default_address_for_a_name_that_resolves_only_to_ipv6(monkeypatch):
    """A root given by name whose only address is IPv6 (a common DNS setup): the player
    listens on the local IPv6 address that routes there, not on the root's host name."""
    real = socket.getaddrinfo

    def resolve(host, port, *args, **kwargs):
        if host == "ipv6-only.test":
            return [(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_UDP, "", ("::1", port, 0, 0))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    from cicada_async.communicator._addresses import default_address

    assert default_address("tcp://ipv6-only.test:5000") == "tcp://[::1]"
    assert default_address("tcp://nowhere.invalid:5000") == "tcp://nowhere.invalid"  # unresolvable: as before


# -- worlds over [::1] ------------------------------------------------------------------------

async def _listeners(n: int, address: str = "tcp://[::1]", **kwargs):
    return [await listen(address=address, rank=rank, **kwargs) for rank in range(n)]


async def _exchange(comms: list[AsyncSocketCommunicator]) -> None:
    assert await asyncio.gather(*(c.allgather(c.rank) for c in comms)) == [[0, 1, 2]] * 3
    values = await asyncio.gather(*(c.broadcast(src=2, value=numpy.arange(50_000.0) if c.rank == 2 else None)
                                    for c in comms))
    assert all(numpy.array_equal(value, numpy.arange(50_000.0)) for value in values)


def _peer_hosts(comm: AsyncSocketCommunicator) -> set[str]:
    return {link.transport.get_extra_info("peername")[0] for link in comm.endpoint.links.values()}


@needs_ipv6
@pytest.mark.both_loops
async def test_listen_on_ipv6_gives_a_bracketed_address():
    for address in ("tcp://[::1]", f"tcp://[::1]:{_free_port()}"):
        listener = await listen(address=address)
        try:
            scheme, (host, port) = parse_address(listener.address)
            assert (scheme, host) == ("tcp", "::1") and port > 0
            assert listener.address == f"tcp://[::1]:{port}"
        finally:
            await listener.aclose()


@needs_ipv6
async def test_a_dual_stack_name_listens_on_one_port(monkeypatch):
    """``tcp://localhost`` where localhost is both 127.0.0.1 and ::1: the OS-chosen port is the
    same on both, so a peer finds the player whichever address of the name it tries."""
    real = socket.getaddrinfo

    def resolve(host, port, family=0, type=0, proto=0, flags=0):
        if host == "dual-stack.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port)),
                    (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("::1", port, 0, 0))]
        return real(host, port, family, type, proto, flags)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    for _ in range(3):
        listener = await listen(address="tcp://dual-stack.test")
        try:
            scheme, (host, port) = parse_address(listener.address)
            assert (scheme, host) == ("tcp", "dual-stack.test")
            for address in ("127.0.0.1", "::1"):
                _, writer = await asyncio.open_connection(address, port)
                writer.close()
                await writer.wait_closed()
        finally:
            await listener.aclose()


@needs_ipv6
@pytest.mark.both_loops
async def test_direct_over_ipv6():
    listeners = await _listeners(3)
    addresses = [listener.address for listener in listeners]
    assert all(address.startswith("tcp://[::1]:") for address in addresses)
    try:
        endpoints = await asyncio.gather(*(direct(listener=listener, addresses=addresses, rank=rank, timer=Timer(5))
                                           for rank, listener in enumerate(listeners)))
    finally:
        for listener in listeners:
            await listener.aclose()
    comms = [AsyncSocketCommunicator(endpoint=endpoint, timeout=5) for endpoint in endpoints]
    try:
        await _exchange(comms)
        assert all(_peer_hosts(comm) == {"::1"} for comm in comms)
    finally:
        for comm in comms:
            comm.endpoint.abort()


@needs_ipv6
@pytest.mark.both_loops
async def test_rendezvous_over_ipv6_hands_out_ipv6_addresses():
    """Rank 0's ACCEPT carries every player's bracketed address; players 1 and 2 link by it."""
    listeners = await _listeners(3)
    root = listeners[0].address
    try:
        endpoints = await asyncio.gather(*(
            rendezvous(listener=listener, root_address=root, world_size=3, rank=rank, token="t", timer=Timer(5))
            for rank, listener in enumerate(listeners)))
    finally:
        for listener in listeners:
            await listener.aclose()
    comms = [AsyncSocketCommunicator(endpoint=endpoint, timeout=5) for endpoint in endpoints]
    try:
        await _exchange(comms)
        assert all(_peer_hosts(comm) == {"::1"} for comm in comms)
        link = comms[2].endpoint.links[1]  # opened by player 2 to the address it got from rank 0
        assert link.transport.get_extra_info("peername")[1] == parse_address(listeners[1].address)[1][1]
    finally:
        for comm in comms:
            comm.endpoint.abort()


@needs_ipv6
async def test_rendezvous_refuses_an_address_the_others_cannot_use():
    """A JOIN whose address does not parse is refused by rank 0, instead of reaching every
    player in the ACCEPT and failing their set-up."""
    listeners = await _listeners(2)
    listeners[1].address = "tcp://::1:5"  # what a careless program might announce
    root = listeners[0].address
    rank0 = asyncio.ensure_future(rendezvous(listener=listeners[0], root_address=root, world_size=2, rank=0,
                                             timer=Timer(0.6)))
    try:
        with pytest.raises(CommunicatorError, match="must be in brackets"):
            await rendezvous(listener=listeners[1], root_address=root, world_size=2, rank=1, timer=Timer(3))
        with pytest.raises(Timeout, match=r"refused a connection meanwhile: .*unusable address.*from \[::1\]:\d+"):
            await rank0
    finally:
        rank0.cancel()
        for listener in listeners:
            await listener.aclose()


@needs_ipv6
async def test_errors_print_ipv6_addresses_with_brackets():
    port = _free_port()  # nobody listens there
    listener = await listen(address="tcp://[::1]", rank=1)
    try:
        with pytest.raises(Timeout) as info:
            await rendezvous(listener=listener, root_address=f"tcp://[::1]:{port}", world_size=2, rank=1,
                             timer=Timer(0.3))
    finally:
        await listener.aclose()
    assert f"tcp://[::1]:{port}" in str(info.value), str(info.value)


@needs_ipv6
async def test_a_strangers_address_is_logged_with_brackets():
    listener = await listen(address="tcp://[::1]", rank=0)
    _, writer = await asyncio.open_connection("::1", parse_address(listener.address)[1][1])
    try:
        writer.write(encode_header(Kind.HELLO, 1, 0, 3) + b"\x63\x00\x00")  # a malformed JOIN
        await writer.drain()
        for _ in range(200):
            if listener.refusals:
                break
            await asyncio.sleep(0.01)
        local_port = writer.get_extra_info("sockname")[1]
        assert listener.refusals[-1].text.endswith(f"(from [::1]:{local_port})"), listener.refusals
    finally:
        writer.close()
        await listener.aclose()


@needs_ipv6
@pytest.mark.both_loops
@pytest.mark.parametrize("with_tls", [False, True])
async def test_a_scoped_link_local_world(tmp_path, with_tls):
    link_local = _link_local()
    if link_local is None:
        pytest.skip("no usable link-local IPv6 address on this host")
    configs = [None] * 3
    if with_tls:
        for rank in range(3):
            tls_module.write_credentials(rank, tmp_path)
        trusted = [str(tmp_path / f"player-{rank}.cert") for rank in range(3)]
        configs = [tls_module.tls_config(identity=str(tmp_path / f"player-{rank}.pem"), trusted=trusted, rank=rank)
                   for rank in range(3)]
    listeners = [await listen(address=f"tcp://[{link_local}]", rank=rank, tls=configs[rank]) for rank in range(3)]
    addresses = [listener.address for listener in listeners]
    assert all(address.startswith(f"tcp://[{link_local}]:") for address in addresses), addresses
    try:
        endpoints = await asyncio.gather(*(
            rendezvous(listener=listener, root_address=addresses[0], world_size=3, rank=rank, timer=Timer(5),
                       tls=configs[rank])
            for rank, listener in enumerate(listeners)))
    finally:
        for listener in listeners:
            await listener.aclose()
    comms = [AsyncSocketCommunicator(endpoint=endpoint, timeout=5) for endpoint in endpoints]
    try:
        await _exchange(comms)
    finally:
        for comm in comms:
            comm.endpoint.abort()


@needs_ipv6
@pytest.mark.both_loops
async def test_connect_from_the_environment_with_an_ipv6_root(monkeypatch):
    """CICADA_ROOT_ADDRESS in brackets; players 1 and 2 listen by default on the interface that
    routes to rank 0, which must be an IPv6 one."""
    monkeypatch.setenv("CICADA_WORLD_SIZE", "3")
    monkeypatch.setenv("CICADA_ROOT_ADDRESS", f"tcp://[::1]:{_free_port()}")
    monkeypatch.setenv("CICADA_TOKEN", "shared")
    monkeypatch.delenv("CICADA_ADDRESS", raising=False)
    comms = await asyncio.gather(*(AsyncSocketCommunicator.connect(rank=rank, timeout=5, startup_timeout=5)
                                   for rank in range(3)))
    try:
        await _exchange(comms)
        assert all(_peer_hosts(comm) == {"::1"} for comm in comms)
    finally:
        for comm in comms:
            comm.endpoint.abort()


@needs_ipv6
async def test_connect_with_cicada_address_in_brackets(monkeypatch):
    root = f"tcp://[::1]:{_free_port()}"
    monkeypatch.setenv("CICADA_ROOT_ADDRESS", root)
    monkeypatch.setenv("CICADA_ADDRESS", "tcp://[::1]")

    async def player(rank: int) -> AsyncSocketCommunicator:
        # Rank 0 listens on the root address: CICADA_ADDRESS would contradict it.
        return await AsyncSocketCommunicator.connect(world_size=3, rank=rank, address=root if rank == 0 else None,
                                                     timeout=5)

    comms = await asyncio.gather(*(player(rank) for rank in range(3)))
    try:
        await _exchange(comms)
        assert all(_peer_hosts(comm) == {"::1"} for comm in comms)
    finally:
        for comm in comms:
            comm.endpoint.abort()


@needs_ipv6
async def test_connect_rejects_an_unbracketed_root():
    with pytest.raises(ValueError, match=r"'tcp://::1:5'.*must be in brackets"):
        await AsyncSocketCommunicator.connect(world_size=2, rank=1, root_address="tcp://::1:5")


# -- TLS over IPv6 ----------------------------------------------------------------------------

@needs_ipv6
@pytest.mark.both_loops
async def test_a_tls_world_over_ipv6(tmp_path):
    """Certificates name ranks, not hosts: an IPv6 world with TLS just works."""
    for rank in range(3):
        tls_module.write_credentials(rank, tmp_path)
    trusted = [str(tmp_path / f"player-{rank}.cert") for rank in range(3)]
    configs = [tls_module.tls_config(identity=str(tmp_path / f"player-{rank}.pem"), trusted=trusted, rank=rank)
               for rank in range(3)]
    listeners = [await listen(address="tcp://[::1]", rank=rank, tls=configs[rank]) for rank in range(3)]
    try:
        endpoints = await asyncio.gather(*(
            rendezvous(listener=listener, root_address=listeners[0].address, world_size=3, rank=rank,
                       tls=configs[rank], timer=Timer(5))
            for rank, listener in enumerate(listeners)))
    finally:
        for listener in listeners:
            await listener.aclose()
    comms = [AsyncSocketCommunicator(endpoint=endpoint, timeout=5) for endpoint in endpoints]
    try:
        assert all(link.ssl_object is not None for comm in comms for link in comm.endpoint.links.values())
        await _exchange(comms)
    finally:
        for comm in comms:
            comm.endpoint.abort()


# -- the command line, three processes ----------------------------------------------------------

ALLGATHER = textwrap.dedent("""
    import socket
    import sys

    async def main(communicator):
        ranks = await communicator.allgather(communicator.rank)
        families = {link.transport.get_extra_info("socket").family
                    for link in communicator.endpoint.links.values()}
        assert families == {socket.AF_INET6}, families
        sys.stdout.write(f"player {communicator.rank}: {ranks}\\n")
        sys.stdout.flush()
""")


@needs_ipv6
@pytest.mark.processes
def test_cli_start_with_an_ipv6_root(tmp_path):
    """``cicada-async start --root-address tcp://[::1]:PORT``: players 1 and 2 give no --address."""
    program = tmp_path / "prog.py"
    program.write_text(ALLGATHER)
    root = f"tcp://[::1]:{_free_port()}"
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
    for variable in ("CICADA_ADDRESS", "CICADA_ROOT_ADDRESS", "CICADA_RANK", "CICADA_WORLD_SIZE"):
        environment.pop(variable, None)
    players = [subprocess.Popen([sys.executable, "-c", ENTRY, "start", "--rank", str(rank), "--world-size", "3",
                                 "--root-address", root, "--token", "secret", "--startup-timeout", "30",
                                 str(program)],
                                env=environment, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for rank in range(3)]
    try:
        outputs = [player.communicate(timeout=60) for player in players]
    finally:
        for player in players:
            if player.poll() is None:
                player.kill()
                player.wait()
    for rank, (player, (out, err)) in enumerate(zip(players, outputs, strict=True)):
        assert player.returncode == 0, err
        assert out.strip() == f"player {rank}: [0, 1, 2]", (out, err)


@needs_ipv6
@pytest.mark.processes
def test_cli_start_names_a_bad_root_address(tmp_path):
    program = tmp_path / "prog.py"
    program.write_text(ALLGATHER)
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", ENTRY, "start", "--rank", "1", "--world-size", "2",
                             "--root-address", "tcp://::1:5", str(program)],
                            env=environment, text=True, capture_output=True, timeout=60)
    assert result.returncode != 0
    assert "'tcp://::1:5'" in result.stderr and "brackets" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
