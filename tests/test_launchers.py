"""Programs started by job launchers (mpiexec, mpirun, srun): each process is one player."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from cicada_async.communicator._launchers import LauncherError, detect, first_host, meeting_point

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOUR = """\
from cicada_async import AsyncSocketCommunicator

async def main(communicator):
    return communicator.rank, await communicator.allgather(communicator.rank * 10)

print(AsyncSocketCommunicator.run(world_size={size}, fn=main), flush=True)
"""


# --- detection (pure) -------------------------------------------------------------------------


def test_each_launchers_variables():
    hydra = detect({"PMI_RANK": "2", "PMI_SIZE": "4", "MPI_LOCALNRANKS": "4"}, parent_pid=77)
    assert (hydra.launcher, hydra.rank, hydra.size, hydra.all_local) == ("mpiexec (PMI)", 2, 4, True)
    ompi = detect({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_LOCAL_SIZE": "1",
                   "PMIX_RANK": "1"}, parent_pid=77)
    assert (ompi.launcher, ompi.rank, ompi.size, ompi.all_local) == ("Open MPI", 1, 3, False)
    pmix = detect({"PMIX_RANK": "5", "PMIX_NAMESPACE": "prterun-x-1"}, parent_pid=77)
    assert (pmix.launcher, pmix.rank, pmix.size) == ("PMIx", 5, None)
    slurm = detect({"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_NNODES": "2", "SLURM_JOB_ID": "991",
                    "SLURM_STEP_ID": "0"}, parent_pid=77)
    assert (slurm.launcher, slurm.rank, slurm.size, slurm.all_local) == ("SLURM", 3, 8, False)
    assert detect({}, parent_pid=77) is None
    assert detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, parent_pid=77) is None  # a batch script, no step


def test_mpiexec_inside_a_slurm_allocation_is_mpiexecs_rank():
    launched = detect({"PMI_RANK": "3", "PMI_SIZE": "4", "SLURM_PROCID": "0", "SLURM_NTASKS": "1",
                       "SLURM_STEP_ID": "batch"}, parent_pid=1)
    assert (launched.launcher, launched.rank) == ("mpiexec (PMI)", 3)


def test_explicit_cicada_variables_win_over_a_launcher():
    assert detect({"PMI_RANK": "1", "PMI_SIZE": "2", "CICADA_RANK": "1"}, parent_pid=1) is None
    assert detect({"PMI_RANK": "1", "PMI_SIZE": "2", "CICADA_LAUNCHED": "1"}, parent_pid=1) is None


@pytest.mark.parametrize(("environ", "message"), [
    ({"PMI_RANK": "x", "PMI_SIZE": "2"}, "PMI_RANK must be an integer"),
    ({"PMI_RANK": "2", "PMI_SIZE": "2"}, "PMI_RANK=2 is not below PMI_SIZE=2"),
    ({"OMPI_COMM_WORLD_RANK": "-1", "OMPI_COMM_WORLD_SIZE": "2"}, "negative"),
])
def test_malformed_launcher_variables_are_clear_errors(environ, message):
    with pytest.raises(LauncherError, match=message):
        detect(environ, parent_pid=1)


def test_where_the_players_meet():
    local = detect({"PMI_RANK": "1", "PMI_SIZE": "3", "MPI_LOCALNRANKS": "3"}, parent_pid=4242)
    point = meeting_point(local, {}, world_size=3, temporary="/tmp", uid=1000)
    assert point.root_address.startswith("file:///tmp/cicada-launch-1000-") and point.root_address.endswith(
        "/player-0.sock")
    assert point.address == point.root_address.replace("player-0", "player-1")
    other_job = detect({"PMI_RANK": "1", "PMI_SIZE": "3", "MPI_LOCALNRANKS": "3"}, parent_pid=4243)
    assert meeting_point(other_job, {}, world_size=3, temporary="/tmp", uid=1000).directory != point.directory
    given = meeting_point(local, {"CICADA_ROOT_ADDRESS": "tcp://10.0.0.1:25000"}, world_size=3, temporary="/tmp",
                          uid=1000)
    assert (given.root_address, given.address, given.directory) == ("tcp://10.0.0.1:25000", None, None)
    slurm = detect({"SLURM_PROCID": "1", "SLURM_NTASKS": "4", "SLURM_NNODES": "2", "SLURM_JOB_ID": "17",
                    "SLURM_STEP_ID": "0"}, parent_pid=1)
    environ = {"SLURM_STEP_NODELIST": "node[07-08]"}
    first = meeting_point(slurm, environ, world_size=4, temporary="/tmp", uid=0)
    assert first.root_address.startswith("tcp://node07:")
    assert first == meeting_point(slurm, environ, world_size=4, temporary="/tmp", uid=0)  # every rank agrees
    port = meeting_point(slurm, {**environ, "CICADA_ROOT_PORT": "31000"}, world_size=4, temporary="/tmp", uid=0)
    assert port.root_address == "tcp://node07:31000"


def test_a_size_that_disagrees_or_an_unknown_root_is_a_clear_error():
    launched = detect({"PMI_RANK": "0", "PMI_SIZE": "3", "MPI_LOCALNRANKS": "3"}, parent_pid=1)
    with pytest.raises(LauncherError, match="started 3 processes, but the program asks for world_size=4"):
        meeting_point(launched, {}, world_size=4, temporary="/tmp", uid=0)
    spread = detect({"PMI_RANK": "0", "PMI_SIZE": "4", "MPI_LOCALNRANKS": "2"}, parent_pid=1)
    with pytest.raises(LauncherError, match="set CICADA_ROOT_ADDRESS"):
        meeting_point(spread, {}, world_size=4, temporary="/tmp", uid=0)


@pytest.mark.parametrize(("nodelist", "host"), [("node1", "node1"), ("node[3-5,9]", "node3"),
                                                 ("gpu[002,007],cpu1", "gpu002"), ("a,b", "a")])
def test_first_host_of_a_slurm_node_list(nodelist, host):
    assert first_host(nodelist) == host


# --- processes started as a launcher would --------------------------------------------------


def _start(script: pathlib.Path, environments: list[dict[str, str]]) -> list[subprocess.CompletedProcess]:
    base = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in list(base):
        if name.startswith(("PMI_", "OMPI_", "PMIX_", "SLURM_", "CICADA_")):
            del base[name]
    processes = [subprocess.Popen([sys.executable, str(script)], env={**base, **extra}, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for extra in environments]
    try:
        outputs = [process.communicate(timeout=60) for process in processes]
    finally:
        for process in processes:
            process.kill()
    return [subprocess.CompletedProcess(process.args, process.returncode, out, err)
            for process, (out, err) in zip(processes, outputs, strict=True)]


@pytest.mark.processes
@pytest.mark.parametrize("launcher", ["ompi", "slurm"])
def test_processes_started_with_a_launchers_variables_become_one_player_each(launcher, tmp_path):
    script = tmp_path / "tour.py"
    script.write_text(TOUR.format(size=3))
    if launcher == "ompi":
        environments = [{"OMPI_COMM_WORLD_RANK": str(r), "OMPI_COMM_WORLD_SIZE": "3",
                         "OMPI_COMM_WORLD_LOCAL_SIZE": "3", "OMPI_MCA_ess_base_jobid": f"job-{os.getpid()}"}
                        for r in range(3)]
    else:
        environments = [{"SLURM_PROCID": str(r), "SLURM_NTASKS": "3", "SLURM_NNODES": "1",
                         "SLURM_JOB_ID": str(os.getpid()), "SLURM_STEP_ID": "0"} for r in range(3)]
    results = _start(script, environments)
    for rank, result in enumerate(results):
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == str([(rank, [0, 10, 20])]), result.stdout


@pytest.mark.processes
def test_a_launched_size_that_disagrees_with_world_size_says_so(tmp_path):
    script = tmp_path / "tour.py"
    script.write_text(TOUR.format(size=4))
    environments = [{"PMI_RANK": str(r), "PMI_SIZE": "2", "MPI_LOCALNRANKS": "2"} for r in range(2)]
    for result in _start(script, environments):
        assert result.returncode != 0
        assert "started 2 processes, but the program asks for world_size=4" in result.stderr


MPIEXEC = shutil.which("mpiexec")


@pytest.mark.processes
@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich, part of the test extra on Linux x86-64)")
def test_under_hydra_mpiexec_the_tour_prints_one_result_per_process(tmp_path):
    script = tmp_path / "tour.py"
    script.write_text(TOUR.format(size=4))
    result = subprocess.run([MPIEXEC, "-n", "4", sys.executable, str(script)], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    # The processes share mpiexec's stdout, so their lines may run into each other.
    found = sorted(re.findall(r"\[\(\d, \[0, 10, 20, 30\]\)\]", result.stdout))
    assert found == [str([(rank, [0, 10, 20, 30])]) for rank in range(4)], result.stdout


@pytest.mark.processes
@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich, part of the test extra on Linux x86-64)")
def test_under_hydra_mpiexec_the_fault_recovery_example_logs_what_the_local_run_logs():
    """Players kill themselves with SIGKILL; Hydra would end the whole job if a launched process
    died by a signal, so each process supervises its player and ends normally."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    example = str(ROOT / "examples" / "fault_recovery.py")
    local = subprocess.run([sys.executable, example], capture_output=True, text=True, timeout=120, env=env)
    launched = subprocess.run([MPIEXEC, "-n", "5", sys.executable, example], capture_output=True, text=True,
                              timeout=120, env=env)
    assert local.returncode == 0 and launched.returncode == 0, launched.stderr

    def log(text):  # the processes share mpiexec's stderr: find the lines, even run together
        return re.findall(r"INFO:root:Iteration \d+ (?:comm \S+ total: [\d.]+|shrank .*? players\.|"
                          r"not enough players to continue\.)", text)

    # Every process of the job logs to the same stream; the players that log (rank 0 of each
    # communicator, src=0) are the same as in the local run, so the lines are the same.
    assert sorted(set(log(launched.stderr))) == sorted(set(log(local.stderr)))
    assert "INFO:root:Iteration 22 not enough players to continue." in log(launched.stderr)
    assert launched.stdout.count("this player") == 5
    assert launched.stderr.count("Terminated(exitcode=-9)") == 4


