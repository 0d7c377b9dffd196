"""Players embedded in an existing asyncio service, answering several clients at once.

Each player is a small asyncio TCP service that also holds a private number.  A client sends
the same request line, ``<request id> sum``, to every player's service; each player's
handler runs a secure sum of the private numbers with the other players (over the MPC
communicator) and answers with the total.  Nobody learns another player's number.

Requests from several clients are served concurrently, with no lock: each handler runs its
request under ``with cicada_async.scope(("request", request_id)):``, so the request's
operations meet the same request's operations on the other players, even though the
requests reach the players in different orders (the demo makes sure they do).

The players join with ``await AsyncSocketCommunicator.connect(...)`` on the service's own
event loop; the library never starts a loop or installs logging handlers of its own.

Run it all locally (three player processes and six concurrent clients)::

    python examples/embedded_service.py

or start each player yourself (e.g. on separate hosts) and ask with the same script::

    python examples/embedded_service.py --player 0 --world-size 3 --root tcp://127.0.0.1:25000 --port 26000
    python examples/embedded_service.py --player 1 --world-size 3 --root tcp://127.0.0.1:25000 --port 26001
    python examples/embedded_service.py --player 2 --world-size 3 --root tcp://127.0.0.1:25000 --port 26002
    python examples/embedded_service.py --ask 127.0.0.1:26000,127.0.0.1:26001,127.0.0.1:26002 --request r1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import sys

import numpy

import cicada_async
from cicada_async import AsyncSocketCommunicator
from cicada_async.shamir import ShamirBasicProtocolSuite

log = logging.getLogger("embedded_service")
SCRIPT = os.path.abspath(__file__)


async def secure_sum(protocol: ShamirBasicProtocolSuite, private: float) -> float:
    """Every player shares its private number; the sum of the shares is revealed."""
    comm = protocol.communicator
    shares = await asyncio.gather(*(
        protocol.share(src=src, secret=numpy.array(private) if comm.rank == src else None, shape=())
        for src in range(comm.world_size)))
    total = shares[0]
    for share in shares[1:]:
        total = protocol.add(total, share)
    return float(await protocol.reveal(total))


async def serve(comm: AsyncSocketCommunicator, private: float, port: int) -> list[str]:
    """A TCP service answering ``<request id> sum`` and ``<request id> quit``, each request in
    its own keyed scope; returns the request ids in the order this player handled them."""
    protocol = ShamirBasicProtocolSuite(comm, threshold=2)
    stopped = asyncio.Event()
    handled: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await asyncio.wait_for(reader.readline(), 10)).decode().split()
            if len(line) != 2:
                answer = "expected: <request id> sum|quit"
            else:
                request, command = line
                handled.append(request)
                # The request's operations are numbered under its id, whatever else runs now.
                with cicada_async.scope(("request", request)):
                    if command == "sum":
                        answer = f"{await secure_sum(protocol, private)}"
                    elif command == "quit":
                        await comm.barrier()  # every player got the quit: stop together
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
    log.info("player %s serving on 127.0.0.1:%s", comm.rank, bound)
    print(f"serving on 127.0.0.1:{bound}", flush=True)
    async with server:
        await stopped.wait()
    return handled


async def player(rank: int, world_size: int, root: str, port: int, private: float) -> list[str]:
    comm = await AsyncSocketCommunicator.connect(world_size=world_size, rank=rank, root_address=root,
                                                 token="embedded-example", startup_timeout=30)
    async with comm:
        handled = await serve(comm, private, port)
    await comm.endpoint.aclose(5)
    return handled


async def ask(addresses: list[tuple[str, int]], request: str, command: str, *, shuffle: random.Random | None = None,
              ) -> list[str]:
    """Send one request to every player's service (in a shuffled order, with small random
    delays, when ``shuffle`` is given); return their answers in player order."""

    async def one(index: int, delay: float) -> str:
        await asyncio.sleep(delay)
        reader, writer = await asyncio.open_connection(*addresses[index])
        writer.write(f"{request} {command}\n".encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.readline(), 30)
        writer.close()
        return answer.decode().strip()

    delays = [shuffle.uniform(0, 0.05) if shuffle else 0.0 for _ in addresses]
    return list(await asyncio.gather(*(one(index, delays[index]) for index in range(len(addresses)))))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def demo(world_size: int, clients: int) -> None:
    """Start the players as processes, then act as several clients at once."""
    root = f"tcp://127.0.0.1:{free_port()}"
    privates = [float(10 * (rank + 1)) for rank in range(world_size)]
    ports = [free_port() for _ in range(world_size)]
    players = [
        await asyncio.create_subprocess_exec(
            sys.executable, SCRIPT, "--player", str(rank), "--world-size", str(world_size), "--root", root,
            "--port", str(ports[rank]), "--private", str(privates[rank]), stdout=asyncio.subprocess.PIPE)
        for rank in range(world_size)
    ]
    addresses = [("127.0.0.1", port) for port in ports]
    try:
        for process in players:  # each says "serving" once its service listens
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            if not line.startswith(b"serving"):
                raise RuntimeError(f"a player did not start: {line!r}")
        rng = random.Random(2026)
        answers = await asyncio.gather(*(ask(addresses, f"client-{i}", "sum", shuffle=rng) for i in range(clients)))
        for i, answer in enumerate(answers):
            print(f"client-{i} asked 'sum', the players answered: {', '.join(answer)}")
        print(f"(the private numbers were {privates}; their sum is {sum(privates)})")
        await ask(addresses, "shutdown", "quit")
        for rank, process in enumerate(players):
            out, _ = await asyncio.wait_for(process.communicate(), 30)
            order = [request for request in json.loads(out) if request != "shutdown"]
            print(f"player {rank} handled the requests in this order: {' '.join(order)}")
    finally:
        for process in players:
            with contextlib.suppress(ProcessLookupError):
                process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--player", type=int, help="run one player with this rank (default: local demo)")
    parser.add_argument("--world-size", type=int, default=3)
    parser.add_argument("--clients", type=int, default=6, help="concurrent clients in the local demo")
    parser.add_argument("--root", help="rank 0's address, e.g. tcp://127.0.0.1:25000")
    parser.add_argument("--port", type=int, default=0, help="this player's service port")
    parser.add_argument("--private", type=float, default=None, help="this player's private number")
    parser.add_argument("--ask", help="ask the players' services host:port,host:port,... (a client)")
    parser.add_argument("--request", default="r1", help="the request id, with --ask")
    parser.add_argument("--command", default="sum", help="sum or quit, with --ask")
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s:%(name)s:%(message)s")
    if options.ask:
        addresses = [(host, int(port)) for host, port in (item.rsplit(":", 1) for item in options.ask.split(","))]
        print(", ".join(asyncio.run(ask(addresses, options.request, options.command))))
        return
    if options.player is None:
        asyncio.run(demo(options.world_size, options.clients))
        return
    if options.root is None:
        parser.error("--root is required with --player")
    private = options.private if options.private is not None else float(options.player + 1)
    handled = asyncio.run(player(options.player, options.world_size, options.root, options.port, private))
    print(json.dumps(handled))


if __name__ == "__main__":
    main()
