"""Clear errors for bad arguments (issue 10): each names the argument and what it must be."""

from __future__ import annotations

import re

import numpy
import pytest

from cicada_async._core.framing import Kind, encode_header, header
from cicada_async.testing import World

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
