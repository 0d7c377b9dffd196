"""Players on separate hosts, simulated honestly: one Linux network namespace per player.

Each player is a real ``cicada-async start`` process (run as ``python -m cicada_async``) in a
network namespace of its own, with its own address in 192.0.2.0/24, joined to the others by a
veth pair to a bridge (see ``netns_hosts.py``).  No loopback anywhere: every link crosses the
bridge.  Checked here:

* set-up with real host addresses, plain and with TLS (``credentials`` + ``--identity`` /
  ``--trusted``), each player's links going to the others' 192.0.2.x addresses;
* a partition in the middle of a computation (a player's interface goes down: no FIN, no
  RST): the others detect it by their deadline, revoke, shrink without it and carry on; when
  its link comes back, the cut-off player gets ``Excluded``, never a communicator of its own.
  A partition that outlasts the cut-off player's own shrink would leave it a communicator of
  its own (no quorum, as in ULFM); with ``shrink(min_survivors=3)`` it gets Excluded instead.
  The same set-up with the player SIGKILLed instead, for the recovery time;
* a slow link: with ``tc ... netem`` when the kernel has it, otherwise (and said so in the
  skip reason and the output) with links delayed inside one process, the speed-up of gathering
  100 ``field_multiply`` over awaiting them one by one at 10 ms round-trip time.

The tests skip, with the reason, when not root or when namespaces cannot be made; namespaces
(and with them the bridge and the veth pairs) are removed afterwards, even on failure.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from netns_hosts import Network, NetworkUnavailable, netem_available

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[1]
PORT = 25000  # every namespace has ports of its own: no clash with anything else
STARTUP = "30"


class Players:
    """Player processes in a :class:`Network`; every one still running is killed on close."""

    def __init__(self, network: Network, directory: Path) -> None:
        self.network = network
        self.directory = directory
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.environment = dict(os.environ)
        self.environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

    def start(self, rank: int, options: list[str], program: Path, arguments: list[str]) -> None:
        """``cicada-async start --rank RANK ... program arguments`` in player ``rank``'s namespace."""
        root = f"tcp://{self.network.address(0)}:{PORT}"
        command = [sys.executable, "-m", "cicada_async", "start", "--rank", str(rank),
                   "--world-size", str(self.network.size), "--root-address", root,
                   "--startup-timeout", STARTUP]
        if rank > 0:  # rank 0 listens on the root address
            command += ["--address", f"tcp://{self.network.address(rank)}"]
        command += [*options, str(program), *arguments]
        with open(self.directory / f"out-{rank}.txt", "wb") as out, \
                open(self.directory / f"err-{rank}.txt", "wb") as err:
            self.processes[rank] = subprocess.Popen(self.network.command(rank, command), env=self.environment,
                                                    cwd=self.directory, stdout=out, stderr=err)

    def output(self, rank: int) -> tuple[str, str]:
        return ((self.directory / f"out-{rank}.txt").read_text(),
                (self.directory / f"err-{rank}.txt").read_text())

    def wait(self, timeout: float) -> dict[int, int]:
        """Every player's exit code (killing those still running after ``timeout``)."""
        deadline = time.monotonic() + timeout
        codes = {}
        for rank, process in self.processes.items():
            try:
                codes[rank] = process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                codes[rank] = process.wait()
        return codes

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def network_of(tmp_path: Path) -> Iterator[Callable[[int], tuple[Network, Players]]]:
    """``network_of(size)`` -> (network, players); all torn down afterwards, even on failure."""
    made: list[tuple[Network, Players]] = []

    def make(size: int) -> tuple[Network, Players]:
        reason = Network.unavailable()
        if reason is not None:
            pytest.skip(reason)
        network = Network(size)
        players = Players(network, tmp_path)
        made.append((network, players))
        try:
            network.create()
        except NetworkUnavailable as exc:
            pytest.skip(f"cannot make network namespaces here: {exc}")
        return network, players

    try:
        yield make
    finally:
        for network, players in made:
            try:
                players.close()  # first: a namespace outlives its name while a process runs in it
            finally:
                network.close()


