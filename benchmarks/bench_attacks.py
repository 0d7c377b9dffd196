"""What strangers and hostile peers cost an honest world (SPEC "Strangers and hostile peers").

Each scenario runs in a fresh process (so its peak memory is its own): three honest players in
one event loop form a world by rendezvous on localhost while an attacker in another process
plays the stranger with raw sockets; or, once formed (``testing.World``), player 1 floods
player 0 with frames of many small values.  Reported per scenario: whether and how fast the
world formed, the victim process's peak memory growth, the worst event-loop stall and the
descriptors it held, and for the hostile-peer scenarios when a receive deadline fired.
The ``none`` scenario is the baseline that runs beside the attacks.

With ``--before DIR`` every scenario also runs against the library in DIR (a checkout of an
older commit, e.g. ``git worktree add /tmp/old 0926cb0``), in the same run.

    python benchmarks/bench_attacks.py [--full] [--before /tmp/old]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import socket
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = ["none", "strangers", "join-flood", "idle-flood", "half-hellos", "unreceived-values",
             "received-value"]
WORLD = 3


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Ticker:
    """The worst gap between runs of a 1 ms ticker (counted up to the stop, too)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.fds = open_fds()
        self._last = time.perf_counter()
        self._task = asyncio.get_running_loop().create_task(self._tick())

    def _note(self) -> None:
        now = time.perf_counter()
        self.worst = max(self.worst, now - self._last)
        self._last = now

    async def _tick(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(0.001)
            self._note()
            ticks += 1
            if ticks % 20 == 0:
                self.fds = max(self.fds, open_fds())

    def stop(self) -> float:
        self._note()
        self._task.cancel()
        return self.worst


# -- the stranger (another process, raw blocking sockets) -------------------------------------

def join_bytes(handshake: Any, framing: Any, **changes: Any) -> bytes:
    fields = dict(name="world", world_size=WORLD, rank=1, to=0, token=handshake.token_digest("secret"),
                  address="tcp://127.0.0.1:9")
    fields.update(changes)
    return bytes(handshake.hello_frame(handshake.HelloType.JOIN, handshake.join_message(**fields)))


def attack(kind: str, host: str, port: int, full: bool, conn: Any) -> None:
    """Run in the attacker's process: open the connections, tell the parent, hold them until told."""
    from cicada_async._core import codec, framing, handshake

    sockets: list[socket.socket] = []

    def connect(data: bytes = b"") -> None:
        try:
            sock = socket.create_connection((host, port), timeout=5)
            if data:
                sock.sendall(data)
            sockets.append(sock)
        except OSError:
            pass  # refused or reset: the victim dropped it (or its backlog is full)

    if kind == "strangers":
        for changes in (dict(world_size=WORLD + 1), dict(name="other"), dict(rank=WORLD + 5),
                        dict(token=handshake.token_digest("guess")), dict(rank=2, token=handshake.token_digest("g"))):
            connect(join_bytes(handshake, framing, **changes))
        connect(framing.encode_header(framing.Kind.HELLO, int(handshake.HelloType.JOIN), 0, 3) + b"\x63\x00\x00")
    elif kind == "join-flood":  # 100 JOINs of 1 MiB decoding to 200,000 values each
        encoded = codec.encode([{}] * 200_000)
        payload = b"".join(bytes(part) for part in encoded.parts)
        frame = framing.encode_header(framing.Kind.HELLO, int(handshake.HelloType.JOIN), 0, len(payload)) + payload
        for _ in range(100):
            connect(frame)
    elif kind == "idle-flood":
        for _ in range(1000 if full else 500):
            connect()
    elif kind == "half-hellos":  # a header claiming 1 MiB, then half of it
        head = framing.encode_header(framing.Kind.HELLO, int(handshake.HelloType.JOIN), 0, 1 << 20)
        for _ in range(300 if full else 150):
            connect(head + b"\x00" * (1 << 19))
    conn.send(len(sockets))
    conn.recv()  # the world formed (or failed): let go
    for sock in sockets:
        sock.close()


async def stranger_scenario(kind: str, full: bool) -> dict[str, Any]:
    from cicada_async import AsyncSocketCommunicator
    from cicada_async.communicator.connect import Timer, listen, rendezvous

    listeners = [await listen(address="tcp://127.0.0.1", rank=rank) for rank in range(WORLD)]
    root = listeners[0].address
    host, port = root[len("tcp://"):].rsplit(":", 1)
    base = rss_mib()
    ticker = Ticker()
    held = 0
    attacker = None
    parent = None
    if kind != "none":
        parent, child = multiprocessing.Pipe()
        attacker = multiprocessing.get_context("fork").Process(target=attack, args=(kind, host, int(port), full, child))
        attacker.start()
        held = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
    start = time.perf_counter()
    result: dict[str, Any] = {"connections": held}
    try:
        endpoints = await asyncio.gather(*(
            rendezvous(listener=listeners[rank], root_address=root, world_size=WORLD, rank=rank, token="secret",
                       timer=Timer(10)) for rank in range(WORLD)))
        comms = [AsyncSocketCommunicator(endpoint=endpoint, timeout=5) for endpoint in endpoints]
        await asyncio.gather(*(comm.allgather(comm.rank) for comm in comms))
        result["formed"] = f"{time.perf_counter() - start:.3f} s"
        result["held_fds"] = open_fds()  # the attacker's connections are all still open
        for endpoint in endpoints:
            endpoint.abort()
    except Exception as exc:  # what the old code did is the figure
        result["formed"] = f"no: {type(exc).__name__} after {time.perf_counter() - start:.1f} s"
    result["stall_ms"] = round(ticker.stop() * 1e3, 1)
    result["peak_mib"] = round(peak_rss_mib() - base, 1)
    result["fds"] = ticker.fds
    if parent is not None and attacker is not None:
        parent.send("done")
        attacker.join(10)
    for listener in listeners:
        listener.close()
    return result


# -- the hostile peer (authenticated: player 1 of an in-process world) ------------------------

async def hostile_scenario(kind: str, full: bool) -> dict[str, Any]:
    from cicada_async import CommunicatorError
    from cicada_async._core import codec, framing
    from cicada_async.communicator.connect import Limits
    from cicada_async.testing import World

    items = 16_700_000 if full else 2_000_000
    frames = 4 if kind == "unreceived-values" else 1
    cap = 2 << 30 if full else 256 << 20
    deadline = 10.0 if full or kind == "received-value" else 2.0
    value = [{}] * items
    encoded = codec.encode(value)  # the attacker's frame, built before the victim's memory is measured
    result: dict[str, Any] = {"frames": f"{frames} x {items:,} values ({encoded.nbytes / 2**20:.0f} MiB on the wire), "
                                        f"cap {cap >> 20} MiB"}
    async with World(3, limits=Limits(max_queued_bytes=cap)) as world:
        victim, attacker = world.comms[0], world.comms[1]
        base = rss_mib()
        world.stall(0)  # the attacker's frames are all written before the victim reads any
        sending = None
        if kind == "unreceived-values":  # raw frames on a tag nobody receives
            head = framing.header(int(framing.Kind.DATA), 0, 7, victim.comm_id, 0x5EED, encoded.nbytes)
            for _ in range(frames):
                world.link(1, 0).write(head, encoded.parts, encoded.nbytes)
        else:  # the attacker's own send (it encodes the value again)
            sending = asyncio.get_running_loop().create_task(attacker.send(value=value, dst=0, tag=7))
        await asyncio.sleep(0.1)
        ticker = Ticker()
        world.resume(0)
        victim.timeout = deadline
        start = time.perf_counter()
        try:
            if kind == "unreceived-values":
                await victim.recv(src=2, tag=1)  # never sent: the deadline must fire on time
                outcome = "received?"
            else:
                got = await victim.recv(src=1, tag=7)
                outcome = f"received {len(got):,} values"
        except CommunicatorError as exc:
            outcome = f"{type(exc).__name__}"
        elapsed = time.perf_counter() - start
        result["outcome"] = f"{outcome} at {elapsed:.2f} s (deadline {deadline:g} s)"
        result["stall_ms"] = round(ticker.stop() * 1e3, 1)
        result["peak_mib"] = round(peak_rss_mib() - base, 1)
        if sending is not None:
            sending.cancel()
    return result


def one(kind: str, full: bool) -> None:
    scenario = hostile_scenario if kind in ("unreceived-values", "received-value") else stranger_scenario
    print(json.dumps(asyncio.run(scenario(kind, full))))


def run_scenario(kind: str, full: bool, path: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=path)
    command = [sys.executable, os.path.abspath(__file__), "--scenario", kind] + (["--full"] if full else [])
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return {"formed": "no: the scenario ran over 300 s"}
    if done.returncode != 0 or not done.stdout.strip():
        return {"formed": f"no: exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help="the issue's sizes (16.7M-value frames, 2 GiB cap)")
    parser.add_argument("--before", help="also run every scenario against the library in this directory")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=SCENARIOS)
    args = parser.parse_args()
    if args.scenario:
        one(args.scenario, args.full)
        return
    builds = [("now", os.path.dirname(HERE))] + ([("before", os.path.abspath(args.before))] if args.before else [])
    print("| scenario | build | world formed | victim's peak memory growth | worst loop stall "
          "| descriptors: peak / once formed | detail |")
    print("|---|---|---|--:|--:|--:|---|")
    for kind in args.only:
        for label, path in builds:
            r = run_scenario(kind, args.full, path)
            formed = r.get("formed", r.get("outcome", ""))
            detail = r.get("frames", "") + (f"; {r['outcome']}" if "outcome" in r and "formed" in r else "")
            if "connections" in r:
                detail = f"{r['connections']} attacker connections open"
            fds = f"{r['fds']} / {r.get('held_fds', '-')}" if "fds" in r else ""
            print(f"| {kind} | {label} | {formed} | {r.get('peak_mib', '')} MiB | {r.get('stall_ms', '')} ms "
                  f"| {fds} | {detail} |", flush=True)


if __name__ == "__main__":
    main()
