"""Operation identities: which frames belong to which operation.  Sans-IO.

Players run the same program, but their event loops interleave concurrent work differently,
so arrival order cannot tell which message belongs to which operation.  Instead every
operation takes an *identity* when it is called, from its place in the program's call tree
(as MPyC's "program counter" does), and the frames it sends carry that identity.  Receivers
match (communicator, source, identity, round) exactly.

The scheme
----------
*Scopes* form a tree.  Each player has a root; the caller's current scope is held by the
glue (:mod:`cicada_async.operations`, a ``contextvars`` variable), so concurrent tasks each
see their own.  Children are named by how they were made:

* an **operation scope** holds what an operation runs inside itself; it is named by the
  operation (the communicator's salt and the operation's number in the parent);
* a **user scope** is the body of a coroutine decorated with ``@cicada_async.operation``;
  it is named by the number of user operations called before it in the parent;
* a **keyed scope** (``with cicada_async.scope(key):``) is named by its key alone, so its
  name does not depend on what ran before it.

Numbers are counted *per communicator*: in every scope, the k-th operation called on
communicator C gets number k.  User operations are not tied to a communicator; they are
counted in their parent by a counter of their own.

For a communicator C, each scope S has a 64-bit *path* ``path(S, C)``, a blake2b digest:

* root: ``H("root", salt_C, label)``, where the salt is C's communicator id and the label
  tells apart roots of several players sharing one process (``cicada_async.testing``);
* operation scope of the k-th operation of communicator D in P, of kind K:
  ``H("op", path(P, C), salt_D, k, K)`` (so two players that called different composite
  operations at the same point number what runs inside them apart);
* keyed scope: ``H("key", path(P, C), key)``;
* user scope number u in P: ``H("user", path(P, C), u - base)`` if it was created after C
  was, else ``H("user-before", path(P, C), u)``.  ``base`` is the number of user operations
  P had seen when C was created (0 for scopes C's creator was not inside).  This is how "a
  communicator made by shrink or split numbers afresh in every scope" covers user
  operations too: survivors that failed at the same operation but had called different
  numbers of user operations before failing still number everything after ``shrink`` alike.

The identity of the k-th operation of C in S is ``mix((path(S, C) ^ chain) + k * G)``: for a
fixed path and chain a bijection of k (G is odd), and random-looking across scopes.  ``chain``
starts at 0 and folds in the *roles* of the rooted operations taken before in (S, C): who
shares, who broadcasts, who receives a gather or a reveal (``roles``, a nonzero 64-bit code,
given by the operation; 0 for operations without a root).  Players that agree on every role
number exactly as without it.  Players whose programs diverged in a role (``share(src=0)``
here, ``share(src=1)`` there, each only sending) would otherwise match every later
operation and compute on each other's unrelated data; with the chain their identities part
after that operation, nothing more matches, and the next receive fails at its deadline
instead of returning a wrong value.  (The operation itself keeps the plain identity, so a
peer running another kind of operation there is still told apart by its tag.)

Point-to-point messages take no identity; they match (source, tag) in FIFO order within a
scope, through the key ``H("p2p", path(S, C), tag)``.

Ownership: each (scope, communicator) pair, and each scope's counter of user operations, is
owned by one task: the first to take a number there, or the next one after the owner is done
(or while the owner is blocked awaiting that very task).  A number taken from another task
while the owner runs raises :class:`NotOwner` (the glue turns it into
:class:`~cicada_async.errors.ConcurrencyError`): its order relative to the owner's numbers
depends on scheduling, which differs between players.

Invariants
----------
1. Same calls in the same order in each scope give the same identities on every player
   (nothing here depends on time, tasks or memory addresses; only on the numbers, keys and
   communicator ids, which are equal everywhere).
2. A child scope never collides with its parent: paths are digests over a domain tag, the
   parent's path and the child's name, and identities are derived from paths by a further
   step, so no identity equals a path or a point-to-point key except by a 64-bit accident.
3. A key names a scope independently of order: its path depends only on the parent and the key.
4. An identity is never reused on a communicator: numbers only grow, per (scope, communicator)
   (once a chain is folded in, two operations of one scope collide only by a 64-bit accident).
5. A communicator created later numbers from zero in every scope (see ``base`` above).
"""

from __future__ import annotations

import hashlib
import itertools
import struct
import weakref
from typing import Any

