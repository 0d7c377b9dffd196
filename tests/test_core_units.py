"""Sans-IO pieces: mailbox, handshake, communicator ids; and that the core stays free of I/O."""

from __future__ import annotations

import ast
import pathlib

import pytest

import cicada_async._core as core
from cicada_async._core import handshake
from cicada_async._core.handshake import Rejected
from cicada_async._core.ids import child_id, world_id
from cicada_async._core.mailbox import Mailbox, MailboxFull
from cicada_async.errors import RemoteProtocolError


class Waiter:
    def __init__(self):
        self.done = False


def box(**kwargs) -> Mailbox:
    return Mailbox(range(3), is_pending=lambda w: not w.done, **kwargs)


def test_core_never_imports_io_modules():
    forbidden = {"asyncio", "socket", "ssl", "selectors", "threading", "multiprocessing", "uvloop"}
    for path in pathlib.Path(core.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            else:
                continue
            assert not forbidden.intersection(names), f"{path.name} imports {names}"


K = (1, 0xABC, 0)  # (source, ident, round)


def test_message_first_then_receiver():
    m = box()
    assert m.deliver(K, 7, "a", 10) is None
    assert m.deliver(K, 7, "b", 10) is None
    assert m.queued_bytes(1) == 20
    assert m.take(K) == (7, "a")  # the tag comes along, for the receiver to check
    assert m.take(K) == (7, "b")
    assert m.take(K) is None
    assert m.queued_bytes(1) == 0


def test_receiver_first_then_message_fifo_and_skips_finished_waiters():
    m = box()
    key = (2, 5, 0)
    first, second, third = Waiter(), Waiter(), Waiter()
    for w in (first, second, third):
        m.wait(key, w)
    first.done = True  # e.g. cancelled meanwhile
    assert m.deliver(key, 0, "x") is second
    assert m.deliver(key, 0, "y") is third
    assert m.deliver(key, 0, "z") is None
    assert m.take(key) == (0, "z")


def test_sources_idents_and_rounds_are_independent():
    m = box()
    m.deliver((0, 1, 0), -1, "a")
    m.deliver((1, 0, 0), -1, "b")
    m.deliver((1, 0, 1), -1, "c")
    assert m.take((0, 0, 0)) is None
    assert m.take((1, 1, 0)) is None
    assert m.take((1, 0, 1)) == (-1, "c")
    assert m.take((1, 0, 0)) == (-1, "b")


def test_forget_and_put_back():
    m = box()
    key = (0, 0, 0)
    w = Waiter()
    m.wait(key, w)
    m.forget(key, w)
    m.forget(key, w)  # harmless twice
    assert m.deliver(key, 0, "a", 3) is None
    m.deliver(key, 0, "b", 3)
    assert m.take(key) == (0, "a")
    m.put_back(key, 0, "a", 3)
    assert m.take(key) == (0, "a")
    assert m.queued_bytes(0) == 3


def test_abandoned_keys_drop_their_message_whenever_it_comes():
    m = box()
    late, queued = (1, 10, 0), (1, 11, 0)
    m.deliver(queued, -5, "already here", 4)
    m.abandon(queued)  # its operation was cancelled: the queued message goes
    m.abandon(late)  # ... and one still to come is dropped on arrival
    assert m.queued_bytes(1) == 0
    assert m.deliver(late, -5, "late") is None
    assert m.take(late) is None and m.take(queued) is None
    assert m.dropped == 2
    assert m.deliver(late, -5, "a later message with the same key is kept") is None  # only one was owed
    m.abandon((2, 12, 0))
    m.end(2, "failed")  # a source that ended sends nothing more: its abandoned keys are forgotten
    assert m.deliver((2, 12, 0), -5, "x") is None and m.take((2, 12, 0)) == (-5, "x")


def test_end_keeps_first_reason_and_returns_stranded_waiters():
    m = box()
    w1, w2, w3 = Waiter(), Waiter(), Waiter()
    m.wait((1, 0, 0), w1)
    m.wait((1, 7, 0), w2)
    m.wait((2, 0, 0), w3)
    m.deliver((1, 9, 0), 0, "kept")
    stranded = m.end(1, "revoked")
    assert sorted((key, id(w)) for key, w in stranded) == sorted([((1, 0, 0), id(w1)), ((1, 7, 0), id(w2))])
    assert m.end(1, "failed") == []
    assert m.ended(1) == "revoked"
    assert m.ended(2) is None
    assert m.take((1, 9, 0)) == (0, "kept")  # what came before the end is still delivered


def test_mailbox_cap():
    m = box(max_queued_bytes=100)
    m.deliver((0, 0, 0), 0, "a", 60)
    with pytest.raises(MailboxFull, match="player 0"):
        m.deliver((0, 0, 0), 0, "b", 60)
    m.deliver((1, 0, 0), 0, "c", 60)  # per source
    w = Waiter()
    m.wait((0, 1, 0), w)
    assert m.deliver((0, 1, 0), 0, "d", 1000) is w  # taken at once: never queued, never counted


def test_close_returns_everything_pending():
    m = box()
    w = Waiter()
    m.wait((0, 3, 0), w)
    m.deliver((1, 1, 0), 0, "x", 5)
    assert m.close() == [((0, 3, 0), w)]
    assert m.take((1, 1, 0)) is None
    assert m.queued_bytes(1) == 0


def join(**overrides):
    message = handshake.join_message(name="world", world_size=4, rank=3, to=1,
                                     token=handshake.token_digest("t"), address="tcp://x:1")
    message.update(overrides)
    return message


def check(message, expected=frozenset({2, 3})):
    return handshake.check_join(message, name="world", world_size=4, rank=1,
                                token=handshake.token_digest("t"), expected=set(expected))


def test_join_accepted():
    assert check(join()) == (3, "tcp://x:1")


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"protocol": 99}, "protocol"),
        ({"name": "other"}, "name"),
        ({"world_size": 5}, "world_size"),
        ({"to": 2}, "rank"),
        ({"token": handshake.token_digest("u")}, "token"),
        ({"rank": 0}, "rank"),
    ],
)
def test_join_rejections(overrides, reason):
    with pytest.raises(Rejected) as info:
        check(join(**overrides))
    assert info.value.reason == reason


