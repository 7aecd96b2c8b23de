"""Shared fixtures: every test runs once on stdlib asyncio and once on ferroloop.

The ``impl`` fixture is parametrised with the ids ``asyncio`` and ``ferroloop``;
stdlib asyncio is the reference implementation.  The ferroloop param is skipped
(with the import error as the reason) only when ``import ferroloop`` fails.

The ``loop`` / ``new_loop`` fixtures create loops whose exception handler records
every context it receives; at teardown the loops are closed, ``gc.collect()`` is
run, and the test fails if any context reached a handler and was not consumed by
the test (tests that expect errors inspect and clear the ``loop_errors`` list, or
install their own handler).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import pathlib
import sys

import pytest

_HERE = pathlib.Path(__file__).resolve().parent
if str(_HERE) not in sys.path:  # make ferro_testutil importable under any --import-mode
    sys.path.insert(0, str(_HERE))

_util = importlib.import_module("ferro_testutil")
FERROLOOP_IMPORT_ERROR = _util.FERROLOOP_IMPORT_ERROR
IMPLS = _util.IMPLS
Impl = _util.Impl
format_contexts = _util.format_contexts

_DEFAULT_TIMEOUT = 60


def pytest_collection_modifyitems(config, items):
    """Give every test of this suite a safety timeout, so a hang fails one test only."""
    for item in items:
        path = pathlib.Path(str(item.fspath)).resolve()
        if path.parent != _HERE:
            continue
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(_DEFAULT_TIMEOUT))


@pytest.fixture(params=list(IMPLS), ids=list(IMPLS))
def impl(request) -> Impl:
    """The implementation under test: stdlib ``asyncio`` (reference) or ``ferroloop``."""
    if request.param == "ferroloop" and FERROLOOP_IMPORT_ERROR is not None:
        pytest.skip(f"ferroloop is not importable: {FERROLOOP_IMPORT_ERROR!r}")
    return IMPLS[request.param]


@pytest.fixture
def ferroloop_only(impl: Impl) -> Impl:
    """Like ``impl``, for checks of ferroloop-only entry points with no asyncio counterpart."""
    if impl.name != "ferroloop":
        pytest.skip("checks a ferroloop-only entry point; stdlib asyncio has no counterpart")
    return impl


@pytest.fixture
def loop_errors() -> list[dict]:
    """Contexts that reached the exception handler of the fixture loops (tests may clear it)."""
    return []


@pytest.fixture
def new_loop(impl: Impl, loop_errors: list[dict]):
    """Factory for loops of the implementation under test; closed and checked at teardown."""
    loops: list[asyncio.AbstractEventLoop] = []

    def record(loop, context):
        loop_errors.append(context)

    def factory(*, record_errors: bool = True) -> asyncio.AbstractEventLoop:
        loop = impl.new_event_loop()
        if record_errors:
            loop.set_exception_handler(record)
        loops.append(loop)
        return loop

    saved_policy = asyncio.get_event_loop_policy()
    yield factory

    problems = []
    for loop in loops:
        if loop.is_running():
            problems.append(f"{loop!r} is still running at teardown")
            continue
        if not loop.is_closed():
            loop.close()
    if asyncio.get_event_loop_policy() is not saved_policy:
        asyncio.set_event_loop_policy(saved_policy)
        problems.append("the test changed the event loop policy and did not restore it")
    asyncio.set_event_loop(None)
    loops.clear()
    gc.collect()
    if loop_errors:
        problems.append(
            "unexpected exceptions reached the loop exception handler:\n"
            + format_contexts(loop_errors)
        )
        loop_errors.clear()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def loop(new_loop) -> asyncio.AbstractEventLoop:
    """A fresh loop of the implementation under test, with a recording exception handler."""
    return new_loop()


@pytest.fixture
def debug_loop(loop) -> asyncio.AbstractEventLoop:
    """The ``loop`` fixture in debug mode."""
    loop.set_debug(True)
    return loop


@pytest.fixture
def asyncio_logger_caplog(caplog):
    """``caplog`` capturing everything the ``asyncio`` logger emits."""
    caplog.set_level("DEBUG", logger="asyncio")
    return caplog


def pytest_report_header(config):
    """Say in the header whether the ferroloop half of the suite can run."""
    if FERROLOOP_IMPORT_ERROR is None:
        return "ferroloop: importable, every test runs on asyncio and ferroloop"
    return f"ferroloop: NOT importable ({FERROLOOP_IMPORT_ERROR!r}); ferroloop params skip"