CONNECT = """\
import asyncio
from cicada_async import AsyncSocketCommunicator

async def player():
    communicator = await AsyncSocketCommunicator.connect()   # everything from the launcher's variables
    async with communicator:
        print(communicator.rank, await communicator.allgather(communicator.rank), flush=True)

asyncio.run(player())
"""


@pytest.mark.processes
def test_connect_reads_the_launchers_variables(tmp_path):
    script = tmp_path / "service.py"
    script.write_text(CONNECT)
    environments = [{"SLURM_PROCID": str(r), "SLURM_NTASKS": "3", "SLURM_NNODES": "1",
                     "SLURM_JOB_ID": f"c{os.getpid()}", "SLURM_STEP_ID": "1"} for r in range(3)]
    for rank, result in enumerate(_start(script, environments)):
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"{rank} [0, 1, 2]"


@pytest.mark.processes
@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich, part of the test extra on Linux x86-64)")
def test_under_hydra_mpiexec_cicada_async_start_needs_no_options(tmp_path):
    program = tmp_path / "program.py"
    program.write_text("async def main(communicator):\n"
                       "    return await communicator.allgather(communicator.rank)\n")
    result = subprocess.run([MPIEXEC, "-n", "3", sys.executable, "-m", "cicada_async", "start", str(program)],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
