"""The Future contract of loop.create_future() and of the implementation's Future class."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import sys
import threading
import types
import weakref

import pytest
from ferro_testutil import asyncio_records, callback_source, run_briefly


@pytest.fixture(params=["create_future", "class"])
def make_future(request, loop, impl):
    """Makes futures bound to ``loop``: via loop.create_future() or the impl's Future class."""
    if request.param == "create_future":
        return loop.create_future
    return lambda: impl.future_class(loop=loop)


def test_create_future_type(loop, impl):
    fut = loop.create_future()
    assert type(fut).__name__ == "Future"
    assert isinstance(fut, impl.future_class)
    assert asyncio.isfuture(fut)
    assert fut.get_loop() is loop
    assert fut._asyncio_future_blocking is False


def test_pending_state(make_future):
    fut = make_future()
    assert not fut.done()
    assert not fut.cancelled()
    with pytest.raises(asyncio.InvalidStateError, match=r"^Result is not set\.$"):
        fut.result()
    with pytest.raises(asyncio.InvalidStateError, match=r"^Exception is not set\.$"):
        fut.exception()


def test_set_result(make_future):
    fut = make_future()
    assert fut.set_result(42) is None
    assert fut.done() and not fut.cancelled()
    assert fut.result() == 42
    assert fut.exception() is None


def test_set_result_twice_invalid_state(make_future):
    fut = make_future()
    fut.set_result(1)
    with pytest.raises(asyncio.InvalidStateError, match=r"^invalid state$"):
        fut.set_result(2)
    with pytest.raises(asyncio.InvalidStateError, match=r"^invalid state$"):
        fut.set_exception(ValueError())
    assert fut.result() == 1
    assert fut.cancel() is False
    assert fut.result() == 1


def test_set_exception(make_future):
    fut = make_future()
    exc = ValueError("bad")
    fut.set_exception(exc)
    assert fut.done() and not fut.cancelled()
    assert fut.exception() is exc
    with pytest.raises(ValueError) as info:
        fut.result()
    assert info.value is exc


def test_set_exception_class_is_instantiated(make_future):
    fut = make_future()
    fut.set_exception(KeyError)
    assert type(fut.exception()) is KeyError
    assert fut.exception().args == ()


_STOP_ITERATION_MESSAGE = (
    "StopIteration interacts badly with generators and cannot be raised into a Future"
)


@pytest.mark.parametrize(
    "bad, message",
    [
        (1, "invalid exception object"),
        ("text", "invalid exception object"),
    ],
)
def test_set_exception_rejects(make_future, bad, message):
    fut = make_future()
    with pytest.raises(TypeError) as info:
        fut.set_exception(bad)
    assert str(info.value) == message
    assert not fut.done()


class _MyStopIteration(StopIteration):
    pass


@pytest.mark.parametrize(
    "bad", [StopIteration, StopIteration(), _MyStopIteration, _MyStopIteration()]
)
def test_set_exception_stop_iteration(make_future, bad):
    """Up to 3.12, a StopIteration (exact type) is refused with TypeError and a
    subclass is stored as it is; from 3.13 any StopIteration is stored as a
    RuntimeError whose __cause__ and __context__ are the StopIteration."""
    fut = make_future()
    cls = bad if isinstance(bad, type) else type(bad)
    if sys.version_info >= (3, 13):
        fut.set_exception(bad)
        exc = fut.exception()
        assert type(exc) is RuntimeError
        assert str(exc) == _STOP_ITERATION_MESSAGE
        assert type(exc.__cause__) is cls and exc.__context__ is exc.__cause__
        with pytest.raises(RuntimeError):
            fut.result()
    elif cls is StopIteration:
        with pytest.raises(TypeError) as info:
            fut.set_exception(bad)
        assert str(info.value) == _STOP_ITERATION_MESSAGE
        assert not fut.done()
    else:
        fut.set_exception(bad)
        assert type(fut.exception()) is cls


def test_cancel(make_future):
    fut = make_future()
    assert fut.cancel() is True
    assert fut.cancelled() and fut.done()
    assert fut.cancel() is False
    with pytest.raises(asyncio.CancelledError) as info:
        fut.result()
    assert info.value.args == ()
    with pytest.raises(asyncio.CancelledError):
        fut.exception()
    with pytest.raises(asyncio.InvalidStateError, match=r"^invalid state$"):
        fut.set_result(1)


