"""Players started by ``AsyncSocketCommunicator.run`` die with their parent, whatever kills it.

Each test runs a real script that calls ``run(world_size=3, ...)``, waits until every player
has written its pid (from ``fn``, or from inside start-up), kills the script and checks that
every player is gone within a few seconds and that no ``cicada-*`` directory is left in the
script's ``TMPDIR``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.processes

WORLD_SIZE = 3
GONE_WITHIN = 5.0  # seconds after the parent's death
START_WITHIN = 60.0  # seconds for the script and its players to come up (2 busy cores)

SCRIPT = textwrap.dedent("""
    import asyncio
    import os
    import sys

    from cicada_async import AsyncSocketCommunicator
    from cicada_async.communicator import launcher

    pids, family, stage, start_method = sys.argv[1:5]


    def note(name):
        path = os.path.join(pids, name)
        with open(path + ".tmp", "w") as file:
            file.write(str(os.getpid()))
        os.replace(path + ".tmp", path)


    real_listen = launcher.listen


    async def listen(**options):
        listener = await real_listen(**options)
        if stage == "startup":
            # Every player is listening (its socket file exists); player 2 never reports its
            # address, so the others wait for the launcher: start-up is stuck, deterministically.
            note(f"player-{options['rank']}.pid")
            if options["rank"] == 2:
                await asyncio.sleep(3600)
        return listener


    launcher.listen = listen  # forked players inherit it


    async def main(comm):
        note(f"player-{comm.rank}.pid")
        await asyncio.sleep(3600)  # far beyond any deadline of the test


    if __name__ == "__main__":
        AsyncSocketCommunicator.run(world_size=3, fn=main, family=family, startup_timeout=3600,
                                    timeout=3600, start_method=start_method)
""")


PROGRAM = textwrap.dedent("""
    import asyncio
    import os
    import sys


    async def main(comm):
        path = os.path.join(sys.argv[1], f"player-{comm.rank}.pid")
        with open(path + ".tmp", "w") as file:
            file.write(str(os.getpid()))
        os.replace(path + ".tmp", path)
        await asyncio.sleep(3600)
""")
CLI = "import sys; from cicada_async.cli import main; sys.exit(main())"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (dead, not yet reaped by its new parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - pid reused by another user's process
        return False
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("State:"):
                    return line.split()[1] not in ("Z", "X")
    except OSError:  # it went away while we read
        return False
    return True  # pragma: no cover - no /proc: os.kill said it exists


def _start(tmp_path: Path, *, family: str, stage: str, start_method: str = "fork", cli: bool = False) -> tuple[
        subprocess.Popen[bytes], list[int], Path, Path]:
    pids = tmp_path / "pids"
    pids.mkdir()
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    script = tmp_path / "script.py"
    script.write_text(PROGRAM if cli else SCRIPT)
    if cli:  # cicada-async run -n 3 --family F script.py PIDS
        argv = [sys.executable, "-c", CLI, "run", "-n", str(WORLD_SIZE), "--family", family, str(script), str(pids)]
    else:
        argv = [sys.executable, str(script), str(pids), family, stage, start_method]
    log_path = tmp_path / "output.txt"
    env = dict(os.environ, TMPDIR=str(tmpdir),
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    with open(log_path, "wb") as output:
        process = subprocess.Popen(argv, env=env, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_WITHIN
    names = [pids / f"player-{rank}.pid" for rank in range(WORLD_SIZE)]
    while not all(name.exists() for name in names):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(10)
            raise AssertionError(f"the players did not start (exit code {process.returncode}):\n"
                                 f"{log_path.read_text()}")
        time.sleep(0.02)
    return process, [int(name.read_text()) for name in names], tmpdir, log_path


def _directories(tmpdir: Path) -> list[str]:
    return sorted(path.name for path in tmpdir.glob("cicada-*"))


def _kill_and_watch(process: subprocess.Popen[bytes], pids: list[int], signum: int,
                    tmpdir: Path, log_path: Path) -> float:
    """Send ``signum`` to the parent; return how long until every player and file is gone."""
    try:
        start = time.monotonic()
        os.kill(process.pid, signum)
        process.wait(GONE_WITHIN)
        while any(_alive(pid) for pid in pids) or _directories(tmpdir):
            if time.monotonic() - start > GONE_WITHIN:
                raise AssertionError(
                    f"{GONE_WITHIN:g}s after the parent's death: players still running: "
                    f"{[pid for pid in pids if _alive(pid)]}, left in TMPDIR: {_directories(tmpdir)}\n"
                    f"{log_path.read_text()}")
            time.sleep(0.005)
        return time.monotonic() - start
    finally:
        for pid in pids:  # never leave orphans behind, even when the test fails
            if _alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.parametrize(("signum", "family"), [(signal.SIGKILL, "file"), (signal.SIGTERM, "file"),
                                                (signal.SIGKILL, "tcp")])
def test_players_die_with_their_parent(tmp_path, signum, family):
    process, pids, tmpdir, log_path = _start(tmp_path, family=family, stage="main")
    if family == "file":
        assert len(_directories(tmpdir)) == 1
    _kill_and_watch(process, pids, signum, tmpdir, log_path)
    if signum == signal.SIGTERM:
        assert process.returncode == -signal.SIGTERM  # the parent still dies of its signal


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_players_die_with_their_parent_during_startup(tmp_path, signum):
    process, pids, tmpdir, log_path = _start(tmp_path, family="file", stage="startup")
    [directory] = _directories(tmpdir)
    sockets = sorted(path.name for path in (tmpdir / directory).iterdir())
    assert sockets == [f"player-{rank}.sock" for rank in range(WORLD_SIZE)]
    _kill_and_watch(process, pids, signum, tmpdir, log_path)


def test_spawned_players_die_with_their_parent(tmp_path):
    process, pids, tmpdir, log_path = _start(tmp_path, family="file", stage="main", start_method="spawn")
    _kill_and_watch(process, pids, signal.SIGKILL, tmpdir, log_path)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_players_of_the_command_line_die_with_it(tmp_path, signum):
    process, pids, tmpdir, log_path = _start(tmp_path, family="file", stage="main", cli=True)
    _kill_and_watch(process, pids, signum, tmpdir, log_path)
    assert process.returncode == -signum


async def _terminate_rank_1(comm):
    if comm.rank == 1:
        os.kill(os.getpid(), signal.SIGTERM)
    return comm.rank


def test_a_player_killed_by_sigterm_is_still_reported_and_handlers_are_restored():
    from cicada_async import AsyncSocketCommunicator, Terminated

    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    results = AsyncSocketCommunicator.run(world_size=2, fn=_terminate_rank_1, family="file")
    assert results[1] == Terminated(-signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the launcher's handler is gone

    def own(signum, frame):  # inherited by the forked players, as before
        pass

    previous = signal.signal(signal.SIGTERM, own)
    try:
        results = AsyncSocketCommunicator.run(world_size=2, fn=_terminate_rank_1)
        assert signal.getsignal(signal.SIGTERM) is own  # a program's own handler is left alone
    finally:
        signal.signal(signal.SIGTERM, previous)
