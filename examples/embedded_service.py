"""Players embedded in an existing asyncio service.

Each player is a small asyncio TCP service that also holds a private number.  Player 0 is
the front door: when a client connects and sends ``sum``, its handler tells the other players
(over the MPC communicator) to run a secure sum, takes part in it, and answers the client
with the total.  Nobody, player 0 included, learns another player's number.

The players join with ``await AsyncSocketCommunicator.connect(...)`` on the service's own
event loop; the library never starts a loop or installs logging handlers of its own.

Run it all locally (three player processes and a client)::

    python examples/embedded_service.py

or start each player yourself (e.g. on separate hosts) and talk to player 0 with ``nc``::

    python examples/embedded_service.py --player 0 --world-size 3 --root tcp://127.0.0.1:25000 --port 26000
    python examples/embedded_service.py --player 1 --world-size 3 --root tcp://127.0.0.1:25000
    python examples/embedded_service.py --player 2 --world-size 3 --root tcp://127.0.0.1:25000
    echo sum | nc 127.0.0.1 26000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys

import numpy

from cicada_async import AsyncSocketCommunicator
from cicada_async.shamir import ShamirBasicProtocolSuite

log = logging.getLogger("embedded_service")
IDLE = 3600.0  # how long follower players wait for the next request before giving up
SCRIPT = os.path.abspath(__file__)


async def secure_sum(protocol: ShamirBasicProtocolSuite, private: float) -> float:
    """Every player shares its private number; the sum of the shares is revealed."""
    comm = protocol.communicator
    total = None
    for src in range(comm.world_size):
        secret = numpy.array(private) if comm.rank == src else None
        share = await protocol.share(src=src, secret=secret, shape=())
        total = share if total is None else protocol.add(total, share)
    return float(await protocol.reveal(total))


async def serve_front(comm: AsyncSocketCommunicator, private: float, port: int,
                      ready: asyncio.Future[int] | None = None) -> None:
    """Player 0: a TCP service whose handler runs an MPC exchange per request."""
    protocol = ShamirBasicProtocolSuite(comm, threshold=2)
    exchange = asyncio.Lock()  # one MPC exchange at a time: the others follow in order
    stopped = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            command = (await asyncio.wait_for(reader.readline(), 10)).decode().strip()
            async with exchange:
                if command == "sum":
                    await comm.broadcast(src=0, value="sum")
                    answer = f"{await secure_sum(protocol, private)}"
                elif command == "quit":
                    await comm.broadcast(src=0, value="quit")
                    answer = "bye"
                    stopped.set()
                else:
                    answer = f"unknown command {command!r} (try: sum, quit)"
            writer.write(answer.encode() + b"\n")
            await writer.drain()
        except Exception as error:  # keep serving other clients
            log.exception("request failed: %s", error)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    bound = server.sockets[0].getsockname()[1]
    log.info("player 0 serving on 127.0.0.1:%s", bound)
    if ready is not None:
        ready.set_result(bound)
    async with server:
        await stopped.wait()


async def follow(comm: AsyncSocketCommunicator, private: float) -> None:
    """Other players: run an exchange whenever player 0 asks for one."""
    protocol = ShamirBasicProtocolSuite(comm, threshold=2)
    while True:
        with comm.override(timeout=IDLE):
            command = await comm.broadcast(src=0, value=None)
        if command == "quit":
            return
        await secure_sum(protocol, private)


async def player(rank: int, world_size: int, root: str, port: int, private: float,
                 ready: asyncio.Future[int] | None = None) -> None:
    comm = await AsyncSocketCommunicator.connect(world_size=world_size, rank=rank, root_address=root,
                                                 token="embedded-example", startup_timeout=30)
    async with comm:
        if rank == 0:
            await serve_front(comm, private, port, ready)
        else:
            await follow(comm, private)
    await comm.endpoint.aclose(5)


async def ask(port: int, command: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(command.encode() + b"\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.readline(), 30)
    writer.close()
    return answer.decode().strip()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def demo(world_size: int) -> None:
    """Start the followers as processes, run player 0 in this loop, and act as a client."""
    root = f"tcp://127.0.0.1:{free_port()}"
    privates = [float(10 * (rank + 1)) for rank in range(world_size)]
    followers = [
        await asyncio.create_subprocess_exec(
            sys.executable, SCRIPT, "--player", str(rank), "--world-size", str(world_size),
            "--root", root, "--private", str(privates[rank]))
        for rank in range(1, world_size)
    ]
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    front = asyncio.ensure_future(player(0, world_size, root, 0, privates[0], ready))
    try:
        port = await asyncio.wait_for(asyncio.shield(ready), 60)
        for _ in range(2):
            print(f"client asked 'sum', service answered: {await ask(port, 'sum')}")
        print(f"(the private numbers were {privates}; their sum is {sum(privates)})")
        await ask(port, "quit")
        await asyncio.wait_for(front, 30)
        for process in followers:
            await asyncio.wait_for(process.wait(), 30)
    finally:
        front.cancel()
        for process in followers:
            with contextlib.suppress(ProcessLookupError):
                process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--player", type=int, help="run one player with this rank (default: local demo)")
    parser.add_argument("--world-size", type=int, default=3)
    parser.add_argument("--root", help="rank 0's address, e.g. tcp://127.0.0.1:25000")
    parser.add_argument("--port", type=int, default=0, help="player 0's service port")
    parser.add_argument("--private", type=float, default=None, help="this player's private number")
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s:%(name)s:%(message)s")
    if options.player is None:
        asyncio.run(demo(options.world_size))
        return
    if options.root is None:
        parser.error("--root is required with --player")
    private = options.private if options.private is not None else float(options.player + 1)
    asyncio.run(player(options.player, options.world_size, options.root, options.port, private))


if __name__ == "__main__":
    main()