def test_cancel_message_reaches_cancelled_error(make_future):
    fut = make_future()
    assert fut.cancel("the reason") is True
    with pytest.raises(asyncio.CancelledError) as info:
        fut.result()
    assert info.value.args == ("the reason",)
    with pytest.raises(asyncio.CancelledError) as info:
        fut.exception()
    assert info.value.args == ("the reason",)
    fut2 = make_future()
    fut2.cancel(msg="kw")
    with pytest.raises(asyncio.CancelledError) as info:
        fut2.result()
    assert info.value.args == ("kw",)


def test_cancelled_error_is_base_exception():
    assert issubclass(asyncio.CancelledError, BaseException)
    assert not issubclass(asyncio.CancelledError, Exception)


def test_done_callbacks_are_scheduled_not_called(loop, make_future):
    fut = make_future()
    calls = []
    fut.add_done_callback(lambda f: calls.append(("a", f)))
    fut.add_done_callback(lambda f: calls.append(("b", f)))
    fut.set_result(None)
    assert calls == []
    run_briefly(loop)
    assert calls == [("a", fut), ("b", fut)]


def test_done_callback_on_done_future_is_scheduled(loop, make_future):
    fut = make_future()
    fut.set_result(1)
    calls = []
    fut.add_done_callback(calls.append)
    assert calls == []
    run_briefly(loop)
    assert calls == [fut]


def test_done_callbacks_interleave_with_call_soon_fifo(loop, make_future):
    fut = make_future()
    out = []
    fut.add_done_callback(lambda f: out.append("done-cb"))
    loop.call_soon(out.append, "before")
    fut.set_result(None)
    loop.call_soon(out.append, "after")
    run_briefly(loop)
    assert out == ["before", "done-cb", "after"]


def test_done_callbacks_on_cancel_and_exception(loop, make_future):
    calls = []
    f1, f2 = make_future(), make_future()
    f1.add_done_callback(lambda f: calls.append(("f1", f.cancelled())))
    f2.add_done_callback(lambda f: calls.append(("f2", type(f.exception()).__name__)))
    f1.cancel()
    f2.set_exception(OSError())
    run_briefly(loop)
    assert calls == [("f1", True), ("f2", "OSError")]


def test_remove_done_callback(loop, make_future):
    fut = make_future()
    calls = []

    def cb1(f):
        calls.append(1)

    def cb2(f):
        calls.append(2)

    fut.add_done_callback(cb1)
    fut.add_done_callback(cb2)
    fut.add_done_callback(cb1)
    assert fut.remove_done_callback(cb1) == 2
    assert fut.remove_done_callback(cb1) == 0
    assert fut.remove_done_callback(print) == 0
    fut.set_result(None)
    run_briefly(loop)
    assert calls == [2]


def test_add_done_callback_context(loop, make_future):
    var = contextvars.ContextVar("var", default="default")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in-ctx")
    seen = []
    fut = make_future()
    fut.add_done_callback(lambda f: seen.append(var.get()), context=ctx)
    var_token = var.set("outer")
    fut.add_done_callback(lambda f: seen.append(var.get()))
    var.reset(var_token)
    fut.set_result(None)
    run_briefly(loop)
    assert seen == ["in-ctx", "outer"]


def test_future_repr(loop, make_future):
    def cb(f):
        pass

    fut = make_future()
    assert repr(fut) == "<Future pending>"
    fut.add_done_callback(cb)
    assert repr(fut) == f"<Future pending cb=[{callback_source(cb)}]>"
    fut.remove_done_callback(cb)
    fut.set_result([1, 2])
    assert repr(fut) == "<Future finished result=[1, 2]>"
    f2 = make_future()
    f2.set_exception(ValueError("x"))
    assert repr(f2) == "<Future finished exception=ValueError('x')>"
    f2.exception()
    f3 = make_future()
    f3.cancel()
    assert repr(f3) == "<Future cancelled>"


def test_await_future_result(loop, make_future):
    async def main():
        fut = make_future()
        loop.call_soon(fut.set_result, "value")
        return await fut

    assert loop.run_until_complete(main()) == "value"


def test_await_future_exception(loop, make_future):
    exc = LookupError("nope")

    async def main():
        fut = make_future()
        loop.call_soon(fut.set_exception, exc)
        try:
            await fut
        except LookupError as e:
            return e

    assert loop.run_until_complete(main()) is exc


def test_await_done_future_does_not_suspend(loop, make_future):
    fut = make_future()
    fut.set_result(3)
    it = fut.__await__()
    with pytest.raises(StopIteration) as info:
        next(it)
    assert info.value.value == 3


