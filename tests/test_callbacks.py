"""call_soon ordering, iteration boundaries and the Handle API."""

from __future__ import annotations

import asyncio
import contextvars
import weakref

import pytest
from ferro_testutil import callback_source, run_briefly


def test_call_soon_fifo(loop):
    out = []
    for i in range(200):
        loop.call_soon(out.append, i)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert out == list(range(200))


def test_call_soon_passes_positional_args(loop):
    out = []
    loop.call_soon(lambda *a: out.append(a), 1, "two", None)
    loop.call_soon(lambda: out.append(()))
    run_briefly(loop)
    assert out == [(1, "two", None), ()]


def test_call_soon_rejects_unknown_keyword(loop):
    with pytest.raises(TypeError):
        loop.call_soon(print, 1, flush=True)


def test_callbacks_scheduled_by_callbacks_run_next_iteration(loop):
    out = []

    def a():
        out.append("a")
        loop.call_soon(c)

    def b():
        out.append("b")

    def c():
        out.append("c")

    loop.call_soon(a)
    loop.call_soon(b)
    run_briefly(loop)
    assert out == ["a", "b"]
    run_briefly(loop)
    assert out == ["a", "b", "c"]


def test_nested_scheduling_iteration_by_iteration(loop):
    out = []

    def chain(n):
        out.append(n)
        if n < 5:
            loop.call_soon(chain, n + 1)

    loop.call_soon(chain, 0)
    loop.call_soon(chain, 10)
    trace = []
    for _ in range(4):
        run_briefly(loop)
        trace.append(list(out))
    assert trace == [[0, 10], [0, 10, 1], [0, 10, 1, 2], [0, 10, 1, 2, 3]]


def test_stop_inside_callback_finishes_current_iteration(loop):
    out = []

    def stopper():
        out.append("stop")
        loop.stop()
        loop.call_soon(out.append, "next-iteration")

    loop.call_soon(out.append, 1)
    loop.call_soon(stopper)
    loop.call_soon(out.append, 2)
    loop.run_forever()
    assert out == [1, "stop", 2]
    assert not loop.is_running()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert out == [1, "stop", 2, "next-iteration"]


def test_stop_before_run_forever_runs_one_iteration(loop):
    out = []

    def first():
        out.append("first")
        loop.call_soon(out.append, "later")

    loop.call_soon(first)
    loop.call_soon(out.append, "second")
    loop.stop()
    loop.run_forever()
    assert out == ["first", "second"]
    loop.stop()
    loop.run_forever()
    assert out == ["first", "second", "later"]


def test_stop_twice_then_run_forever_stops_once(loop):
    out = []
    loop.stop()
    loop.stop()
    loop.run_forever()
    loop.call_soon(out.append, 1)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert out == [1]


def test_handle_type_and_api(loop, impl):
    h = loop.call_soon(lambda: None)
    assert type(h).__name__ == "Handle"
    assert isinstance(h, impl.handle_class)
    assert h.cancelled() is False
    assert h.cancel() is None
    assert h.cancelled() is True
    h.cancel()
    assert h.cancelled() is True
    run_briefly(loop)


def test_cancelled_handle_does_not_run(loop):
    out = []
    h1 = loop.call_soon(out.append, 1)
    loop.call_soon(out.append, 2)
    h3 = loop.call_soon(out.append, 3)
    h1.cancel()
    h3.cancel()
    run_briefly(loop)
    assert out == [2]


def test_cancel_later_handle_from_earlier_callback_same_iteration(loop):
    out = []
    handles = {}

    def canceller():
        out.append("canceller")
        handles["victim"].cancel()

    loop.call_soon(canceller)
    handles["victim"] = loop.call_soon(out.append, "victim")
    loop.call_soon(out.append, "after")
    run_briefly(loop)
    assert out == ["canceller", "after"]


def test_handle_cancel_after_run_is_harmless(loop):
    out = []
    h = loop.call_soon(out.append, 1)
    run_briefly(loop)
    h.cancel()
    assert h.cancelled()
    run_briefly(loop)
    assert out == [1]


