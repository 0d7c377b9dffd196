"""The examples run, and the public surface stays what SPEC promises."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

import cicada_async
import cicada_async.communicator as communicator_module
import cicada_async.communicator.connect as connect_module
import cicada_async.errors as errors_module

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.processes
def test_embedded_service_example():
    """Players inside asyncio TCP services answer six concurrent clients, whose requests reach
    the players in different orders, each request in its own keyed scope: all answers right."""
    output = subprocess.run([sys.executable, str(EXAMPLES / "embedded_service.py")], capture_output=True,
                            text=True, timeout=120)
    assert output.returncode == 0, output.stderr
    lines = output.stdout.splitlines()
    answers = [line for line in lines if line.startswith("client-")]
    assert answers == [f"client-{i} asked 'sum', the players answered: 60.0, 60.0, 60.0" for i in range(6)], lines
    orders = [line.split(": ")[1].split() for line in lines if line.startswith("player ")]
    assert len(orders) == 3 and all(sorted(order) == [f"client-{i}" for i in range(6)] for order in orders)
    assert len({tuple(order) for order in orders}) > 1, "the requests should reach the players in different orders"


@pytest.mark.processes
def test_secret_sum_example():
    output = subprocess.run([sys.executable, str(EXAMPLES / "secret_sum.py")], capture_output=True, text=True,
                            timeout=120)
    assert output.returncode == 0, output.stderr
    assert "every player computed total 10028" in output.stdout


def test_public_api_is_pinned():
    assert set(cicada_async.__all__) == {
        "AsyncSocketCommunicator", "AuthenticationError", "Communicator", "CommunicatorError",
        "ConcurrencyError", "Excluded", "Failed", "Logger", "NotRunning", "Operation", "PeerFailed",
        "RemoteProtocolError", "Revoked", "Tag", "Terminated", "Timeout", "TokenMismatch", "__version__",
        "operation", "scope",
    }
    assert cicada_async.operation is cicada_async.operations.operation
    assert cicada_async.scope is cicada_async.operations.scope
    for name in ("AsyncSocketCommunicator", "Communicator", "Failed", "Terminated", "Tag"):
        assert getattr(communicator_module, name) is getattr(cicada_async, name)
    for name in ("Timer", "listen", "direct", "rendezvous"):
        assert callable(getattr(connect_module, name))
    for name in ("CommunicatorError", "Timeout", "PeerFailed", "Revoked", "Excluded", "NotRunning",
                 "TokenMismatch", "AuthenticationError", "RemoteProtocolError", "ConcurrencyError"):
        assert getattr(errors_module, name) is getattr(cicada_async, name)
        assert issubclass(getattr(errors_module, name), cicada_async.CommunicatorError)
    assert issubclass(cicada_async.Timeout, TimeoutError)
    from cicada_async.encoding import Bits, Boolean, FixedPoint, Identity  # noqa: F401
    from cicada_async.shamir import ShamirArrayShare, ShamirBasicProtocolSuite, ShamirProtocolSuite  # noqa: F401
    from cicada_async.testing import World, create_world  # noqa: F401
    assert (pathlib.Path(cicada_async.__file__).parent / "py.typed").exists()


def test_communicator_methods_and_coroutines():
    import inspect

    cls = cicada_async.AsyncSocketCommunicator
    for name in ("send", "recv", "revoke", "shrink", "split", "free", "connect", "exchange", "exchange_batch"):
        assert inspect.iscoroutinefunction(getattr(cls, name)), name
    # Operations take their identity when called, so they are plain methods returning awaitables.
    for name in ("allgather", "barrier", "broadcast", "gather", "gatherv", "scatter", "scatterv", "begin",
                 "isend", "irecv", "run", "override"):
        assert not inspect.iscoroutinefunction(getattr(cls, name)), name
    for name in ("name", "rank", "ranks", "world_size", "timeout", "revoked", "stats"):
        assert isinstance(inspect.getattr_static(cls, name), property) or name == "ranks", name


def test_library_code_never_starts_loops_or_configures_logging():
    import ast

    package = pathlib.Path(cicada_async.__file__).parent
    for path in package.rglob("*.py"):
        if path.name in ("cli.py", "launcher.py"):
            continue  # the two places allowed to pick an event loop
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("run", "set_event_loop_policy", "basicConfig",
                                                                 "addHandler"):
                base = node.value
                if isinstance(base, ast.Name) and base.id in ("asyncio", "logging"):
                    pytest.fail(f"{path.name} calls {base.id}.{node.attr}")
    # Only the launcher may pickle: it carries a player's own result to the process that started
    # it (a local run's parent, or a launched process supervising its player).
    for path in package.rglob("*.py"):
        if path.name != "launcher.py":
            text = path.read_text()
            assert "import pickle" not in text and "from pickle" not in text, path.name
