"""The identity scheme, sans IO: scopes, numbers, paths, owners (cicada_async._core.identity)."""

from __future__ import annotations

import random

import pytest

from cicada_async._core.identity import NotOwner, Numbering, Scope, encode_key, mix, roles_code

SALT = 0x1234_5678_9ABC_DEF0


class Task:
    """Stands in for an asyncio task: ``done()`` and the future it waits for."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.finished = False
        self._fut_waiter = None

    def done(self) -> bool:
        return self.finished


def player(salt: int = SALT) -> tuple[Scope, Numbering]:
    """A fresh player: its root scope and a communicator's numbering."""
    root = Scope.root()
    return root, Numbering(salt, root)


def idents(scope: Scope, numbering: Numbering, count: int, task: object = None) -> list[int]:
    state = scope.state(numbering)
    return [state.take(task) for _ in range(count)]


def test_same_calls_in_the_same_order_give_the_same_identities_everywhere():
    (root_a, comm_a), (root_b, comm_b) = player(), player()
    assert idents(root_a, comm_a, 50) == idents(root_b, comm_b, 50)
    user_a, user_b = root_a.user_child(None), root_b.user_child(None)
    assert idents(user_a, comm_a, 5) == idents(user_b, comm_b, 5)
    op_a = root_a.operation_child(comm_a, 3)
    op_b = root_b.operation_child(comm_b, 3)
    assert idents(op_a, comm_a, 5) == idents(op_b, comm_b, 5)


def test_roles_fold_into_every_later_identity_of_the_scope():
    def run(roles: list[int]) -> list[int]:
        root, comm = player()
        state = root.state(comm)
        return [state.take(None, code) for code in roles]

    plain = run([0] * 6)
    agreeing = run([0, roles_code(0), 0, roles_code(1), roles_code((0, 2)), 0])
    assert agreeing == run([0, roles_code(0), 0, roles_code(1), roles_code((0, 2)), 0])  # same roles: same
    assert agreeing[:2] == plain[:2] and agreeing[2] != plain[2]
    diverged = run([0, roles_code(0), 0, roles_code(2), roles_code((0, 2)), 0])  # one player shares from 2
    assert diverged[:4] == agreeing[:4]  # the diverging operation itself keeps its identity (and its tag check)
    assert not set(diverged[4:]) & set(agreeing)  # nothing after it can match
    assert len(set(agreeing)) == len(agreeing)
    codes = [roles_code(0), roles_code(1), roles_code((0,)), roles_code((0, 1)), roles_code((1, 0)),
             roles_code(0, (1,)), roles_code((0,), 1)]
    assert len(set(codes)) == len(codes) and 0 not in codes


def test_identities_never_repeat_and_children_never_collide_with_their_parents():
    root, comm = player()
    seen: set[int] = set()
    scopes = [root]
    rng = random.Random(7)
    for _ in range(300):  # a random tree of operation, user and keyed scopes
        parent = rng.choice(scopes)
        kind = rng.randrange(3)
        if kind == 0:
            child = parent.operation_child(comm, parent.state(comm).peek())
            parent.state(comm).take(None)
        elif kind == 1:
            child = parent.user_child(None)
        else:
            child = parent.keyed_child(("request", rng.randrange(10**9)))
        scopes.append(child)
    for scope in scopes:
        for ident in idents(scope, comm, 20):
            assert ident not in seen
            seen.add(ident)
    paths = {scope.path(comm) for scope in scopes}
    assert len(paths) == len(scopes) and not paths & seen
    point_to_point = {scope.state(comm).p2p_key(tag) for scope in scopes for tag in (0, 1, 2**31 - 1)}
    assert len(point_to_point) == 3 * len(scopes) and not point_to_point & (seen | paths)


def test_communicators_number_independently_and_have_their_own_identities():
    root, first = player(SALT)
    second = Numbering(SALT + 1, root)
    assert set(idents(root, first, 10)).isdisjoint(idents(root, second, 10))
    assert root.state(first).peek() == 10 and root.state(second).peek() == 10


def test_a_key_names_a_scope_whatever_ran_before_it():
    (root_a, comm_a), (root_b, comm_b) = player(), player()
    idents(root_a, comm_a, 3)  # player a did other work first
    root_a.user_child(None)
    keys = [("request", 1), ("request", 2), "x", b"y", 5, ("nested", (1, "two"))]
    scopes_a = {key: root_a.keyed_child(key) for key in keys}
    scopes_b = {key: root_b.keyed_child(key) for key in reversed(keys)}  # opened in another order
    for key in keys:
        assert idents(scopes_a[key], comm_a, 4) == idents(scopes_b[key], comm_b, 4)


