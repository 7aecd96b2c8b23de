"""What a closed loop refuses ('Event loop is closed') and what it still allows."""

from __future__ import annotations

import gc
import subprocess
import sys
import warnings

import pytest

CLOSED = "Event loop is closed"


async def _coro():
    return None


@pytest.fixture
def closed_loop(loop):
    """A loop of the implementation under test, already closed."""
    loop.close()
    return loop


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda lp: lp.call_soon(print), id="call_soon"),
        pytest.param(lambda lp: lp.call_later(1, print), id="call_later"),
        pytest.param(lambda lp: lp.call_at(1.0, print), id="call_at"),
        pytest.param(lambda lp: lp.call_soon_threadsafe(print), id="call_soon_threadsafe"),
        pytest.param(lambda lp: lp.run_forever(), id="run_forever"),
        pytest.param(lambda lp: lp.run_in_executor(None, print), id="run_in_executor"),
    ],
)
def test_closed_loop_refuses(closed_loop, call):
    with pytest.raises(RuntimeError) as info:
        call(closed_loop)
    assert str(info.value) == CLOSED


def test_create_task_on_closed_loop(closed_loop):
    coro = _coro()
    try:
        with pytest.raises(RuntimeError) as info:
            closed_loop.create_task(coro)
        assert str(info.value) == CLOSED
    finally:
        coro.close()


def test_run_until_complete_on_closed_loop(closed_loop):
    coro = _coro()
    try:
        with pytest.raises(RuntimeError) as info:
            closed_loop.run_until_complete(coro)
        assert str(info.value) == CLOSED
    finally:
        coro.close()


def test_run_until_complete_future_on_closed_loop(closed_loop):
    fut = closed_loop.create_future()
    with pytest.raises(RuntimeError) as info:
        closed_loop.run_until_complete(fut)
    assert str(info.value) == CLOSED


def test_closed_checked_before_arguments(closed_loop):
    with pytest.raises(RuntimeError) as info:
        closed_loop.call_soon(1)
    assert str(info.value) == CLOSED


def test_call_later_none_checked_before_closed(closed_loop):
    with pytest.raises(TypeError) as info:
        closed_loop.call_later(None, print)
    assert str(info.value) == "delay must not be None"
    with pytest.raises(TypeError) as info:
        closed_loop.call_at(None, print)
    assert str(info.value) == "when cannot be None"


def test_closed_loop_still_allows(closed_loop):
    assert closed_loop.is_closed()
    assert not closed_loop.is_running()
    assert isinstance(closed_loop.time(), float)
    closed_loop.set_debug(True)
    assert closed_loop.get_debug() is True
    closed_loop.set_debug(False)
    fut = closed_loop.create_future()
    assert not fut.done()
    fut.set_result(1)
    assert fut.result() == 1
    closed_loop.stop()
    closed_loop.close()


def test_future_with_callbacks_on_closed_loop(closed_loop):
    fut = closed_loop.create_future()
    fut.add_done_callback(lambda f: None)
    with pytest.raises(RuntimeError) as info:
        fut.set_result(1)
    assert str(info.value) == CLOSED


def test_handles_of_closed_loop_can_be_cancelled(loop):
    h = loop.call_soon(print)
    th = loop.call_later(10, print)
    loop.close()
    h.cancel()
    th.cancel()
    assert h.cancelled() and th.cancelled()


def test_exception_handler_usable_after_close(closed_loop, loop_errors):
    closed_loop.call_exception_handler({"message": "after close"})
    assert [c["message"] for c in loop_errors] == ["after close"]
    loop_errors.clear()


def test_shutdown_asyncgens_coroutine_cannot_run_on_closed(closed_loop):
    coro = closed_loop.shutdown_asyncgens()
    try:
        with pytest.raises(RuntimeError) as info:
            closed_loop.run_until_complete(coro)
        assert str(info.value) == CLOSED
    finally:
        coro.close()


def test_unclosed_loop_resource_warning(impl):
    loop = impl.new_event_loop()
    loop_repr = repr(loop)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del loop
        gc.collect()
    messages = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert f"unclosed event loop {loop_repr}" in messages


_UNCLOSED_AT_EXIT = """
import asyncio, signal, sys
if sys.argv[1] == "ferroloop":
    import ferroloop
    loop = ferroloop.new_event_loop()
else:
    loop = asyncio.SelectorEventLoop()
asyncio.set_event_loop(loop)
if sys.argv[2] == "signal":
    loop.add_signal_handler(signal.SIGUSR1, print)
async def main():
    if sys.argv[2] == "timer":
        loop.call_later(3600, print)
    return 1
print(loop.run_until_complete(main()))
"""


@pytest.mark.parametrize("extra", ["nothing", "timer", "signal"])
def test_loop_left_unclosed_at_interpreter_exit(impl, extra):
    """A loop never closed is collected at exit, maybe after the modules were torn
    down: nothing is printed but the program's output, and the exit status is 0."""
    proc = subprocess.run(
        [sys.executable, "-c", _UNCLOSED_AT_EXIT, impl.name, extra],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "1\n", "")