def test_await_protocol_yields_self(make_future):
    fut = make_future()
    it = fut.__await__()
    assert next(it) is fut
    assert fut._asyncio_future_blocking is True
    fut.set_result("r")
    with pytest.raises(StopIteration) as info:
        next(it)
    assert info.value.value == "r"
    fut2 = make_future()
    it2 = fut2.__iter__()
    assert next(it2) is fut2
    fut2.cancel()


def test_run_until_complete_with_future(loop, make_future):
    fut = make_future()
    loop.call_later(0.001, fut.set_result, 99)
    assert loop.run_until_complete(fut) == 99


def test_future_generic_alias(impl, loop):
    cls = type(loop.create_future())
    alias = cls[int]
    assert isinstance(alias, types.GenericAlias)
    assert alias.__origin__ is cls
    assert alias.__args__ == (int,)
    alias2 = impl.future_class[str]
    assert alias2.__origin__ is impl.future_class


def test_future_weakref(make_future):
    fut = make_future()
    ref = weakref.ref(fut)
    assert ref() is fut
    del fut
    gc.collect()
    assert ref() is None


def test_future_is_hashable_and_identity_equal(make_future):
    a, b = make_future(), make_future()
    assert a != b
    assert {a: 1}[a] == 1
    assert len({a, b, a}) == 2


def test_await_future_of_other_loop_raises(loop, new_loop):
    other = new_loop()
    fut = other.create_future()

    async def main():
        return await fut

    coro = main()
    with pytest.raises(RuntimeError) as info:
        loop.run_until_complete(coro)
    assert "attached to a different loop" in str(info.value)
    fut.cancel()


def test_await_foreign_asyncio_future(loop):
    """A plain asyncio.Future bound to the loop works inside the loop's tasks."""

    async def main():
        fut = asyncio.Future(loop=loop)
        loop.call_soon(fut.set_result, "foreign")
        return await fut

    assert loop.run_until_complete(main()) == "foreign"


def test_asyncio_task_awaits_loop_future(loop):
    """asyncio.Task (the C task) driven by the loop awaits the loop's own future."""

    async def inner():
        fut = loop.create_future()
        loop.call_soon(fut.set_result, "native")
        return await fut

    task = asyncio.Task(inner(), loop=loop)
    assert loop.run_until_complete(task) == "native"


def test_wrap_concurrent_future(loop):
    cfut = concurrent.futures.Future()

    async def main():
        afut = asyncio.wrap_future(cfut, loop=loop)
        assert asyncio.isfuture(afut)
        assert afut.get_loop() is loop
        threading.Timer(0.01, cfut.set_result, args=("from-thread",)).start()
        return await afut

    assert loop.run_until_complete(main()) == "from-thread"


def test_wrap_concurrent_future_exception_and_cancel(loop):
    async def main():
        c1 = concurrent.futures.Future()
        a1 = asyncio.wrap_future(c1, loop=loop)
        c1.set_exception(KeyError("k"))
        with pytest.raises(KeyError):
            await a1
        c2 = concurrent.futures.Future()
        a2 = asyncio.wrap_future(c2, loop=loop)
        a2.cancel()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return c2.cancelled()

    assert loop.run_until_complete(main()) is True


def test_wrap_future_passthrough(loop):
    fut = loop.create_future()
    assert asyncio.wrap_future(fut, loop=loop) is fut
    assert asyncio.ensure_future(fut, loop=loop) is fut


def test_exception_never_retrieved_logged(new_loop, asyncio_logger_caplog):
    loop = new_loop(record_errors=False)
    exc = ValueError("never seen")
    fut = loop.create_future()
    fut.set_exception(exc)
    fut_repr = repr(fut)
    del fut
    gc.collect()
    records = asyncio_records(asyncio_logger_caplog)
    assert len(records) == 1
    rec = records[0]
    assert rec.levelname == "ERROR"
    assert rec.getMessage() == f"Future exception was never retrieved\nfuture: {fut_repr}"
    assert rec.exc_info[1] is exc


def test_exception_never_retrieved_context(loop, loop_errors):
    exc = ValueError("ctx")
    fut = loop.create_future()
    fut.set_exception(exc)
    del fut
    gc.collect()
    assert len(loop_errors) == 1
    ctx = loop_errors.pop()
    assert sorted(ctx) == ["exception", "future", "message"]
    assert ctx["message"] == "Future exception was never retrieved"
    assert ctx["exception"] is exc


