"""Shared test configuration.

* Tests marked ``both_loops`` run once on asyncio's loop and once on uvloop (when installed);
  the rest run on asyncio's loop.
* Any exception that reaches an event loop's exception handler (an error in a callback, a
  task destroyed while pending with an exception never retrieved, ...) fails the test.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is in the test extra
    uvloop = None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_loops: run on asyncio's event loop and on uvloop")


_UNHANDLED: list[dict] = []


def _guarded(factory: Callable[[], asyncio.AbstractEventLoop]) -> Callable[[], asyncio.AbstractEventLoop]:
    def make() -> asyncio.AbstractEventLoop:
        loop = factory()

        def handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
            _UNHANDLED.append(context)
            loop.default_exception_handler(context)

        loop.set_exception_handler(handler)
        return loop

    return make


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item):
    factories = {"asyncio": _guarded(asyncio.new_event_loop)}
    if item.get_closest_marker("both_loops") and uvloop is not None:
        factories["uvloop"] = _guarded(uvloop.new_event_loop)
    return factories


@pytest.fixture(autouse=True)
def _no_unhandled_loop_errors():
    _UNHANDLED.clear()
    yield
    errors = list(_UNHANDLED)
    _UNHANDLED.clear()
    if errors:
        pytest.fail(f"unhandled exceptions in the event loop: {[e.get('message') for e in errors]} "
                    f"{[repr(e.get('exception')) for e in errors]}")


@pytest.fixture
def caplog_warnings(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING)
    return caplog


@pytest.fixture
def watchdog():
    """Resume and then kill stray player processes if a test goes wrong, so nothing hangs
    (a test that stops a player with SIGSTOP would otherwise wait for it forever)."""
    import contextlib
    import multiprocessing
    import os
    import signal
    import threading

    done = threading.Event()

    def guard() -> None:
        if done.wait(60):
            return
        for child in multiprocessing.active_children():
            with contextlib.suppress(OSError):
                os.kill(child.pid, signal.SIGCONT)
        if done.wait(10):
            return
        for child in multiprocessing.active_children():
            with contextlib.suppress(OSError):
                os.kill(child.pid, signal.SIGKILL)

    thread = threading.Thread(target=guard, daemon=True)
    thread.start()
    yield
    done.set()
    thread.join()