# -- 1. set-up with real host addresses -----------------------------------------------------------
ALLGATHER = textwrap.dedent("""
    import json

    async def main(communicator):
        ranks = await communicator.allgather(communicator.rank)
        peers = {peer: link.transport.get_extra_info("peername")[0]
                 for peer, link in communicator.endpoint.links.items()}
        print(json.dumps({"rank": communicator.rank, "ranks": ranks, "peers": peers}))
""")


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_setup_with_host_addresses(network_of, tmp_path: Path, tls: bool) -> None:
    network, players = network_of(3)
    program = tmp_path / "allgather.py"
    program.write_text(ALLGATHER)
    options = ["--token", "netns"]
    if tls:
        for rank in range(3):
            made = subprocess.run([sys.executable, "-m", "cicada_async", "credentials", "--rank", str(rank)],
                                  cwd=tmp_path, env=players.environment, capture_output=True, text=True)
            assert made.returncode == 0, made.stderr
    for rank in range(3):
        extra = (["--identity", f"player-{rank}.pem", "--trusted", "player-0.cert", "player-1.cert",
                  "player-2.cert"] if tls else [])
        players.start(rank, options + extra, program, [])
    codes = players.wait(60)
    for rank in range(3):
        out, err = players.output(rank)
        assert codes[rank] == 0, err
        result = json.loads(out)
        assert result["ranks"] == [0, 1, 2]
        # Every link goes to the peer's own host address, across the bridge.
        assert result["peers"] == {str(peer): network.address(peer) for peer in range(3) if peer != rank}


# -- 2. a partition (or a SIGKILL) in the middle of a computation ---------------------------------
LOOP = textwrap.dedent("""
    import asyncio, json, os, sys, time
    from cicada_async import CommunicatorError, Excluded

    async def main(communicator):
        path, iterations, shrink_timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
        quorum = int(sys.argv[4])
        world_rank = communicator.rank
        record = {"rank": world_rank, "pid": os.getpid(), "done": [], "errors": [], "shrinks": [],
                  "outcome": None}

        def dump():
            with open(path + ".tmp", "w") as file:
                json.dump(record, file)
            os.replace(path + ".tmp", path)

        comm = communicator
        comm.timeout = 1.0
        generation = 0
        shrunk_at = None
        for iteration in range(iterations):
            try:
                members = await comm.allgather(world_rank)
                now = time.time()
                record["done"].append([iteration, members, now])
                if shrunk_at is not None:
                    record["shrinks"][-1]["first_collective"] = now
                    shrunk_at = None
            except CommunicatorError as exc:
                record["errors"].append([type(exc).__name__, iteration, time.time(), str(exc)])
                while True:  # recover (again if a player fails during the recovery)
                    try:
                        if isinstance(exc, Excluded):
                            raise exc
                        await comm.revoke()
                        new, oldranks = await comm.shrink(name=f"world-{generation + 1}", timeout=shrink_timeout,
                                                          min_survivors=quorum)
                        break
                    except Excluded as excluded:
                        record["errors"].append(["Excluded", iteration, time.time(), str(excluded)])
                        record["outcome"] = "excluded"
                        dump()
                        return
                    except CommunicatorError as again:
                        exc = again
                        record["errors"].append([type(exc).__name__, iteration, time.time(), str(exc)])
                generation += 1
                shrunk_at = time.time()
                record["shrinks"].append({"iteration": iteration, "oldranks": oldranks,
                                          "size": new.world_size, "at": shrunk_at})
                await comm.free()
                comm = new
            dump()
            await asyncio.sleep(0.05)
        record["outcome"] = "finished"
        dump()
""")

