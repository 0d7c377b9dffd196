"""A running secret total that survives players dying: the fault-recovery tutorial program.

Five players keep a Shamir-shared running total.  Each iteration one player (in turn)
secret-shares an increment of 1, everyone adds it to the total and the total is revealed.
Every player has a 5% chance per iteration of killing itself with SIGKILL (numpy generator
seeded ``42 + rank``, so the run is reproducible).  When an operation fails, the survivors
revoke the communicator, agree on who is left with ``shrink``, rebuild the protocol suite
with the survivors' share indices (so the old shares still open), and carry on; if another
player fails during the recovery itself, they recover again.  They stop
when fewer than ``threshold`` players remain, since the secret could no longer be revealed.

    python examples/fault_recovery.py            # the tutorial run
    python examples/fault_recovery.py --players 8 --pfail 0.1 --seed 7
"""

from __future__ import annotations

import argparse
import logging
import os
import signal

import numpy

from cicada_async import AsyncSocketCommunicator, CommunicatorError, Logger
from cicada_async.shamir import ShamirBasicProtocolSuite


async def main(communicator, pfail=0.05, seed=42, iterations=100, threshold=2):
    log = Logger(logging.getLogger(), communicator=communicator)
    generator = numpy.random.default_rng(seed + communicator.rank)
    protocol = ShamirBasicProtocolSuite(communicator=communicator, threshold=threshold)
    generation = 0
    totals = []  # (iteration, total) for every total this player saw revealed

    total_share = await protocol.share(src=0, secret=numpy.array(0), shape=())
    for iteration in range(iterations):
        # Randomly die, between operations.
        if generator.uniform() < pfail:
            os.kill(os.getpid(), signal.SIGKILL)
        try:
            contributor = iteration % communicator.world_size
            increment = numpy.array(1) if communicator.rank == contributor else None
            increment_share = await protocol.share(src=contributor, secret=increment, shape=())
            total_share = protocol.add(total_share, increment_share)
            total = await protocol.reveal(total_share)
            totals.append((iteration, float(total)))
            await log.info(f"Iteration {iteration} comm {communicator.name} total: {total}", src=0)
        except Exception as e:
            # Error path: log locally, without communicating.
            log.sync = False
            await log.error(f"Iteration {iteration} comm {communicator.name} player {communicator.rank} "
                            f"exception: {e}")
            # Recover; a player may fail during the recovery too, and then we recover again.
            indices = protocol.indices
            while True:
                await communicator.revoke()
                generation += 1
                newcommunicator, oldranks = await communicator.shrink(name=f"world-{generation}")
                oldcommunicator, communicator = communicator, newcommunicator
                indices = indices[oldranks]
                await oldcommunicator.free()
                log = Logger(logging.getLogger(), communicator)
                try:
                    if communicator.world_size < threshold:
                        await log.info(f"Iteration {iteration} not enough players to continue.", src=0)
                        return totals
                    await log.info(f"Iteration {iteration} shrank comm {oldcommunicator.name} with "
                                   f"{oldcommunicator.world_size} players to comm {communicator.name} with "
                                   f"{communicator.world_size} players.", src=0)
                    break
                except CommunicatorError as again:
                    log.sync = False
                    await log.error(f"Iteration {iteration} comm {communicator.name} player "
                                    f"{communicator.rank} exception while recovering: {again}")
            protocol = ShamirBasicProtocolSuite(communicator, threshold=threshold, indices=indices)
    return totals


def _at_least(minimum: int):
    """An argparse type: an integer >= ``minimum`` (a usage error otherwise, not a traceback)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Secret running total with players dying at random.")
    parser.add_argument("--players", type=_at_least(2), default=5, help="number of players (at least 2)")
    parser.add_argument("--pfail", type=_probability, default=0.05,
                        help="each player's chance of dying per iteration (0 to 1)")
    parser.add_argument("--seed", type=_at_least(0), default=42, help="a non-negative integer")
    parser.add_argument("--iterations", type=_at_least(0), default=100)
    options = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    results = AsyncSocketCommunicator.run(
        world_size=options.players, fn=main, name="world-0",
        kwargs=dict(pfail=options.pfail, seed=options.seed, iterations=options.iterations))
    if len(results) == 1 and options.players > 1:  # started once per rank by mpiexec, srun...
        outcome = "survived" if isinstance(results[0], list) else f"ended: {results[0]!r}"
        print(f"this player {outcome}.")
        raise SystemExit(0)
    survivors = [result for result in results if isinstance(result, list)]
    seen = {}
    for totals in survivors:
        for iteration, total in totals:
            seen.setdefault(iteration, set()).add(total)
    consistent = all(len(values) == 1 for values in seen.values())
    print(f"{len(survivors)} of {options.players} players survived; every total they revealed "
          f"{'agrees' if consistent else 'DISAGREES'} across survivors.")
