"""Debug mode: get/set_debug, PYTHONASYNCIODEBUG, slow callbacks, thread checks, tracebacks."""

from __future__ import annotations

import asyncio
import inspect
import re
import sys
import threading
import time

import pytest
from ferro_testutil import asyncio_records, callback_source, clean_env, run_briefly, run_python

HERE = __file__


def _line() -> int:
    """Line number of the caller."""
    return inspect.currentframe().f_back.f_lineno


def _last_frame_here(tb):
    """The innermost (filename, lineno) of ``tb`` that lies in this file."""
    frames = [(f[0], f[1]) for f in tb if f[0] == HERE]
    return frames[-1] if frames else None


def test_debug_off_by_default(loop):
    assert loop.get_debug() is False


def test_set_debug(loop):
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_get_debug_returns_what_set_debug_was_given(loop):
    """asyncio stores the object as given; only its truth value switches debug mode."""
    loop.set_debug(1)
    assert loop.get_debug() == 1 and type(loop.get_debug()) is int
    assert loop._debug == 1
    loop.set_debug("")
    assert loop.get_debug() == ""
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_repr_shows_debug(loop):
    loop.set_debug(True)
    assert "debug=True" in repr(loop)


SCRIPT_DEBUG = """
import asyncio, sys
impl = sys.argv[1]
if impl == "ferroloop":
    import ferroloop
    loop = ferroloop.new_event_loop()
else:
    loop = asyncio.SelectorEventLoop()
print(loop.get_debug())
loop.close()
"""


@pytest.mark.parametrize(
    "env, flags, expected",
    [
        ({}, [], "False"),
        ({"PYTHONASYNCIODEBUG": "1"}, [], "True"),
        ({"PYTHONASYNCIODEBUG": ""}, [], "False"),
        ({}, ["-X", "dev"], "True"),
    ],
    ids=["default", "PYTHONASYNCIODEBUG=1", "PYTHONASYNCIODEBUG-empty", "-X-dev"],
)
def test_debug_from_environment(impl, env, flags, expected):
    proc = run_python([sys.executable, *flags, "-c", SCRIPT_DEBUG, impl.name], env=clean_env(**env))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


def test_run_debug_argument(impl):
    async def main():
        return asyncio.get_running_loop().get_debug()

    assert impl.run(main(), debug=True) is True
    assert impl.run(main(), debug=False) is False


def test_slow_callback_warning(debug_loop, asyncio_logger_caplog):
    loop = debug_loop
    assert loop.slow_callback_duration == 0.1
    loop.slow_callback_duration = 0.01
    loop.call_soon(time.sleep, 0.05)
    run_briefly(loop)
    records = [r for r in asyncio_records(asyncio_logger_caplog) if "took" in r.getMessage()]
    assert len(records) == 1
    assert records[0].levelname == "WARNING"
    msg = records[0].getMessage()
    assert re.fullmatch(
        r"Executing <Handle sleep\(0\.05\) created at .*test_debug\.py:\d+> "
        r"took \d+\.\d{3} seconds",
        msg,
    ), msg
    took = float(re.search(r"took (\d+\.\d{3}) seconds", msg).group(1))
    assert took >= 0.04


def test_slow_task_step_warning(debug_loop, asyncio_logger_caplog):
    loop = debug_loop
    loop.slow_callback_duration = 0.01

    async def slow():
        time.sleep(0.05)  # noqa: ASYNC251 - a deliberately slow task step

    loop.run_until_complete(loop.create_task(slow(), name="slowpoke"))
    msgs = [
        r.getMessage() for r in asyncio_records(asyncio_logger_caplog) if "took" in r.getMessage()
    ]
    assert len(msgs) == 1, msgs
    assert re.fullmatch(r"Executing <Task .*name='slowpoke'.*> took \d+\.\d{3} seconds", msgs[0]), (
        msgs[0]
    )


def test_no_slow_warning_without_debug(loop, asyncio_logger_caplog):
    loop.slow_callback_duration = 0.01
    loop.call_soon(time.sleep, 0.03)
    run_briefly(loop)
    assert not [r for r in asyncio_records(asyncio_logger_caplog) if "took" in r.getMessage()]


def test_fast_callbacks_no_warning(debug_loop, asyncio_logger_caplog):
    for _ in range(10):
        debug_loop.call_soon(lambda: None)
    run_briefly(debug_loop)
    assert not [r for r in asyncio_records(asyncio_logger_caplog) if "took" in r.getMessage()]


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at"])
def test_wrong_thread_in_debug_raises(debug_loop, method):
    loop = debug_loop
    errors = []

    def other_thread():
        try:
            if method == "call_soon":
                loop.call_soon(lambda: None)
            elif method == "call_later":
                loop.call_later(1, lambda: None)
            else:
                loop.call_at(loop.time() + 1, lambda: None)
        except RuntimeError as e:
            errors.append(str(e))
        finally:
            loop.call_soon_threadsafe(loop.stop)

    def start():
        threading.Thread(target=other_thread, daemon=True).start()

    loop.call_soon(start)
    loop.call_later(30, loop.stop)
    loop.run_forever()
    assert errors == [
        "Non-thread-safe operation invoked on an event loop other than the current one"
    ]