def test_handle_repr(loop):
    def cb(x, y):
        pass

    h = loop.call_soon(cb, 1, "a")
    assert repr(h) == f"<Handle {callback_source(cb, (1, 'a'))}>"
    h.cancel()
    assert repr(h) == "<Handle cancelled>"


def test_handle_get_context(loop):
    ctx = contextvars.copy_context()
    h = loop.call_soon(lambda: None, context=ctx)
    h2 = loop.call_soon(lambda: None)
    if not hasattr(h, "get_context"):
        run_briefly(loop)
        pytest.skip("Handle.get_context() does not exist on this Python (added in 3.12)")
    assert h.get_context() is ctx
    assert isinstance(h2.get_context(), contextvars.Context)
    assert h2.get_context() is not ctx
    run_briefly(loop)


def test_handle_is_weakrefable(loop):
    h = loop.call_soon(lambda: None)
    r = weakref.ref(h)
    assert r() is h
    run_briefly(loop)


def test_call_soon_returns_distinct_handles(loop):
    def cb():
        pass

    h1 = loop.call_soon(cb)
    h2 = loop.call_soon(cb)
    assert h1 is not h2
    h1.cancel()
    assert not h2.cancelled()
    run_briefly(loop)


def test_exception_in_callback_reaches_handler_and_loop_continues(loop, loop_errors):
    out = []

    def bad(arg):
        raise ZeroDivisionError("boom")

    h = loop.call_soon(bad, 42)
    loop.call_soon(out.append, "after")
    run_briefly(loop)
    assert out == ["after"]
    assert len(loop_errors) == 1
    ctx = loop_errors.pop()
    assert sorted(ctx) == ["exception", "handle", "message"]
    assert ctx["message"] == f"Exception in callback {callback_source(bad, (42,))}"
    assert type(ctx["exception"]) is ZeroDivisionError
    assert str(ctx["exception"]) == "boom"
    assert ctx["handle"] is h


def test_non_callable_without_debug_fails_at_run_time(loop, loop_errors):
    loop.call_soon(1)
    run_briefly(loop)
    assert len(loop_errors) == 1
    ctx = loop_errors.pop()
    assert ctx["message"] == "Exception in callback 1()"
    assert type(ctx["exception"]) is TypeError
    assert str(ctx["exception"]) == "'int' object is not callable"


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_callback_propagates_and_loop_stays_usable(loop, exc_type):
    out = []

    def raiser():
        raise exc_type("stop it")

    loop.call_soon(out.append, 1)
    loop.call_soon(raiser)
    loop.call_soon(out.append, 2)
    with pytest.raises(exc_type):
        loop.run_forever()
    assert not loop.is_running()
    assert out == [1]
    # The callback after the raiser is still queued and runs on the next iteration.
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert out == [1, 2]

    async def main():
        await asyncio_sleep0()
        return "ok"

    assert loop.run_until_complete(main()) == "ok"


async def asyncio_sleep0():
    import asyncio

    await asyncio.sleep(0)


def test_call_soon_bound_method_and_partial(loop):
    import functools

    out = []
    loop.call_soon(out.append, "bound")
    loop.call_soon(functools.partial(out.append, "partial"))

    class C:
        def __call__(self):
            out.append("callable-object")

    loop.call_soon(C())
    run_briefly(loop)
    assert out == ["bound", "partial", "callable-object"]


def test_exc_info_is_clean_inside_callbacks(loop):
    import sys

    seen = []
    try:
        raise ValueError("scheduling context")
    except ValueError:
        loop.call_soon(lambda: seen.append(sys.exc_info()))
    run_briefly(loop)
    assert seen == [(None, None, None)]


def test_callback_exception_does_not_leak_into_next_callback(loop, loop_errors):
    import sys

    seen = []

    def bad():
        raise KeyError("x")

    loop.call_soon(bad)
    loop.call_soon(lambda: seen.append(sys.exc_info()))
    run_briefly(loop)
    assert seen == [(None, None, None)]
    assert [type(c["exception"]) for c in loop_errors] == [KeyError]
    loop_errors.clear()