ITERATIONS = 40
VICTIM = 3
RECEIVE_TIMEOUT = 1.0  # the players' per-receive deadline (comm.timeout)
# The shrink's deadline.  A cut-off player gives up on one coordinator after another, about
# one shrink timeout each, then forms a group of its own (see the long-partition test): twice
# the receive timeout leaves it ~4 s after the survivors' decision to hear it is excluded.
SHRINK_TIMEOUT = 2.0


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _wait_for(what: str, condition: Callable[[], bool], timeout: float, players: Players) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            details = {rank: players.output(rank)[1][-2000:] for rank in players.processes}
            pytest.fail(f"timed out waiting for {what}; players' stderr: {details}")
        time.sleep(0.02)


def _run_fault(network_of, tmp_path: Path, fault: str, quorum: int = 1
               ) -> tuple[list[dict[str, Any]], float, float | None, dict[int, int]]:
    """Run LOOP on 4 players and inflict ``fault`` on player VICTIM after five iterations.

    ``fault`` is "sigkill", "partition" (its link comes back once the survivors have run a
    collective on the shrunk communicator) or "long partition" (it comes back only once the
    cut-off player has given up on the others too).  Returns every player's record, the time
    of the fault, the time the link came back (None after a SIGKILL) and the exit codes.
    """
    network, players = network_of(4)
    if fault != "sigkill":
        # Retransmissions back off exponentially: after a 2 s cut the next one may be ~2 s
        # away.  Capping the RTO at 1 s (the kernel's minimum cap) bounds how long a healed
        # link stays silent, as a host tuned for a LAN would.
        network.cap_retransmission_timeout(1000)
    program = tmp_path / "loop.py"
    program.write_text(LOOP)
    paths = [tmp_path / f"record-{rank}.json" for rank in range(4)]
    for rank in range(4):
        players.start(rank, ["--token", "netns", "--timeout", str(RECEIVE_TIMEOUT)], program,
                      [str(paths[rank]), str(ITERATIONS), str(SHRINK_TIMEOUT), str(quorum)])
    survivors = [rank for rank in range(4) if rank != VICTIM]

    def progressed() -> bool:
        record = _read(paths[0])
        return record is not None and len(record["done"]) >= 5

    _wait_for("five iterations", progressed, 60, players)
    cut = time.time()
    if fault == "sigkill":
        players.processes[VICTIM].send_signal(signal.SIGKILL)
    else:
        network.cut(VICTIM)

    def recovered() -> bool:
        records = [_read(paths[rank]) for rank in survivors]
        return all(record is not None and any("first_collective" in shrink for shrink in record["shrinks"])
                   for record in records)

    _wait_for("the survivors' first collective after the shrink", recovered, 30, players)
    restored = None
    if fault != "sigkill":
        if fault == "long partition":
            def gave_up() -> bool:
                record = _read(paths[VICTIM])
                return record is not None and bool(record["shrinks"] or record["outcome"])

            _wait_for("the cut-off player's shrink", gave_up, 30, players)
        network.restore(VICTIM)
        restored = time.time()
    codes = players.wait(60)
    records = [_read(path) for path in paths]
    for rank in range(4):
        assert records[rank] is not None or (rank == VICTIM and fault == "sigkill"), players.output(rank)
    return records, cut, restored, codes  # type: ignore[return-value]


def _check_survivors(records: list[dict[str, Any]], codes: dict[int, int], cut: float) -> float:
    """The survivors shrank once, to the three of them, and carried on; returns the recovery
    time (from the fault to the last survivor's first collective on the shrunk communicator)."""
    survivors = [rank for rank in range(4) if rank != VICTIM]
    recovery = []
    for rank in survivors:
        record = records[rank]
        assert codes[rank] == 0 and record["outcome"] == "finished", record
        assert [(shrink["oldranks"], shrink["size"]) for shrink in record["shrinks"]] == [([0, 1, 2], 3)], record
        before = [done for done in record["done"] if done[2] < cut]
        after = [done for done in record["done"] if done[2] > record["shrinks"][0]["at"]]
        assert len(before) >= 5 and all(members == [0, 1, 2, 3] for _, members, _ in before), record
        assert len(after) >= 5 and all(members == survivors for _, members, _ in after), record
        assert record["errors"], record  # they did see the failure (which error depends on timing)
        recovery.append(record["shrinks"][0]["first_collective"] - cut)
    return max(recovery)