def test_wrong_thread_without_debug_is_not_checked(loop):
    errors = []
    done = threading.Event()

    def other_thread():
        try:
            h = loop.call_soon(lambda: None)
            h.cancel()
        except RuntimeError as e:
            errors.append(str(e))
        finally:
            done.set()
            loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(lambda: threading.Thread(target=other_thread, daemon=True).start())
    loop.call_later(30, loop.stop)
    loop.run_forever()
    assert done.is_set()
    assert errors == []


def test_call_soon_from_other_thread_when_not_running_is_allowed(debug_loop):
    errors = []

    def other():
        try:
            debug_loop.call_soon(lambda: None)
        except RuntimeError as e:
            errors.append(e)

    t = threading.Thread(target=other)
    t.start()
    t.join(30)
    assert errors == []
    run_briefly(debug_loop)


def test_source_traceback_on_handles(debug_loop):
    loop = debug_loop

    def cb():
        pass

    h, line_soon = loop.call_soon(cb), _line()
    th, line_later = loop.call_later(10, cb), _line()
    ta, line_at = loop.call_at(loop.time() + 10, cb), _line()
    hs, line_ts = loop.call_soon_threadsafe(cb), _line()
    assert h._source_traceback[-1][:2] == (HERE, line_soon)
    assert th._source_traceback[-1][:2] == (HERE, line_later)
    assert ta._source_traceback[-1][:2] == (HERE, line_at)
    assert hs._source_traceback[-1][:2] == (HERE, line_ts)
    assert repr(h) == f"<Handle {callback_source(cb)} created at {HERE}:{line_soon}>"
    h.cancel()
    assert repr(h) == f"<Handle cancelled {callback_source(cb)} created at {HERE}:{line_soon}>"
    for x in (th, ta, hs):
        x.cancel()
    run_briefly(loop)


def test_source_traceback_on_future_and_task(debug_loop):
    loop = debug_loop

    async def coro():
        return None

    fut, line_fut = loop.create_future(), _line()
    task, line_task = loop.create_task(coro()), _line()
    assert _last_frame_here(fut._source_traceback) == (HERE, line_fut)
    assert task._source_traceback[-1][:2] == (HERE, line_task)
    assert repr(task).endswith(f" created at {HERE}:{line_task}>")
    loop.run_until_complete(task)
    fut.cancel()


def test_no_source_traceback_without_debug(loop):
    h = loop.call_soon(lambda: None)
    th = loop.call_later(1, lambda: None)
    fut = loop.create_future()
    assert getattr(h, "_source_traceback", None) is None
    assert getattr(th, "_source_traceback", None) is None
    assert getattr(fut, "_source_traceback", None) is None
    th.cancel()
    run_briefly(loop)


def test_exception_context_has_source_traceback_in_debug(debug_loop, loop_errors):
    def bad():
        raise ValueError()

    h, line = debug_loop.call_soon(bad), _line()
    run_briefly(debug_loop)
    assert len(loop_errors) == 1
    ctx = loop_errors.pop()
    assert sorted(ctx) == ["exception", "handle", "message", "source_traceback"]
    assert ctx["handle"] is h
    assert ctx["source_traceback"][-1][:2] == (HERE, line)


def test_default_handler_logs_source_traceback(new_loop, asyncio_logger_caplog):
    loop = new_loop(record_errors=False)
    loop.set_debug(True)

    def bad():
        raise ValueError("dbg")

    _, line = loop.call_soon(bad), _line()
    run_briefly(loop)
    records = [
        r
        for r in asyncio_records(asyncio_logger_caplog)
        if "Exception in callback" in r.getMessage()
    ]
    assert len(records) == 1
    msg = records[0].getMessage()
    assert "\nsource_traceback: Object created at (most recent call last):\n" in msg
    assert f'File "{HERE}", line {line}, in test_default_handler_logs_source_traceback' in msg


def test_coroutine_origin_tracking_while_running(debug_loop):
    seen = []
    before = sys.get_coroutine_origin_tracking_depth()
    debug_loop.call_soon(lambda: seen.append(sys.get_coroutine_origin_tracking_depth()))
    run_briefly(debug_loop)
    assert seen == [asyncio.constants.DEBUG_STACK_DEPTH]
    assert sys.get_coroutine_origin_tracking_depth() == before


def test_close_logs_debug_message(new_loop, asyncio_logger_caplog):
    loop = new_loop(record_errors=False)
    loop.set_debug(True)
    loop.close()
    msgs = [r.getMessage() for r in asyncio_logger_caplog.records if r.name == "asyncio"]
    # asyncio formats the record lazily, so the repr is the closed loop's.
    assert f"Close {loop!r}" in msgs
