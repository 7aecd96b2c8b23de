"""set/get_exception_handler, call_exception_handler and the default handler's logging."""

from __future__ import annotations

import asyncio
import logging

import pytest
from ferro_testutil import asyncio_records, callback_source, run_briefly


def test_get_set_exception_handler(new_loop):
    loop = new_loop(record_errors=False)
    assert loop.get_exception_handler() is None

    def handler(lp, ctx):
        pass

    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None


@pytest.mark.parametrize("bad", [1, "handler", object()])
def test_non_callable_handler_rejected(loop, bad):
    previous = loop.get_exception_handler()
    with pytest.raises(TypeError) as info:
        loop.set_exception_handler(bad)
    assert str(info.value) == f"A callable object or None is expected, got {bad!r}"
    assert loop.get_exception_handler() is previous


def test_custom_handler_called_with_loop_and_context(loop):
    calls = []
    loop.set_exception_handler(lambda lp, ctx: calls.append((lp, ctx)))
    context = {"message": "custom", "extra": 1}
    loop.call_exception_handler(context)
    assert calls == [(loop, context)]
    assert calls[0][1] is context


def test_custom_handler_for_callback_error(loop):
    calls = []
    loop.set_exception_handler(lambda lp, ctx: calls.append(ctx))

    def bad():
        raise ValueError("cb")

    h = loop.call_soon(bad)
    run_briefly(loop)
    assert len(calls) == 1
    assert calls[0]["message"] == f"Exception in callback {callback_source(bad)}"
    assert calls[0]["handle"] is h


def test_default_handler_logging_format(new_loop, asyncio_logger_caplog):
    loop = new_loop(record_errors=False)
    exc = ValueError("logged")
    loop.default_exception_handler(
        {"message": "Something broke", "exception": exc, "zeta": [1, 2], "alpha": "text"}
    )
    records = asyncio_records(asyncio_logger_caplog)
    assert len(records) == 1
    rec = records[0]
    assert rec.levelno == logging.ERROR
    assert rec.getMessage() == "Something broke\nalpha: 'text'\nzeta: [1, 2]"
    assert rec.exc_info[0] is ValueError and rec.exc_info[1] is exc


def test_default_handler_without_message_or_exception(new_loop, asyncio_logger_caplog):
    loop = new_loop(record_errors=False)
    loop.default_exception_handler({"key": 3})
    records = asyncio_records(asyncio_logger_caplog)
    assert len(records) == 1
    assert records[0].getMessage() == "Unhandled exception in event loop\nkey: 3"
    assert not records[0].exc_info
    asyncio_logger_caplog.clear()
    loop.default_exception_handler({"message": "", "exception": KeyError("k")})
    records = asyncio_records(asyncio_logger_caplog)
    assert records[0].getMessage() == "Unhandled exception in event loop"
    assert records[0].exc_info[0] is KeyError


def test_call_exception_handler_without_custom_handler_logs(new_loop, asyncio_logger_caplog):
    loop = new_loop(record_errors=False)
    exc = OSError("via call_exception_handler")
    loop.call_exception_handler({"message": "msg", "exception": exc})
    records = asyncio_records(asyncio_logger_caplog)
    assert [r.getMessage() for r in records] == ["msg"]
    assert records[0].exc_info[1] is exc


def test_callback_error_logged_by_default_handler(new_loop, asyncio_logger_caplog):
    loop = new_loop(record_errors=False)

    def bad(x):
        raise ZeroDivisionError("zero")

    h = loop.call_soon(bad, 5)
    expected_repr = repr(h)
    run_briefly(loop)
    records = asyncio_records(asyncio_logger_caplog)
    assert len(records) == 1
    assert records[0].getMessage() == (
        f"Exception in callback {callback_source(bad, (5,))}\nhandle: {expected_repr}"
    )
    assert type(records[0].exc_info[1]) is ZeroDivisionError