@pytest.mark.parametrize("message", [None, [], {}, join(rank="3"), join(rank=True), join(token="t"),
                                     join(address=5)])
def test_join_malformed(message):
    with pytest.raises(RemoteProtocolError):
        check(message)


def test_token_digest_distinguishes_none_and_strings():
    assert handshake.token_digest(None) != handshake.token_digest("None")
    assert handshake.token_digest("a") == handshake.token_digest("a")
    assert handshake.token_digest(1) == handshake.token_digest("1")


def test_accept_checks():
    accept = handshake.accept_message(rank=0, addresses=["a", "b"])
    assert handshake.check_accept(accept, expected_rank=0, world_size=2, with_addresses=True) == ["a", "b"]
    with pytest.raises(Rejected):
        handshake.check_accept(accept, expected_rank=1, world_size=2, with_addresses=False)
    with pytest.raises(RemoteProtocolError):
        handshake.check_accept(accept, expected_rank=0, world_size=3, with_addresses=True)


def test_ids_are_deterministic_and_distinct():
    session = b"s" * 16
    assert world_id(session) == world_id(session) != world_id(b"t" * 16)
    parent = world_id(session)
    a = child_id(parent, "shrink", 0, "fallback", [0, 2, 3])
    assert a == child_id(parent, "shrink", 0, "fallback", [0, 2, 3])
    others = {
        child_id(parent, "shrink", 1, "fallback", [0, 2, 3]),
        child_id(parent, "split", 0, "fallback", [0, 2, 3]),
        child_id(parent, "shrink", 0, "fallback", [0, 2]),
        child_id(parent, "shrink", 0, "other", [0, 2, 3]),
        child_id(a, "shrink", 0, "fallback", [0, 2, 3]),
    }
    assert a not in others and len(others) == 5
    assert all(0 < value < 2**64 for value in others | {a})