def _check_excluded(victim: dict[str, Any], code: int) -> None:
    """The cut-off player was told it is excluded and never got a communicator of its own."""
    assert code == 0, victim
    assert victim["outcome"] == "excluded" and victim["shrinks"] == [], victim
    assert all(members == [0, 1, 2, 3] for _, members, _ in victim["done"]), victim


def test_partition_in_the_middle_of_a_computation(network_of, tmp_path: Path) -> None:
    """A player's link goes silent (no FIN, no RST): the others find out by their deadline,
    shrink without it and carry on; once its link is back, it gets Excluded."""
    records, cut, restored, codes = _run_fault(network_of, tmp_path, "partition")
    recovery = _check_survivors(records, codes, cut)
    for rank in range(4):
        if rank != VICTIM:  # nothing closed: they found out by their deadline
            assert records[rank]["errors"][0][0] in ("Timeout", "Revoked"), records[rank]
    victim = records[VICTIM]
    _check_excluded(victim, codes[VICTIM])
    assert restored is not None
    told = victim["errors"][-1][2] - restored
    print(f"\npartition: survivors' first collective on the shrunk communicator {recovery:.2f} s after the cut "
          f"(receive timeout {RECEIVE_TIMEOUT:g} s, shrink timeout {SHRINK_TIMEOUT:g} s); the cut-off player "
          f"saw {[error[0] for error in victim['errors']]}, Excluded {told:.2f} s after its link came back "
          f"({restored - cut:.2f} s after the cut)")


def test_long_partition_with_a_quorum_gives_the_cut_off_player_no_communicator(network_of, tmp_path: Path) -> None:
    """The link comes back only after the cut-off player's own shrink has given up on all three
    others.  Without a quorum it would agree with itself alone, as in ULFM (tests/test_fault_tolerance.py
    shows it in one process); with ``min_survivors=3`` it gets Excluded and the three go on."""
    records, cut, _, codes = _run_fault(network_of, tmp_path, "long partition", quorum=3)
    _check_survivors(records, codes, cut)
    victim = records[VICTIM]
    print(f"\nlong partition, min_survivors=3: the cut-off player's shrinks {victim['shrinks']}, "
          f"outcome {victim['outcome']}, last error {victim['errors'][-1][3][:120]}")
    _check_excluded(victim, codes[VICTIM])
    assert "min_survivors=3" in victim["errors"][-1][3], victim


def test_sigkill_in_the_middle_of_a_computation(network_of, tmp_path: Path) -> None:
    """The same set-up with the player SIGKILLed: its links close, the others fail at once."""
    records, cut, _, codes = _run_fault(network_of, tmp_path, "sigkill")
    recovery = _check_survivors(records, codes, cut)
    assert codes[VICTIM] == -signal.SIGKILL
    print(f"\nSIGKILL: survivors' first collective on the shrunk communicator {recovery:.3f} s after the kill "
          f"(the loop sleeps 50 ms between iterations)")


# -- 3. a slow link ---------------------------------------------------------------------------
MULTIPLY = textwrap.dedent("""
    import asyncio, json, time
    import numpy
    from cicada_async.encoding import Identity
    from cicada_async.shamir import ShamirProtocolSuite

    async def measure(communicator, count=100):
        \"\"\"Seconds for ``count`` field_multiply awaited one by one, then for ``count`` gathered.\"\"\"
        protocol = ShamirProtocolSuite(communicator, threshold=2)
        a = await protocol.field_uniform(shape=(4,))
        b = await protocol.field_uniform(shape=(4,))
        await communicator.barrier()
        start = time.perf_counter()
        one_by_one = [await protocol.field_multiply(a, b) for _ in range(count)]
        sequential = time.perf_counter() - start
        await communicator.barrier()
        start = time.perf_counter()
        gathered = await asyncio.gather(*(protocol.field_multiply(a, b) for _ in range(count)))
        concurrent = time.perf_counter() - start
        first, last = [await protocol.reveal(share, encoding=Identity()) for share in (one_by_one[0], gathered[-1])]
        assert numpy.array_equal(first, last)
        return sequential, concurrent

    async def main(communicator):
        print(json.dumps(await measure(communicator)))
""")
ONE_WAY = 0.005  # seconds each way: a 10 ms round-trip time