def test_handles_pass_asyncio_isinstance_checks(loop):
    """isinstance(loop.call_soon(f), asyncio.Handle) and the TimerHandle checks hold
    on both loops (ferroloop's native handles report asyncio views as __class__)."""
    h = loop.call_soon(int)
    t = loop.call_later(10, int)
    a = loop.call_at(loop.time() + 10, int)
    ts = loop.call_soon_threadsafe(int)
    try:
        assert isinstance(h, asyncio.Handle) and not isinstance(h, asyncio.TimerHandle)
        assert isinstance(ts, asyncio.Handle)
        for timer in (t, a):
            assert isinstance(timer, asyncio.TimerHandle)
            assert isinstance(timer, asyncio.Handle)
        assert h.__class__.__name__ == "Handle" and t.__class__.__name__ == "TimerHandle"
    finally:
        for x in (h, t, a, ts):
            x.cancel()


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe", "call_later", "call_at"])
@pytest.mark.parametrize("callback", ["builtin", "python"])
@pytest.mark.parametrize("where", ["before_run", "from_a_callback"])
def test_cancel_works_on_every_handle(loop, method, callback, where):
    """A cancelled handle never runs: every scheduling method, a builtin or a Python
    callback with arguments, cancelled before the loop runs or from a callback that runs
    first. (rloop 0.5 runs a cancelled handle whose callback is a builtin.)"""
    out = []
    cb = out.append if callback == "builtin" else (lambda value: out.append(value))

    def schedule():
        if method == "call_later":
            return loop.call_later(0, cb, "cancelled")
        if method == "call_at":
            return loop.call_at(loop.time(), cb, "cancelled")
        return getattr(loop, method)(cb, "cancelled")

    if where == "before_run":
        schedule().cancel()
    else:
        loop.call_soon(lambda: schedule().cancel())
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert out == []


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe"])
def test_call_soon_argument_shapes(loop, method):
    """Positional arguments, ``context=``, ``callback=`` by keyword, and the errors for
    a missing callback or an unknown keyword, as asyncio answers them."""

    var = contextvars.ContextVar("var", default="outer")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "inner")
    seen = []
    schedule = getattr(loop, method)
    schedule(seen.append, 1)
    schedule(lambda: seen.append(var.get()), context=ctx)
    schedule(lambda *a: seen.append(a), 2, 3, context=None)
    schedule(callback=seen.append)  # a keyword callback with no argument fails below
    loop.call_soon(loop.stop)
    errors = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context["exception"]))
    loop.run_forever()
    assert seen == [1, "inner", (2, 3)]
    assert [type(e) for e in errors] == [TypeError]
    with pytest.raises(TypeError, match="callback"):
        schedule()
    with pytest.raises(TypeError, match="'foo'"):
        schedule(print, foo=1)
    with pytest.raises(TypeError, match="'foo'"):
        schedule(print, context=None, foo=1)


@pytest.mark.parametrize("method", ["call_later", "call_at"])
def test_timer_argument_shapes(loop, method):
    """``call_later``/``call_at`` with positional arguments, ``context=``, keywords for
    every parameter, and their errors, as asyncio answers them."""
    var = contextvars.ContextVar("var", default="outer")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "inner")
    seen = []
    schedule = getattr(loop, method)
    first = 0 if method == "call_later" else loop.time()
    # Distinct times: timers due at the same time run in no defined order.
    schedule(first, seen.append, 1)
    schedule(first + 1e-4, lambda: seen.append(var.get()), context=ctx)
    schedule(first + 2e-4, lambda *a: seen.append(a), 2, 3, context=None)
    if method == "call_later":
        schedule(delay=3e-4, callback=seen.append)  # fails when run: no argument
    else:
        schedule(when=first + 3e-4, callback=seen.append)
    errors = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context["exception"]))
    loop.run_until_complete(asyncio.sleep(0.01))
    assert seen == [1, "inner", (2, 3)]
    assert [type(e) for e in errors] == [TypeError]
    with pytest.raises(TypeError, match="callback"):
        schedule(first)
    with pytest.raises(TypeError):
        schedule(None, print)
    with pytest.raises(TypeError, match="'foo'"):
        schedule(first, print, foo=1)
