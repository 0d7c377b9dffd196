"""Clear errors for bad arguments (issue 10): each names the argument and what it must be."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

from cicada_async import Logger
from cicada_async._core.framing import Kind, encode_header, header
from cicada_async.shamir import ShamirArrayShare, ShamirBasicProtocolSuite, ShamirProtocolSuite
from cicada_async.testing import World

ROOT = Path(__file__).resolve().parents[1]

TAG_RANGE = re.escape("0 ... 2**31 - 1")


# -- tags ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("tag", [2**31, 2**63, -1, -(2**31) - 1, 1.5, "3", None, True, numpy.float64(2)])
async def test_bad_tag_is_a_value_error_naming_the_range(tag):
    async with World(2) as world:
        a, b = world.comms
        with pytest.raises(ValueError, match=TAG_RANGE):
            await a.send(value=1, dst=1, tag=tag)
        with pytest.raises(ValueError, match=TAG_RANGE):
            await b.recv(src=0, tag=tag)
        with pytest.raises(ValueError, match=TAG_RANGE):
            a.isend(value=1, dst=1, tag=tag)
        with pytest.raises(ValueError, match=TAG_RANGE):
            b.irecv(src=0, tag=tag)
        assert a.stats["total"]["sent"]["messages"] == 0
        # numpy integers are integers
        await a.send(value="ok", dst=1, tag=numpy.int64(5))
        assert await b.recv(src=0, tag=numpy.uint32(5)) == "ok"


@pytest.mark.parametrize("fields, name", [
    ((Kind.DATA, 0, 2**31, 1, 1, 1), "tag"),
    ((Kind.DATA, 0, -(2**31) - 1, 1, 1, 1), "tag"),
    ((Kind.DATA, 2**16, 0, 1, 1, 1), "round"),
    ((Kind.DATA, 0, 0, 1, 2**64, 1), "ident"),
    ((Kind.DATA, 0, 0, 1, 1, -1), "length"),
])
def test_frame_header_refuses_fields_that_do_not_fit(fields, name):
    """Framing never lets a raw struct.error out: the message names the field."""
    with pytest.raises(ValueError, match=f"field {name} must be an integer in"):
        header(*fields)
    kind, _, tag, comm, _, length = fields
    if name in ("tag", "length"):
        with pytest.raises(ValueError, match=f"field {name} must be an integer in"):
            encode_header(kind, tag, comm, length)


# -- seeds ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("suite", [ShamirBasicProtocolSuite, ShamirProtocolSuite])
@pytest.mark.parametrize("argument", ["seed", "seed_offset"])
@pytest.mark.parametrize("value", [-1, -(2**70), 1.5, "7", True, numpy.float64(3)])
async def test_bad_seed_is_a_value_error_naming_the_argument(suite, argument, value):
    async with World(3) as world:
        comm = world.comms[0]
        kwargs = {"seed": 1, argument: value}
        with pytest.raises(ValueError, match=f"^{argument} must be a non-negative integer"):
            suite(comm, threshold=2, **kwargs)
        suite(comm, threshold=2, seed=numpy.int64(2**40), seed_offset=numpy.uint8(0))
        suite(comm, threshold=2, seed=0, seed_offset=None)


def test_fault_recovery_example_refuses_a_negative_seed():
    """A usage error (exit code 2, one line naming --seed), not a traceback from every player."""
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "fault_recovery.py"), "--seed", "-1"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "argument --seed: must be at least 0, got -1" in result.stderr


# -- src / dst ranks -----------------------------------------------------------------------------
REPEATED = r"must not repeat a rank: rank 0 appears 2 times in \[0, 1, 0\]"


async def test_repeated_or_outside_ranks_in_dst_and_src_are_refused_alike():
    """``reveal(dst=[0, 0])`` used to be accepted; every dst/src list now refuses a repeated
    rank, naming it, and a rank outside the world, with the same words."""
    async with World(3) as world:
        comm = world.comms[0]
        suite = ShamirBasicProtocolSuite(comm, threshold=2)
        log = Logger(logging.getLogger("test_clear_errors"), comm)
        share = ShamirArrayShare(suite.field.zeros((2,)))
        calls = {
            "reveal": lambda ranks: suite.reveal(share, dst=ranks),
            "logger": lambda ranks: log.info("x", src=ranks),
            "gatherv": lambda ranks: comm.gatherv(src=ranks, value=1, dst=0),
            "scatterv": lambda ranks: comm.scatterv(src=0, values=[1] * len(ranks), dst=ranks),
        }
        for name, call in calls.items():
            what = "dst" if name in ("reveal", "scatterv") else "src"
            with pytest.raises(ValueError, match=f"^{what} {REPEATED}$"):
                call([0, 1, 0])
            with pytest.raises(ValueError, match=re.escape(f"{what} must be in the range [0, 3), got 3")):
                call([0, 3])
            with pytest.raises(ValueError, match=re.escape(f"{what} must be in the range [0, 3), got -1")):
                call([-1])
            with pytest.raises(ValueError, match=f"^{what} must be an integer rank in"):
                call([0, 1.0])
            with pytest.raises(ValueError, match=f"^{what} must be a sequence of ranks"):
                call("01")
        for name in ("reveal", "logger"):  # these also take a single rank
            with pytest.raises(ValueError, match=re.escape("must be in the range [0, 3), got 7")):
                calls[name](7)
        with pytest.raises(ValueError, match=re.escape("src must be in the range [0, 3), got 3")):
            suite.share(src=3, secret=None, shape=(2,))
        with pytest.raises(ValueError, match=re.escape("dst must be in the range [0, 3), got 3")):
            await comm.send(value=1, dst=3, tag=0)
        assert comm.stats["total"]["sent"]["messages"] == 0


async def test_reveal_to_distinct_ranks_in_any_order():
    async with World(3) as world:
        async def player(comm):
            suite = ShamirBasicProtocolSuite(comm, threshold=2)
            share = await suite.share(src=0, secret=numpy.array([1.5, 2.0]) if comm.rank == 0 else None,
                                      shape=(2,))
            return await suite.reveal(share, dst=numpy.array([2, 0]))
        results = await world.run(player)
    assert results[1] is None
    for rank in (0, 2):
        assert numpy.array_equal(results[rank], [1.5, 2.0])