def test_a_live_key_cannot_be_reused_in_the_same_parent():
    root, _ = player()
    scope = root.keyed_child("request-1")
    with pytest.raises(ValueError, match="already in use"):
        root.keyed_child("request-1")
    root.user_child(None).keyed_child("request-1")  # another parent: fine
    scope.release()
    root.keyed_child("request-1")  # released: fine again


@pytest.mark.parametrize("key", [1.5, True, None, ["list"], {"a": 1}, ("ok", 2.0)])
def test_keys_of_other_types_are_refused(key):
    with pytest.raises(TypeError, match="scope key"):
        encode_key(key)


def test_keys_of_different_types_are_different():
    assert len({encode_key(k) for k in (1, "1", b"1", (1,), ("1",), -1, 2**70)}) == 7


def test_one_task_owns_a_scope_until_it_is_done():
    root, comm = player()
    owner, other = Task("owner"), Task("other")
    state = root.state(comm)
    state.take(owner)
    with pytest.raises(NotOwner) as info:
        state.take(other)
    assert info.value.owner is owner
    root.user_child(owner)  # the counter of user operations has its owner too
    with pytest.raises(NotOwner):
        root.user_child(other)
    owner.finished = True  # once done, the next task to use the scope owns it
    state.take(other)
    root.user_child(other)
    with pytest.raises(NotOwner):
        state.take(Task("third"))


def test_an_owner_awaiting_a_task_hands_the_scope_to_it():
    root, comm = player()
    owner, child = Task("owner"), Task("child")
    state = root.state(comm)
    state.take(owner)
    owner._fut_waiter = child  # await asyncio.create_task(...)
    state.take(child)
    child.finished = True
    owner._fut_waiter = None
    state.take(owner)


def test_owners_are_per_communicator():
    root, first = player()
    second = Numbering(SALT + 1, root)
    one, two = Task("one"), Task("two")
    root.state(first).take(one)
    root.state(second).take(two)  # each task numbers its own communicator: no conflict


def test_a_new_communicator_numbers_user_operations_afresh_where_survivors_diverged():
    """Survivors that failed at the same operation may have called different numbers of user
    operations before failing; after shrink, the new communicator's operations inside user
    operations must still match (else they would meet the wrong partners)."""
    (root_a, old_a), (root_b, old_b) = player(), player()
    for _ in range(4):
        root_a.user_child(None)
    for _ in range(2):
        root_b.user_child(None)  # b failed before calling two of them
    new_a, new_b = Numbering(SALT ^ 1, root_a), Numbering(SALT ^ 1, root_b)  # the shrink
    for _ in range(3):
        user_a, user_b = root_a.user_child(None), root_b.user_child(None)
        assert idents(user_a, new_a, 3) == idents(user_b, new_b, 3)
    # The old communicator, had it survived, would not match there: its numbering is absolute.
    assert idents(root_a.user_child(None), old_a, 1) != idents(root_b.user_child(None), old_b, 1)


def test_scopes_made_before_a_communicator_keep_their_absolute_numbers():
    (root_a, _), (root_b, _) = player(), player()
    outer_a, outer_b = root_a.user_child(None), root_b.user_child(None)  # e.g. the main loop
    new_a, new_b = Numbering(SALT ^ 2, outer_a), Numbering(SALT ^ 2, outer_b)  # created inside it
    assert idents(outer_a, new_a, 5) == idents(outer_b, new_b, 5)
    assert idents(outer_a.user_child(None), new_a, 2) == idents(outer_b.user_child(None), new_b, 2)


def test_roots_with_different_labels_do_not_collide():
    comm = Numbering(SALT, None)
    first, second = Scope.root(("run", 1)), Scope.root(("run", 2))
    assert set(idents(first, comm, 20)).isdisjoint(idents(second, comm, 20))
    assert idents(Scope.root(("run", 1)), Numbering(SALT, None), 20) == idents(first, Numbering(SALT, None), 20)


def test_mix_is_a_bijection_on_a_sample():
    values = list(range(10_000)) + [2**64 - 1 - v for v in range(10_000)]
    assert len({mix(v) for v in values}) == len(values)


def test_describe_names_the_path():
    root, comm = player()
    child = root.user_child(None).keyed_child("req-7").operation_child(comm, 2)
    assert child.describe() == "root/user operation 0/key 'req-7'/operation 2"
