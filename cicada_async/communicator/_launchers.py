"""Which job launcher started this process, if any, and where its players meet.  Sans-IO.

A program that calls ``AsyncSocketCommunicator.run(world_size=N, fn=...)`` may itself be
started N times by a job launcher; then each process is the one player of its rank.  The
launchers say so in the environment:

* MPICH / Intel MPI (Hydra's ``mpiexec``): ``PMI_RANK``, ``PMI_SIZE``, and ``MPI_LOCALNRANKS``
  (processes of the job on this host);
* Open MPI (``mpirun``): ``OMPI_COMM_WORLD_RANK``, ``OMPI_COMM_WORLD_SIZE``,
  ``OMPI_COMM_WORLD_LOCAL_SIZE``;
* PMIx launchers (``prterun``, ``srun --mpi=pmix``): ``PMIX_RANK`` (the size is ``run``'s);
* SLURM (``srun``): ``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_NNODES``, ``SLURM_JOB_ID``,
  ``SLURM_STEP_ID`` and the node list.

They are checked in that order (an ``mpiexec`` inside a SLURM allocation sees the batch
script's ``SLURM_PROCID``, which is not its rank).  ``CICADA_RANK`` set explicitly means "not
under a launcher": the explicit variables of ``connect`` win.

Where rank 0 listens: ``CICADA_ROOT_ADDRESS`` if set; else, when every process is on this
host, a Unix socket in a directory named by the job (processes of one job on one host share
their parent, the launcher's local daemon, so they agree on the name without talking); else,
under SLURM, the first host of the node list at a port derived from the job and step ids
(``CICADA_ROOT_PORT`` overrides it); otherwise :class:`LauncherError` says to set
``CICADA_ROOT_ADDRESS``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Launched", "LauncherError", "detect", "meeting_point"]

SLURM_PORTS = (29000, 20000)
"""Default SLURM root ports: ``29000 + hash(job, step) % 20000``."""


class LauncherError(ValueError):
    """The launcher's variables are inconsistent, or the players cannot know where to meet."""


@dataclass(frozen=True)
class Launched:
    """This process's place in a launched job."""

    launcher: str  # for messages: "mpiexec (PMI)", "Open MPI", "PMIx", "SLURM"
    rank: int
    size: int | None  # None when the launcher does not say (PMIx)
    all_local: bool  # every process of the job runs on this host
    job: str  # equal on every process of the job on this host


@dataclass(frozen=True)
class MeetingPoint:
    """Where rank 0 listens, where this player listens, and the world's token."""

    root_address: str
    address: str | None  # None: connect's default (the interface that routes to rank 0)
    directory: str | None  # the directory of the Unix sockets, when the job is on this host
    token: str


def _int(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise LauncherError(f"{name} must be an integer, got {value!r}") from None


def detect(environ: Mapping[str, str], *, parent_pid: int) -> Launched | None:
    """The launched job this process belongs to, or None when no launcher started it.

    Raises
    ------
    LauncherError
        If a launcher's variables are malformed or out of range.
    """
    if environ.get("CICADA_RANK") or environ.get("CICADA_LAUNCHED"):
        return None
    candidates = (
        ("mpiexec (PMI)", "PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS", None),
        ("Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE",
         "OMPI_MCA_ess_base_jobid"),
        ("PMIx", "PMIX_RANK", None, None, "PMIX_NAMESPACE"),
    )
    for launcher, rank_name, size_name, local_name, job_name in candidates:
        rank = _int(environ, rank_name)
        if rank is None:
            continue
        size = _int(environ, size_name) if size_name else None
        local = _int(environ, local_name) if local_name else None
        _check(launcher, rank_name, rank, size_name, size)
        job = environ.get(job_name, "") if job_name else ""
        all_local = size is not None and local is not None and local == size
        return Launched(launcher=launcher, rank=rank, size=size, all_local=all_local,
                        job=f"{job or 'ppid'}-{parent_pid}")
    rank = _int(environ, "SLURM_PROCID")
    if rank is not None and environ.get("SLURM_STEP_ID") is not None:
        size = _int(environ, "SLURM_NTASKS")
        _check("SLURM", "SLURM_PROCID", rank, "SLURM_NTASKS", size)
        nodes = _int(environ, "SLURM_NNODES")
        job = f"slurm-{environ.get('SLURM_JOB_ID', '')}.{environ.get('SLURM_STEP_ID', '')}"
        return Launched(launcher="SLURM", rank=rank, size=size, all_local=nodes == 1, job=job)
    return None


def _check(launcher: str, rank_name: str, rank: int, size_name: str | None, size: int | None) -> None:
    if rank < 0:
        raise LauncherError(f"{launcher}: {rank_name}={rank} is negative")
    if size is not None and not 0 <= rank < size:
        raise LauncherError(f"{launcher}: {rank_name}={rank} is not below {size_name}={size}")


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list (``node[3-5,9],gpu1`` gives ``node3``)."""
    text = nodelist.strip()
    if not text:
        raise LauncherError("the SLURM node list is empty")
    match = re.match(r"([^,\[]+)(\[([^\]]*)\])?", text)
    if match is None:
        raise LauncherError(f"cannot read the SLURM node list {nodelist!r}")
    prefix, ranges = match.group(1), match.group(3)
    if ranges is None:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return f"{prefix}{first}"


def meeting_point(launched: Launched, environ: Mapping[str, str], *, world_size: int, temporary: str,
                  uid: int) -> MeetingPoint:
    """Where the players of ``launched`` meet (see the module docstring).

    Raises
    ------
    LauncherError
        If the launcher's size disagrees with ``world_size``, or the job spans hosts and
        nothing says where rank 0 listens.
    """
    if launched.size is not None and launched.size != world_size:
        raise LauncherError(f"{launched.launcher} started {launched.size} processes, but the program asks for "
                            f"world_size={world_size}: start it with -n {world_size} (or change world_size)")
    if launched.rank >= world_size:
        raise LauncherError(f"{launched.launcher}: rank {launched.rank} is not below world_size={world_size}")
    token = environ.get("CICADA_TOKEN") or ""
    root = environ.get("CICADA_ROOT_ADDRESS") or None
    address = environ.get("CICADA_ADDRESS") or None
    if root is not None:
        return MeetingPoint(root_address=root, address=address, directory=None,
                            token=token or f"launched:{root}:{world_size}")
    if launched.all_local:
        digest = hashlib.blake2b(f"{launched.job}:{world_size}".encode(), digest_size=6).hexdigest()
        directory = f"{temporary.rstrip('/')}/cicada-launch-{uid}-{digest}"
        return MeetingPoint(root_address=f"file://{directory}/player-0.sock",
                            address=f"file://{directory}/player-{launched.rank}.sock", directory=directory,
                            token=token or f"launched:{launched.job}:{world_size}")
    if launched.launcher == "SLURM":
        nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST") or \
            environ.get("SLURM_NODELIST") or ""
        host = first_host(nodelist)
        port = _int(environ, "CICADA_ROOT_PORT")
        if port is None:
            seed = hashlib.blake2b(launched.job.encode(), digest_size=4).digest()
            port = SLURM_PORTS[0] + int.from_bytes(seed, "little") % SLURM_PORTS[1]
        root = f"tcp://{host}:{port}"
        return MeetingPoint(root_address=root, address=address, directory=None,
                            token=token or f"launched:{launched.job}:{world_size}")
    raise LauncherError(f"{launched.launcher} runs this job on several hosts: set CICADA_ROOT_ADDRESS to where "
                        "rank 0 should listen (e.g. tcp://first-host:25000) for every process")
