"""Four local players add up their private numbers without revealing them.

Each player splits its number into random additive shares modulo 2**64 and hands one share to
each player (a scatter); every player adds the shares it received and the partial sums are
combined (an allgather).  Only the total is ever seen.  This uses the communicator alone;
see ``fault_recovery.py`` for the Shamir protocol suite and recovery from dead players.

    python examples/secret_sum.py
"""

from __future__ import annotations

import logging
import secrets

import numpy

from cicada_async import AsyncSocketCommunicator

MASK = (1 << 64) - 1


async def main(communicator):
    log = logging.getLogger()
    rank, world_size = communicator.rank, communicator.world_size
    private = 1000 * (rank + 1) + 7  # this player's secret

    total_share = numpy.uint64(0)
    for owner in range(world_size):
        shares = None
        if rank == owner:
            randoms = [secrets.randbits(64) for _ in range(world_size - 1)]
            shares = [numpy.uint64(r) for r in randoms] + [numpy.uint64((private - sum(randoms)) & MASK)]
        my_share = await communicator.scatter(src=owner, values=shares)
        total_share = numpy.uint64((int(total_share) + int(my_share)) & MASK)

    partials = await communicator.allgather(total_share)
    total = sum(int(p) for p in partials) & MASK
    log.info(f"Player {rank} of {world_size}: private value hidden, total = {total}")
    await communicator.barrier()
    return total


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    results = AsyncSocketCommunicator.run(world_size=4, fn=main)
    print(f"every player computed total {results[0]}" if len(set(results)) == 1 else results)