def test_handler_that_raises(new_loop, asyncio_logger_caplog):
    loop = new_loop(record_errors=False)

    def handler(lp, ctx):
        raise RuntimeError("handler failed")

    loop.set_exception_handler(handler)
    original = {"message": "original problem"}
    loop.call_exception_handler(original)
    records = asyncio_records(asyncio_logger_caplog)
    assert len(records) == 1
    assert records[0].getMessage() == (
        f"Unhandled error in exception handler\ncontext: {original!r}"
    )
    assert type(records[0].exc_info[1]) is RuntimeError
    assert str(records[0].exc_info[1]) == "handler failed"


def test_handler_that_raises_during_callback_error_keeps_loop_alive(
    new_loop, asyncio_logger_caplog
):
    loop = new_loop(record_errors=False)
    loop.set_exception_handler(lambda lp, ctx: 1 / 0)
    out = []

    def bad():
        raise IndexError("cb")

    loop.call_soon(bad)
    loop.call_soon(out.append, "still running")
    run_briefly(loop)
    assert out == ["still running"]
    records = asyncio_records(asyncio_logger_caplog)
    assert len(records) == 1
    assert records[0].getMessage().startswith("Unhandled error in exception handler\ncontext: {")
    assert type(records[0].exc_info[1]) is ZeroDivisionError


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_handler_raising_base_exception_propagates(loop, exc_type):
    def handler(lp, ctx):
        raise exc_type()

    loop.set_exception_handler(handler)
    with pytest.raises(exc_type):
        loop.call_exception_handler({"message": "x"})

    loop.call_soon(lambda: 1 / 0)
    with pytest.raises(exc_type):
        run_briefly(loop)
    assert not loop.is_running()


def test_subclass_default_exception_handler_override(impl):
    """call_exception_handler uses an overridden default_exception_handler."""
    calls = []

    class Sub(impl.loop_class):
        def default_exception_handler(self, context):
            calls.append(context["message"])

    loop = Sub()
    try:
        loop.call_exception_handler({"message": "to-subclass"})
        loop.call_soon(lambda: 1 / 0)
        run_briefly(loop)
        assert calls[0] == "to-subclass"
        assert calls[1].startswith("Exception in callback ")
        assert len(calls) == 2
    finally:
        loop.close()


def test_subclass_default_handler_raising_is_logged(impl, asyncio_logger_caplog):
    class Sub(impl.loop_class):
        def default_exception_handler(self, context):
            raise ValueError("default broke")

    loop = Sub()
    try:
        loop.call_exception_handler({"message": "m"})
    finally:
        loop.close()
    records = asyncio_records(asyncio_logger_caplog)
    assert [r.getMessage() for r in records] == ["Exception in default exception handler"]
    assert type(records[0].exc_info[1]) is ValueError


def test_task_error_context(loop, loop_errors):
    async def fail():
        raise KeyError("task-err")

    task = loop.create_task(fail())
    run_briefly(loop)
    del task
    import gc

    gc.collect()
    assert len(loop_errors) == 1
    ctx = loop_errors.pop()
    assert sorted(ctx) == ["exception", "future", "message"]
    assert ctx["message"] == "Task exception was never retrieved"
    assert type(ctx["exception"]) is KeyError


def test_handler_receives_errors_in_order(loop):
    messages = []
    loop.set_exception_handler(lambda lp, ctx: messages.append(str(ctx["exception"])))

    def bad(n):
        raise ValueError(n)

    for i in range(5):
        loop.call_soon(bad, i)
    run_briefly(loop)
    assert messages == ["0", "1", "2", "3", "4"]


def test_handler_runs_inside_running_loop(loop):
    seen = []

    def handler(lp, ctx):
        seen.append((asyncio.get_running_loop() is lp, lp.is_running()))

    loop.set_exception_handler(handler)
    loop.call_soon(lambda: 1 / 0)
    run_briefly(loop)
    assert seen == [(True, True)]
