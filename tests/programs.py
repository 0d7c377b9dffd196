"""Player programs shared by the real-process tests (plain and TLS worlds run the same)."""

from __future__ import annotations

import os
import signal
import time

from cicada_async import Excluded, PeerFailed, Revoked, Timeout


async def recover(comm, name="shrunk", timeout=None):
    await comm.revoke()
    return await comm.shrink(name=name, timeout=timeout)


async def stopped_player_is_excluded(comm, victim=2, shrink_timeout=0.5):
    """Player 0 stops ``victim`` with SIGSTOP; the others recover without it, then resume it.

    The victim returns "excluded" if everything it tries afterwards fails with Excluded (or
    Revoked/Timeout first) and it never gets a communicator; the others return
    ``(oldranks, allgather on the new communicator, seconds spent in shrink)``.
    """
    if comm.rank == victim:
        # Stopped anywhere in here; when it runs again, everything it tries must fail.
        try:
            await comm.allgather(os.getpid())
            await comm.barrier()
            await comm.allgather("late")
        except (Revoked, Timeout, Excluded, PeerFailed):
            pass
        try:
            await recover(comm)
        except Excluded:
            return "excluded"
        return "NOT EXCLUDED"
    pids = await comm.allgather(os.getpid())
    try:
        # Once player 0 is past this barrier, everyone has finished the pid exchange; the
        # stop may still catch the victim between two sends of the barrier or the next step.
        await comm.barrier()
        if comm.rank == 0:
            os.kill(pids[victim], signal.SIGSTOP)
        await comm.allgather("step")
    except (Timeout, Revoked, PeerFailed):  # PeerFailed: the others already left it out
        pass
    start = time.monotonic()
    new, oldranks = await recover(comm, timeout=shrink_timeout)
    elapsed = time.monotonic() - start
    values = await new.allgather(comm.rank)
    if comm.rank == 0:
        os.kill(pids[victim], signal.SIGCONT)
    await new.barrier()
    return oldranks, values, elapsed