class DelayedTransport:
    """Wraps a transport so that what is written leaves ``delay`` seconds later, in order."""

    def __init__(self, transport: asyncio.BaseTransport, delay: float) -> None:
        self._transport: Any = transport
        self._delay = delay
        self._loop = asyncio.get_running_loop()
        self._queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self._handle: asyncio.TimerHandle | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._queue.append((self._loop.time() + self._delay, bytes(data)))
        if self._handle is None:
            self._handle = self._loop.call_at(self._queue[0][0], self._flush)

    def _flush(self) -> None:
        self._handle = None
        now = self._loop.time() + 1e-6
        while self._queue and self._queue[0][0] <= now:
            data = self._queue.popleft()[1]
            if not self._transport.is_closing():
                self._transport.write(data)
        if self._queue:
            self._handle = self._loop.call_at(self._queue[0][0], self._flush)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _delayed_in_process() -> tuple[float, float]:
    """MULTIPLY's measure() on 3 players in this process, every link delayed ONE_WAY each way."""
    from cicada_async.testing import World

    program: dict[str, Any] = {}
    exec(compile(MULTIPLY, "multiply.py", "exec"), program)

    async def run() -> list[tuple[float, float]]:
        async with World(3, timeout=10) as world:
            for endpoint in world.endpoints:
                for link in endpoint.links.values():
                    link.transport = DelayedTransport(link.transport, ONE_WAY)  # type: ignore[assignment]
            return await world.run(program["measure"])

    results = asyncio.run(run())
    return max(result[0] for result in results), max(result[1] for result in results)


def _delayed_by_netem(network_of, tmp_path: Path) -> tuple[float, float]:  # pragma: no cover - needs netem
    """MULTIPLY on 3 players in namespaces, netem delaying every player's packets ONE_WAY."""
    network, players = network_of(3)
    network.netem(ONE_WAY * 1000)
    program = tmp_path / "multiply.py"
    program.write_text(MULTIPLY)
    for rank in range(3):
        players.start(rank, ["--token", "netns", "--timeout", "10"], program, [])
    codes = players.wait(60)
    results = []
    for rank in range(3):
        out, err = players.output(rank)
        assert codes[rank] == 0, err
        results.append(json.loads(out))
    return max(result[0] for result in results), max(result[1] for result in results)


def test_slow_link_gather_beats_a_sequence(network_of, tmp_path: Path) -> None:
    """At 10 ms RTT a small computation completes, and 100 products gathered finish more than
    5x sooner than 100 awaited one by one (a sequence pays a round trip per product).

    Over namespaces with ``tc ... netem delay`` on every player's interface when the kernel has
    netem; otherwise (this machine's kernel has none) over links delayed inside one process,
    and the output says which.
    """
    missing = Network.unavailable() or netem_available()
    if missing is None:  # pragma: no cover - depends on the kernel
        how = "netem, network namespaces"
        sequential, concurrent = _delayed_by_netem(network_of, tmp_path)
    else:
        how = f"links delayed in one process (no netem: {missing})"
        sequential, concurrent = _delayed_in_process()
    speedup = sequential / concurrent
    print(f"\nslow link, {ONE_WAY * 1000:g} ms each way ({how}): 100 field_multiply one by one "
          f"{sequential * 1000:.0f} ms, gathered {concurrent * 1000:.0f} ms, speed-up {speedup:.1f}x")
    assert speedup > 5