__all__ = ["KeyTypes", "NotOwner", "Numbering", "Scope", "ScopeState", "encode_key", "mix", "roles_code"]

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # odd: k -> k * G is a bijection modulo 2**64
_clock = itertools.count(1)  # orders scope creations and communicator births in this process
_Q = struct.Struct("<Q")
_QQ = struct.Struct("<QQ")
_QQQ = struct.Struct("<QQQ")

KeyTypes = (str, int, bytes, tuple)


def _digest(domain: bytes, data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=domain).digest(), "little")


def mix(value: int) -> int:
    """A bijection of 64-bit integers that scatters its input (the splitmix64 finaliser)."""
    value &= _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def encode_key(key: Any) -> bytes:
    """Canonical bytes of a scope key: a str, int, bytes or a (nested) tuple of them.

    Raises
    ------
    TypeError
        For anything else (including ``bool`` and ``float``, which compare equal to ints).
    """
    if isinstance(key, bool) or not isinstance(key, KeyTypes):
        raise TypeError(f"a scope key must be a str, int, bytes or tuple of them, got {type(key).__name__}")
    if isinstance(key, str):
        data = key.encode("utf-8")
        return b"s" + _Q.pack(len(data)) + data
    if isinstance(key, bytes):
        return b"b" + _Q.pack(len(key)) + key
    if isinstance(key, int):
        data = key.to_bytes((key.bit_length() + 8) // 8, "little", signed=True)
        return b"i" + _Q.pack(len(data)) + data
    parts = [encode_key(item) for item in key]
    return b"t" + _Q.pack(len(parts)) + b"".join(parts)


class NotOwner(Exception):
    """A number was asked for by a task that does not own the scope; ``owner`` is the owner."""

    def __init__(self, owner: Any) -> None:
        super().__init__(owner)
        self.owner = owner


def _check_owner(holder: ScopeState | Scope, task: Any) -> None:
    """Make ``task`` the owner unless another, unfinished task owns ``holder``.

    An owner that is blocked awaiting ``task`` itself (``await asyncio.create_task(...)``)
    hands the scope on: it cannot take a number before ``task`` is done.  (Tasks expose the
    future they wait for as ``_fut_waiter``, in asyncio and uvloop alike.)
    """
    ref = holder.owner
    owner = None if ref is None else ref()
    if owner is task:
        return
    if owner is not None and not owner.done() and getattr(owner, "_fut_waiter", None) is not task:
        raise NotOwner(owner)
    holder.owner = None if task is None else weakref.ref(task)


class ScopeState:
    """The numbering of one communicator in one scope."""

    __slots__ = ("base", "next", "owner", "p2p", "path")

    def __init__(self, path: int) -> None:
        self.path = path
        self.base = path  # path ^ chain (see the module docstring)
        self.next = 0
        self.owner: weakref.ref[Any] | None = None
        self.p2p: dict[int, int] = {}

    def take(self, task: Any, roles: int = 0) -> int:
        """Take the next number and return its identity (``task`` must own the state).

        ``roles``: the operation's roles code (nonzero for rooted operations, see
        :func:`roles_code`); it is folded into every later identity of the state.
        """
        ref = self.owner
        if ref is None or ref() is not task:
            _check_owner(self, task)
        number = self.next
        self.next = number + 1
        base = self.base
        if roles:
            self.base = self.path ^ mix((base ^ self.path) + roles * _GOLDEN + number)
        return mix(base + number * _GOLDEN)

    def peek(self) -> int:
        """The number the next operation will get."""
        return self.next

    def p2p_key(self, tag: int) -> int:
        """The matching key of point-to-point messages with ``tag`` in this scope."""
        key = self.p2p.get(tag)
        if key is None:
            key = self.p2p[tag] = _digest(b"p2p", _QQ.pack(self.path, tag & _MASK))
        return key


def roles_code(*roles: int | tuple[int, ...]) -> int:
    """A nonzero 64-bit code of an operation's roles (ranks, or tuples of ranks, >= 0).

    ``roles_code(src)`` for a share or a broadcast; ``roles_code(src, tuple(dst))`` for a
    scatterv.  Equal arguments give equal codes on every player (no hashing of memory or
    process state).
    """
    code = 0x2545F4914F6CDD1D
    for role in roles:
        if isinstance(role, int):
            code = mix(code + role + 1)
        else:
            code = mix(code + 0x9E37 + len(role))
            for rank in role:
                code = mix(code + rank + 1)
    return code or 1


class Numbering:
    """A communicator's side of the scheme: its salt, when it was created, and the user-
    operation counts of the scopes its creator was inside (``base`` in the module docstring).

    Parameters
    ----------
    salt:
        The communicator id (equal on every member).
    chain:
        The creator's current scope; it and its ancestors get their bases recorded.
    """

    __slots__ = ("__weakref__", "bases", "birth", "salt")

    def __init__(self, salt: int, chain: Scope | None) -> None:
        self.salt = salt & _MASK
        self.birth = next(_clock)
        bases: dict[Scope, int] = {}
        scope = chain
        while scope is not None:
            bases[scope] = scope.user_next
            scope = scope.parent
        self.bases = bases


_ROOT, _OPERATION, _USER, _KEYED = range(4)


class Scope:
    """A node of the scope tree.  Create roots with :meth:`root`; children with
    :meth:`operation_child`, :meth:`user_child` and :meth:`keyed_child`."""

    __slots__ = ("__weakref__", "created", "kind", "label", "live_keys", "owner", "parent", "states",
                 "user_next")

    def __init__(self, parent: Scope | None = None, kind: int = _ROOT, label: Any = None) -> None:
        self.parent = parent
        self.kind = kind
        self.label = label
        self.created = next(_clock)
        self.user_next = 0
        self.owner: weakref.ref[Any] | None = None  # owner of the user-operation counter
        self.states: dict[Numbering, ScopeState] = {}
        self.live_keys: set[bytes] = set()

    def __repr__(self) -> str:
        return f"<Scope {self.describe()}>"

    @classmethod
    def root(cls, label: Any = None) -> Scope:
        """A root scope.  Players whose roots have equal labels number alike."""
        return cls(None, _ROOT, encode_key(label) if label is not None else b"")

    def describe(self) -> str:
        """Where this scope is, for people: e.g. ``root/operation 3/key 'request-7'``."""
        names = []
        scope: Scope | None = self
        while scope is not None:
            if scope.kind == _ROOT:
                names.append("root")
            elif scope.kind == _OPERATION:
                names.append(f"operation {scope.label[1]}")
            elif scope.kind == _USER:
                names.append(f"user operation {scope.label}")
            else:
                names.append(f"key {scope.label[1]!r}")
            scope = scope.parent
        return "/".join(reversed(names))

    # -- numbering ---------------------------------------------------------------------
    def state(self, numbering: Numbering) -> ScopeState:
        """This scope's numbering for a communicator (created on first use)."""
        state = self.states.get(numbering)
        if state is None:
            state = self.states[numbering] = ScopeState(self.path(numbering))
        return state

    def path(self, numbering: Numbering) -> int:
        """``path(self, C)`` of the module docstring."""
        state = self.states.get(numbering)
        if state is not None:
            return state.path
        parent = self.parent
        if parent is None:
            return _digest(b"root", _Q.pack(numbering.salt) + (self.label or b""))
        above = parent.path(numbering)
        if self.kind == _OPERATION:
            salt, number, kind = self.label
            return _digest(b"op", _QQQ.pack(above, salt, number) + _Q.pack(kind & _MASK))
        if self.kind == _KEYED:
            return _digest(b"key", _Q.pack(above) + self.label[0])
        number = self.label
        if self.created > numbering.birth:
            return _digest(b"user", _QQ.pack(above, number - numbering.bases.get(parent, 0)))
        return _digest(b"user-before", _QQ.pack(above, number))

    # -- children ----------------------------------------------------------------------
    def operation_child(self, numbering: Numbering, number: int, kind: int = 0) -> Scope:
        """The scope of what the ``number``-th operation of a communicator, of ``kind``, runs
        inside itself."""
        return Scope(self, _OPERATION, (numbering.salt, number, kind))

    def user_child(self, task: Any) -> Scope:
        """Take the next user-operation number (``task`` must own the counter); return its scope."""
        ref = self.owner
        if ref is None or ref() is not task:
            _check_owner(self, task)
        number = self.user_next
        self.user_next = number + 1
        return Scope(self, _USER, number)

    def keyed_child(self, key: Any) -> Scope:
        """A scope named by ``key``; :meth:`release` it when done.

        Raises
        ------
        TypeError
            If ``key`` is not a str, int, bytes or tuple of them.
        ValueError
            If a scope with an equal key is still live under this scope.
        """
        data = encode_key(key)
        if data in self.live_keys:
            raise ValueError(f"scope key {key!r} is already in use in {self.describe()}; keys must be unique "
                             "among the scopes open at the same time under one parent")
        self.live_keys.add(data)
        return Scope(self, _KEYED, (data, key))

    def release(self) -> None:
        """A keyed scope is done: its key may be used again under the same parent."""
        if self.kind == _KEYED and self.parent is not None:
            self.parent.live_keys.discard(self.label[0])
