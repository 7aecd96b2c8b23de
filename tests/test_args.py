"""Wrong arguments: the loop raises the same exception types (and stable messages) as asyncio."""

from __future__ import annotations

import asyncio
import contextvars

import pytest
from ferro_testutil import run_briefly


async def _coro_func():
    return None


def _callable():
    return None


SCHEDULERS = {
    "call_soon": lambda lp, cb: lp.call_soon(cb),
    "call_soon_threadsafe": lambda lp, cb: lp.call_soon_threadsafe(cb),
    "call_later": lambda lp, cb: lp.call_later(1, cb),
    "call_at": lambda lp, cb: lp.call_at(lp.time() + 1, cb),
}
# call_later delegates to call_at, so asyncio names call_at() in the message.
METHOD_IN_MESSAGE = {
    "call_soon": "call_soon",
    "call_soon_threadsafe": "call_soon_threadsafe",
    "call_later": "call_at",
    "call_at": "call_at",
}


@pytest.mark.parametrize("method", list(SCHEDULERS))
@pytest.mark.parametrize("bad", [1, None, "text"], ids=["int", "None", "str"])
def test_non_callable_in_debug(debug_loop, method, bad):
    with pytest.raises(TypeError) as info:
        SCHEDULERS[method](debug_loop, bad)
    assert str(info.value) == (
        f"a callable object was expected by {METHOD_IN_MESSAGE[method]}(), got {bad!r}"
    )


@pytest.mark.parametrize("method", list(SCHEDULERS))
def test_coroutine_function_in_debug(debug_loop, method):
    with pytest.raises(TypeError) as info:
        SCHEDULERS[method](debug_loop, _coro_func)
    assert str(info.value) == f"coroutines cannot be used with {METHOD_IN_MESSAGE[method]}()"


@pytest.mark.parametrize("method", list(SCHEDULERS))
def test_coroutine_object_in_debug(debug_loop, method):
    coro = _coro_func()
    try:
        with pytest.raises(TypeError) as info:
            SCHEDULERS[method](debug_loop, coro)
        assert str(info.value) == f"coroutines cannot be used with {METHOD_IN_MESSAGE[method]}()"
    finally:
        coro.close()


def test_run_in_executor_coroutine_function_in_debug(debug_loop):
    with pytest.raises(TypeError) as info:
        debug_loop.run_in_executor(None, _coro_func)
    assert str(info.value) == "coroutines cannot be used with run_in_executor()"


def test_run_in_executor_non_callable_in_debug(debug_loop):
    with pytest.raises(TypeError) as info:
        debug_loop.run_in_executor(None, 5)
    assert str(info.value) == "a callable object was expected by run_in_executor(), got 5"


@pytest.mark.parametrize("method", list(SCHEDULERS))
def test_non_callable_accepted_without_debug(loop, loop_errors, method):
    """Without debug mode the loop accepts the object and the call fails when it runs."""
    h = SCHEDULERS[method](loop, 1)
    assert not h.cancelled()
    h.cancel()
    run_briefly(loop)
    assert loop_errors == []


def test_call_later_none_delay(loop):
    with pytest.raises(TypeError) as info:
        loop.call_later(None, _callable)
    assert str(info.value) == "delay must not be None"


def test_call_at_none_when(loop):
    with pytest.raises(TypeError) as info:
        loop.call_at(None, _callable)
    assert str(info.value) == "when cannot be None"