@pytest.mark.parametrize("consume", ["exception", "result", "cancel-before"])
def test_no_never_retrieved_log_when_consumed(new_loop, consume, asyncio_logger_caplog):
    loop = new_loop(record_errors=False)
    fut = loop.create_future()
    if consume == "cancel-before":
        fut.cancel()
    else:
        fut.set_exception(ValueError())
        if consume == "exception":
            fut.exception()
        else:
            with pytest.raises(ValueError):
                fut.result()
    del fut
    gc.collect()
    assert not asyncio_records(asyncio_logger_caplog)


def test_future_get_loop_on_class_instance(loop, impl):
    fut = impl.future_class(loop=loop)
    assert fut.get_loop() is loop
    fut.cancel()


def test_loop_task_awaits_asyncio_task(loop):
    """A task of the loop awaits an asyncio.Task (the C task) running on the same loop."""

    async def inner():
        await asyncio.sleep(0)
        return "c-task"

    async def main():
        foreign = asyncio.Task(inner(), loop=loop)
        return await foreign

    assert loop.run_until_complete(loop.create_task(main())) == "c-task"


def test_future_subclass(loop, impl):
    class MyFuture(impl.future_class):
        def double(self):
            return self.result() * 2

    fut = MyFuture(loop=loop)
    loop.call_soon(fut.set_result, 21)
    assert loop.run_until_complete(fut) == 21
    assert fut.double() == 42
    assert repr(fut) == "<MyFuture finished result=21>"


def test_repr_with_many_callbacks(make_future):
    def a(f):
        pass

    def b(f):
        pass

    def c(f):
        pass

    def d(f):
        pass

    fut = make_future()
    for cb in (a, b, c, d):
        fut.add_done_callback(cb)
    assert repr(fut) == (
        f"<Future pending cb=[{callback_source(a)}, <2 more>, {callback_source(d)}]>"
    )
    fut2 = make_future()
    fut2.add_done_callback(a)
    fut2.add_done_callback(b)
    assert repr(fut2) == f"<Future pending cb=[{callback_source(a)}, {callback_source(b)}]>"
    fut.cancel()
    fut2.cancel()


def test_exception_in_done_callback_reported(loop, loop_errors, make_future):
    def bad(f):
        raise ValueError("done-cb")

    fut = make_future()
    fut.add_done_callback(bad)
    fut.set_result(1)
    run_briefly(loop)
    assert len(loop_errors) == 1
    ctx = loop_errors.pop()
    assert ctx["message"] == f"Exception in callback {callback_source(bad, (fut,))}"
    assert type(ctx["exception"]) is ValueError
    assert repr(ctx["handle"]) == f"<Handle {callback_source(bad, (fut,))}>"


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("done", (1,)),
        ("cancelled", (1,)),
        ("result", (1,)),
        ("exception", (1,)),
        ("get_loop", (1,)),
        ("set_result", ()),
        ("set_result", (1, 2)),
    ],
)
def test_method_argument_errors(make_future, method, args):
    """A wrong number of arguments is asyncio's TypeError naming the method (the
    exact wording of the C future's message changes between Pythons), and leaves
    the future as it was."""
    fut = make_future()
    with pytest.raises(TypeError) as err:
        getattr(fut, method)(*args)
    assert f"{method}() takes " in str(err.value)
    assert f"({len(args)} given)" in str(err.value) or "no arguments" in str(err.value)
    assert not fut.done()


def test_methods_reached_through_a_task_and_a_subclass(loop, impl):
    """The future's methods answer the same on a task and on an instance of a
    Python subclass, and a subclass's own override wins."""

    class Sub(impl.future_class):
        def done(self):
            return "overridden"

    async def finish():
        return 7

    task = loop.create_task(finish())
    loop.run_until_complete(task)
    assert (task.done(), task.cancelled(), task.result(), task.exception()) == (
        True,
        False,
        7,
        None,
    )
    assert task.get_loop() is loop
    sub = Sub(loop=loop)
    assert sub.done() == "overridden"
    sub.set_result(3)
    assert (sub.cancelled(), sub.result(), sub.exception(), sub.get_loop()) == (
        False,
        3,
        None,
        loop,
    )
    assert loop.run_until_complete(sub) == 3


def test_create_future_takes_no_arguments(loop):
    """``loop.create_future(1)`` is a TypeError on every loop."""
    with pytest.raises(TypeError):
        loop.create_future(1)