def test_call_later_string_delay(loop):
    with pytest.raises(TypeError):
        loop.call_later("1", _callable)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda lp: lp.call_soon(), id="call_soon()"),
        pytest.param(lambda lp: lp.call_later(1), id="call_later(1)"),
        pytest.param(lambda lp: lp.call_at(), id="call_at()"),
        pytest.param(lambda lp: lp.call_soon_threadsafe(), id="call_soon_threadsafe()"),
        pytest.param(lambda lp: lp.call_soon(_callable, bogus=1), id="call_soon(bogus=)"),
        pytest.param(lambda lp: lp.call_later(1, _callable, bogus=1), id="call_later(bogus=)"),
        pytest.param(lambda lp: lp.create_future(1), id="create_future(1)"),
        pytest.param(lambda lp: lp.time(1), id="time(1)"),
        pytest.param(lambda lp: lp.run_until_complete(), id="run_until_complete()"),
        pytest.param(lambda lp: lp.set_exception_handler(), id="set_exception_handler()"),
        pytest.param(lambda lp: lp.call_exception_handler(), id="call_exception_handler()"),
        pytest.param(lambda lp: lp.create_task(), id="create_task()"),
        pytest.param(lambda lp: lp.run_in_executor(None), id="run_in_executor(None)"),
    ],
)
def test_bad_signatures_raise_type_error(loop, call):
    with pytest.raises(TypeError):
        call(loop)


def test_create_task_unknown_keyword(loop):
    coro = _coro_func()
    try:
        with pytest.raises(TypeError):
            loop.create_task(coro, bogus=1)
    finally:
        coro.close()


@pytest.mark.parametrize("bad", [1, "coro", _coro_func, None], ids=["int", "str", "func", "None"])
def test_create_task_non_coroutine(loop, bad):
    with pytest.raises(TypeError) as info:
        loop.create_task(bad)
    assert str(info.value) == f"a coroutine was expected, got {bad!r}"


@pytest.mark.parametrize("bad", [1, "coro", _coro_func, None], ids=["int", "str", "func", "None"])
def test_task_class_non_coroutine(loop, impl, bad):
    with pytest.raises(TypeError) as info:
        impl.task_class(bad, loop=loop)
    assert str(info.value) == f"a coroutine was expected, got {bad!r}"


@pytest.mark.parametrize("bad", [1, "x", None, _callable], ids=["int", "str", "None", "func"])
def test_run_until_complete_non_awaitable(loop, bad):
    with pytest.raises(TypeError) as info:
        loop.run_until_complete(bad)
    assert str(info.value) == "An asyncio.Future, a coroutine or an awaitable is required"


def test_future_method_signatures(loop):
    fut = loop.create_future()
    with pytest.raises(TypeError):
        fut.cancel(1, 2)
    with pytest.raises(TypeError):
        fut.add_done_callback(_callable, ctx=1)
    with pytest.raises(TypeError):
        fut.set_result()
    with pytest.raises(TypeError):
        fut.set_exception()
    with pytest.raises(TypeError):
        fut.add_done_callback()
    assert fut.remove_done_callback(1) == 0
    fut.cancel()


def test_call_soon_many_args(loop):
    out = []
    loop.call_soon(lambda *a: out.append(a), *range(100))
    run_briefly(loop)
    assert out == [tuple(range(100))]


def test_context_is_keyword_only(loop):
    ctx = contextvars.copy_context()
    out = []
    loop.call_soon(lambda *a: out.append(a), ctx)
    run_briefly(loop)
    assert out == [(ctx,)]


def test_set_task_factory_non_callable(loop):
    with pytest.raises(TypeError) as info:
        loop.set_task_factory(3)
    assert str(info.value) == "task factory must be a callable or None"


def test_set_exception_handler_non_callable(loop):
    with pytest.raises(TypeError) as info:
        loop.set_exception_handler("nope")
    assert str(info.value) == "A callable object or None is expected, got 'nope'"


def test_set_default_executor_wrong_type(loop):
    with pytest.raises(TypeError) as info:
        loop.set_default_executor(object())
    assert str(info.value) == "executor must be ThreadPoolExecutor instance"


def test_task_set_name_non_string(loop):
    async def main():
        t = asyncio.current_task()
        t.set_name(None)
        first = t.get_name()
        t.set_name(3.5)
        return first, t.get_name()

    assert loop.run_until_complete(main()) == ("None", "3.5")


def test_cancel_message_non_string(loop):
    fut = loop.create_future()
    fut.cancel(msg=123)
    with pytest.raises(asyncio.CancelledError) as info:
        fut.result()
    assert info.value.args == (123,)


def test_negative_sleep(loop):
    async def main():
        await asyncio.sleep(-1)
        return "ok"

    assert loop.run_until_complete(main()) == "ok"
