"""create_task, the Task contract, task factories and asyncio's high-level APIs on the loop."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import io
import re
import sys
import types
import weakref

import pytest
from ferro_testutil import asyncio_records, run_briefly


async def _return(value):
    return value


async def _sleep_return(delay, value):
    await asyncio.sleep(delay)
    return value


def test_create_task_type_and_basic_api(loop, impl):
    coro = _return(5)
    task = loop.create_task(coro)
    assert type(task).__name__ == "Task"
    assert isinstance(task, impl.task_class)
    assert asyncio.isfuture(task)
    assert task.get_loop() is loop
    assert task.get_coro() is coro
    assert not task.done()
    assert loop.run_until_complete(task) == 5
    assert task.done() and task.result() == 5 and task.exception() is None


def test_task_does_not_start_synchronously(loop):
    out = []

    async def coro():
        out.append("started")

    task = loop.create_task(coro())
    assert out == []
    run_briefly(loop)
    assert out == ["started"]
    assert task.done()


def test_tasks_start_in_creation_order(loop):
    out = []

    async def coro(i):
        out.append(i)
        await asyncio.sleep(0)
        out.append(i + 100)

    for i in range(5):
        loop.create_task(coro(i))
    loop.run_until_complete(asyncio.sleep(0.001))
    assert out == [0, 1, 2, 3, 4, 100, 101, 102, 103, 104]


def test_sleep_zero_interleaves_with_call_soon(loop):
    out = []

    async def main():
        loop.call_soon(out.append, "cb1")
        out.append("before-sleep")
        await asyncio.sleep(0)
        out.append("after-sleep")
        loop.call_soon(out.append, "cb2")
        await asyncio.sleep(0)
        out.append("end")

    loop.run_until_complete(main())
    assert out == ["before-sleep", "cb1", "after-sleep", "cb2", "end"]


def test_task_name(loop):
    t1 = loop.create_task(_return(1), name="alpha")
    assert t1.get_name() == "alpha"
    t1.set_name("beta")
    assert t1.get_name() == "beta"
    t1.set_name(42)
    assert t1.get_name() == "42"
    t2 = loop.create_task(_return(2), name=12)
    assert t2.get_name() == "12"
    t3 = loop.create_task(_return(3))
    t4 = loop.create_task(_return(4))
    m3 = re.fullmatch(r"Task-(\d+)", t3.get_name())
    m4 = re.fullmatch(r"Task-(\d+)", t4.get_name())
    assert m3 and m4
    assert int(m4.group(1)) > int(m3.group(1))
    loop.run_until_complete(asyncio.gather(t1, t2, t3, t4))


def test_task_class_constructor(loop, impl):
    task = impl.task_class(_return("direct"), loop=loop, name="direct-task")
    assert task.get_name() == "direct-task"
    assert task.get_loop() is loop
    assert loop.run_until_complete(task) == "direct"


def test_create_task_context(loop):
    var = contextvars.ContextVar("var", default="unset")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "from-ctx")

    async def reader():
        before = var.get()
        var.set("set-in-task")
        return before

    assert loop.run_until_complete(loop.create_task(reader(), context=ctx)) == "from-ctx"
    assert ctx[var] == "set-in-task"
    assert var.get() == "unset"


def test_create_task_requires_coroutine(loop):
    with pytest.raises(TypeError) as info:
        loop.create_task(1)
    assert str(info.value) == "a coroutine was expected, got 1"

    with pytest.raises(TypeError) as info:
        loop.create_task(_return)
    assert str(info.value) == f"a coroutine was expected, got {_return!r}"
    with pytest.raises(TypeError) as info:
        loop.create_task(None)
    assert str(info.value) == "a coroutine was expected, got None"


def test_create_task_accepts_coroutine_like_object(loop):
    """Objects registered as collections.abc.Coroutine are accepted, as asyncio does."""

    class Coro:
        def send(self, value):
            raise StopIteration("custom")

        def throw(self, *args):
            raise args[0] if len(args) == 1 else args[1]

        def close(self):
            pass

        def __await__(self):
            return self

    import collections.abc

    collections.abc.Coroutine.register(Coro)  # a local class: the registration leaks nowhere
    task = loop.create_task(Coro())
    assert loop.run_until_complete(task) == "custom"


def test_task_result_and_exception(loop):
    async def fail():
        raise KeyError("missing")

    task = loop.create_task(fail())
    with pytest.raises(KeyError):
        loop.run_until_complete(task)
    assert task.done() and not task.cancelled()
    assert type(task.exception()) is KeyError
    with pytest.raises(KeyError):
        task.result()


def test_task_pending_state_errors(loop):
    task = loop.create_task(_return(1))
    with pytest.raises(asyncio.InvalidStateError, match=r"^Result is not set\.$"):
        task.result()
    with pytest.raises(asyncio.InvalidStateError, match=r"^Exception is not set\.$"):
        task.exception()
    loop.run_until_complete(task)


def test_task_set_result_and_set_exception_unsupported(loop):
    task = loop.create_task(_return(1))
    with pytest.raises(RuntimeError) as info:
        task.set_result(2)
    assert str(info.value) == "Task does not support set_result operation"
    with pytest.raises(RuntimeError) as info:
        task.set_exception(ValueError())
    assert str(info.value) == "Task does not support set_exception operation"
    assert loop.run_until_complete(task) == 1


def test_current_task_and_all_tasks(loop):
    seen = {}

    async def child():
        seen["child"] = asyncio.current_task()
        await asyncio.sleep(0)

    async def main():
        seen["main"] = asyncio.current_task()
        seen["main_explicit"] = asyncio.current_task(loop)
        t = loop.create_task(child())
        seen["all_inside"] = asyncio.all_tasks()
        seen["all_inside_explicit"] = asyncio.all_tasks(loop)
        await t
        return t

    main_task = loop.create_task(main())
    child_task = loop.run_until_complete(main_task)
    assert seen["main"] is main_task
    assert seen["main_explicit"] is main_task
    assert seen["child"] is child_task
    assert seen["all_inside"] == {main_task, child_task}
    assert seen["all_inside_explicit"] == {main_task, child_task}
    assert asyncio.current_task(loop) is None
    assert asyncio.all_tasks(loop) == set()


def test_current_task_in_plain_callback_is_none(loop):
    seen = []
    loop.call_soon(lambda: seen.append(asyncio.current_task()))
    run_briefly(loop)
    assert seen == [None]


def test_all_tasks_contains_pending_not_done(loop):
    async def forever():
        await loop.create_future()

    t1 = loop.create_task(forever())
    t2 = loop.create_task(_return(None))
    run_briefly(loop)
    assert asyncio.all_tasks(loop) == {t1}
    t1.cancel()
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(t1)
    assert t2.done()


def test_task_factory(loop):
    calls = []

    def factory(lp, coro, **kwargs):
        calls.append((lp, kwargs))
        return asyncio.Task(coro, loop=lp, **kwargs)

    assert loop.get_task_factory() is None
    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory
    t = loop.create_task(_return("factory"), name="named")
    assert t.get_name() == "named"
    assert loop.run_until_complete(t) == "factory"
    ctx = contextvars.copy_context()
    t2 = loop.create_task(_return("ctx"), context=ctx)
    assert loop.run_until_complete(t2) == "ctx"
    assert calls == [(loop, {}), (loop, {"context": ctx})]
    # run_until_complete(coro) goes through the factory too
    assert loop.run_until_complete(_return("via-ruc")) == "via-ruc"
    assert len(calls) == 3
    loop.set_task_factory(None)
    assert loop.get_task_factory() is None
    loop.run_until_complete(_return(None))
    assert len(calls) == 3


def test_task_factory_returning_impl_task(loop, impl):
    def factory(lp, coro, **kwargs):
        return impl.task_class(coro, loop=lp, **kwargs)

    loop.set_task_factory(factory)
    t = loop.create_task(_return(7))
    assert isinstance(t, impl.task_class)
    assert loop.run_until_complete(t) == 7


@pytest.mark.parametrize("bad", [1, "factory", object()])
def test_bad_task_factory(loop, bad):
    with pytest.raises(TypeError) as info:
        loop.set_task_factory(bad)
    assert str(info.value) == "task factory must be a callable or None"
    assert loop.get_task_factory() is None


def test_task_repr_shape(loop):
    async def sleeper():
        await asyncio.sleep(10)

    task = loop.create_task(sleeper(), name="rep")
    pending = repr(task)
    assert re.fullmatch(
        r"<Task pending name='rep' coro=<test_task_repr_shape\.<locals>\.sleeper\(\) "
        r"running at .*test_tasks\.py:\d+>>",
        pending,
    ), pending
    run_briefly(loop)
    waiting = repr(task)
    assert waiting.startswith(
        "<Task pending name='rep' coro=<test_task_repr_shape.<locals>.sleeper() running at "
    ), waiting
    assert " wait_for=<Future pending cb=[" in waiting, waiting
    task.cancel()
    assert repr(task).startswith("<Task cancelling name='rep' coro=<")
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)
    assert re.fullmatch(
        r"<Task cancelled name='rep' coro=<test_task_repr_shape\.<locals>\.sleeper\(\) "
        r"done, defined at .*test_tasks\.py:\d+>>",
        repr(task),
    ), repr(task)

    done = loop.create_task(_return([1]), name="fin")
    loop.run_until_complete(done)
    assert re.fullmatch(
        r"<Task finished name='fin' coro=<_return\(\) done, defined at .*test_tasks\.py:\d+> "
        r"result=\[1\]>",
        repr(done),
    ), repr(done)

    async def fail():
        raise ValueError("v")

    failed = loop.create_task(fail(), name="bad")
    with pytest.raises(ValueError):
        loop.run_until_complete(failed)
    assert repr(failed).endswith(" exception=ValueError('v')>")


def test_get_stack_and_print_stack(loop):
    async def sleeper():
        await asyncio.sleep(10)

    task = loop.create_task(sleeper(), name="stk")
    run_briefly(loop)
    stack = task.get_stack()
    assert len(stack) == 1
    assert isinstance(stack[0], types.FrameType)
    assert stack[0].f_code.co_name == "sleeper"
    assert task.get_stack(limit=0) == [] or len(task.get_stack(limit=0)) == 0
    buf = io.StringIO()
    task.print_stack(file=buf)
    lines = buf.getvalue().splitlines()
    assert lines[0] == f"Stack for {task!r} (most recent call last):"
    assert "in sleeper" in lines[1]
    assert "await asyncio.sleep(10)" in lines[2]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)


def test_get_stack_of_failed_task_uses_traceback(loop):
    async def fail():
        raise ValueError("tb")

    task = loop.create_task(fail())
    with pytest.raises(ValueError):
        loop.run_until_complete(task)
    frames = task.get_stack()
    assert [f.f_code.co_name for f in frames][-1] == "fail"
    buf = io.StringIO()
    task.print_stack(file=buf)
    text = buf.getvalue()
    assert text.startswith(f"Traceback for {task!r} (most recent call last):")
    assert text.rstrip().endswith("ValueError: tb")


def test_task_destroyed_pending_logged(new_loop, asyncio_logger_caplog):
    loop = new_loop(record_errors=False)

    async def forever():
        await loop.create_future()

    task = loop.create_task(forever(), name="doomed")
    run_briefly(loop)
    del task
    gc.collect()
    records = asyncio_records(asyncio_logger_caplog)
    assert len(records) == 1
    msg = records[0].getMessage()
    assert records[0].levelname == "ERROR"
    assert msg.startswith(
        "Task was destroyed but it is pending!\ntask: <Task pending name='doomed' coro=<"
    )
    assert not records[0].exc_info


def test_task_destroyed_pending_context(loop, loop_errors):
    async def forever():
        await loop.create_future()

    task = loop.create_task(forever())
    run_briefly(loop)
    task_repr_prefix = repr(task).split(" coro=")[0]
    del task
    gc.collect()
    assert len(loop_errors) == 1
    ctx = loop_errors.pop()
    assert ctx["message"] == "Task was destroyed but it is pending!"
    assert repr(ctx["task"]).startswith(task_repr_prefix)
    assert "exception" not in ctx


def test_task_exception_never_retrieved_logged(new_loop, asyncio_logger_caplog):
    loop = new_loop(record_errors=False)
    exc = RuntimeError("lost")

    async def fail():
        raise exc

    task = loop.create_task(fail(), name="lost-task")
    run_briefly(loop)
    assert task.done()
    del task
    gc.collect()
    records = asyncio_records(asyncio_logger_caplog)
    assert len(records) == 1
    assert (
        records[0]
        .getMessage()
        .startswith(
            "Task exception was never retrieved\nfuture: <Task finished name='lost-task' coro=<"
        )
    )
    assert records[0].exc_info[1] is exc


def test_task_weakref_and_hash(loop):
    task = loop.create_task(_return(1))
    ref = weakref.ref(task)
    assert hash(task) == hash(task)
    loop.run_until_complete(task)
    del task
    gc.collect()
    assert ref() is None


def test_task_bad_yield(loop):
    class BadAwaitable:
        def __await__(self):
            yield "not-a-future"

    async def main():
        await BadAwaitable()

    with pytest.raises(RuntimeError) as info:
        loop.run_until_complete(main())
    assert str(info.value) == "Task got bad yield: 'not-a-future'"


def test_bare_yield_is_one_iteration(loop):
    class Bare:
        def __await__(self):
            yield
            return "resumed"

    out = []

    async def main():
        loop.call_soon(out.append, "cb")
        res = await Bare()
        out.append(res)

    loop.run_until_complete(main())
    assert out == ["cb", "resumed"]


def test_task_awaiting_itself(loop):
    async def main():
        await asyncio.current_task()

    task = loop.create_task(main())
    with pytest.raises(RuntimeError) as info:
        loop.run_until_complete(task)
    assert str(info.value).startswith("Task cannot await on itself: <Task ")


def test_await_task_of_other_loop(loop, new_loop):
    other = new_loop()
    foreign = other.create_task(_return(1))

    async def main():
        await foreign

    with pytest.raises(RuntimeError) as info:
        loop.run_until_complete(main())
    msg = str(info.value)
    assert msg.startswith("Task <Task ") and " got Future <Task " in msg
    assert msg.endswith(" attached to a different loop")
    other.run_until_complete(foreign)


def test_gather(loop):
    async def main():
        return await asyncio.gather(
            _sleep_return(0.003, "a"), _return("b"), _sleep_return(0.001, "c")
        )

    assert loop.run_until_complete(main()) == ["a", "b", "c"]


def test_gather_return_exceptions(loop):
    async def fail():
        raise ValueError("g")

    async def main():
        return await asyncio.gather(_return(1), fail(), return_exceptions=True)

    res = loop.run_until_complete(main())
    assert res[0] == 1 and type(res[1]) is ValueError


def test_wait(loop):
    async def main():
        t1 = loop.create_task(_sleep_return(0.001, 1))
        t2 = loop.create_task(_sleep_return(5, 2))
        done, pending = await asyncio.wait({t1, t2}, return_when=asyncio.FIRST_COMPLETED)
        assert done == {t1} and pending == {t2}
        t2.cancel()
        done, pending = await asyncio.wait({t2})
        return t2.cancelled(), pending

    assert loop.run_until_complete(main()) == (True, set())


def test_wait_timeout(loop):
    async def main():
        t = loop.create_task(_sleep_return(5, None))
        done, pending = await asyncio.wait({t}, timeout=0.01)
        t.cancel()
        return done, pending == {t}

    assert loop.run_until_complete(main()) == (set(), True)


def test_as_completed(loop):
    async def main():
        coros = [
            _sleep_return(0.02, "slow"),
            _sleep_return(0.001, "fast"),
            _sleep_return(0.01, "mid"),
        ]
        return [await f for f in asyncio.as_completed(coros)]

    assert loop.run_until_complete(main()) == ["fast", "mid", "slow"]


def test_wait_for(loop):
    async def main():
        ok = await asyncio.wait_for(_sleep_return(0.001, "in-time"), timeout=5)
        try:
            await asyncio.wait_for(_sleep_return(5, None), timeout=0.01)
        except TimeoutError as e:
            return ok, type(e)

    assert loop.run_until_complete(main()) == ("in-time", TimeoutError)


def test_timeout_context_manager(loop):
    async def main():
        async with asyncio.timeout(5) as cm:
            await asyncio.sleep(0)
        first = cm.expired()
        try:
            async with asyncio.timeout(0.01) as cm2:
                await asyncio.sleep(5)
        except TimeoutError:
            pass
        async with asyncio.timeout(None) as cm3:
            cm3.reschedule(loop.time() + 5)
            when = cm3.when()
            await asyncio.sleep(0)
        return first, cm2.expired(), when is not None

    assert loop.run_until_complete(main()) == (False, True, True)


def test_timeout_at_in_the_past(loop):
    async def main():
        try:
            async with asyncio.timeout_at(loop.time() - 1):
                await asyncio.sleep(5)
        except TimeoutError:
            return "timed out"

    assert loop.run_until_complete(main()) == "timed out"


def test_task_group(loop):
    async def main():
        async with asyncio.TaskGroup() as tg:
            t1 = tg.create_task(_sleep_return(0.002, 1))
            t2 = tg.create_task(_return(2), name="tg-named")
        return t1.result(), t2.result(), t2.get_name()

    assert loop.run_until_complete(main()) == (1, 2, "tg-named")


def test_task_group_failure_cancels_siblings(loop):
    cancelled = []

    async def sibling():
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def fail():
        await asyncio.sleep(0.001)
        raise ValueError("tg-fail")

    async def main():
        errors = []
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(sibling())
                tg.create_task(fail())
        except* ValueError as eg:
            errors.extend(str(e) for e in eg.exceptions)
        return errors

    assert loop.run_until_complete(main()) == ["tg-fail"]
    assert cancelled == [True]


def test_shield(loop):
    async def main():
        inner = loop.create_task(_sleep_return(0.01, "shielded"))
        outer = asyncio.shield(inner)
        outer.cancel()
        try:
            await outer
        except asyncio.CancelledError:
            pass
        return await inner

    assert loop.run_until_complete(main()) == "shielded"


def test_ensure_future_and_run_coroutine_in_task(loop):
    async def main():
        t = asyncio.ensure_future(_return("ef"))
        assert t.get_loop() is loop
        return await t

    assert loop.run_until_complete(main()) == "ef"


def test_asyncio_create_task_uses_running_loop(loop, impl):
    async def main():
        t = asyncio.create_task(_return("ct"), name="via-asyncio")
        assert t.get_loop() is loop
        assert isinstance(t, impl.task_class)
        return await t, t.get_name()

    assert loop.run_until_complete(main()) == ("ct", "via-asyncio")


def test_get_running_loop_inside_task_and_callback(loop):
    seen = []

    async def main():
        seen.append(asyncio.get_running_loop())
        seen.append(asyncio.get_event_loop())
        loop.call_soon(lambda: seen.append(asyncio.get_running_loop()))
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert seen == [loop, loop, loop]
    with pytest.raises(RuntimeError, match="no running event loop"):
        asyncio.get_running_loop()


def test_deep_await_chain(loop):
    async def depth(n):
        if n == 0:
            await asyncio.sleep(0)
            return 0
        return 1 + await depth(n - 1)

    assert loop.run_until_complete(depth(200)) == 200


def test_many_tasks(loop):
    async def worker(i):
        await asyncio.sleep(0)
        return i * 2

    async def main():
        tasks = [loop.create_task(worker(i)) for i in range(2000)]
        return await asyncio.gather(*tasks)

    assert loop.run_until_complete(main()) == [i * 2 for i in range(2000)]


def test_task_exception_traceback_preserved(loop):
    async def inner():
        raise ValueError("deep")

    async def outer():
        await inner()

    task = loop.create_task(outer())
    with pytest.raises(ValueError) as info:
        loop.run_until_complete(task)
    names = [entry.name for entry in info.traceback]
    assert "inner" in names and "outer" in names


def test_coroutine_return_value_is_stopiteration_safe(loop):
    async def returns_stop():
        return StopIteration("value")

    res = loop.run_until_complete(returns_stop())
    assert type(res) is StopIteration and res.args == ("value",)


def test_raise_stopiteration_in_coroutine_becomes_runtime_error(loop):
    async def raises_stop():
        raise StopIteration("x")

    with pytest.raises(RuntimeError, match="coroutine raised StopIteration"):
        loop.run_until_complete(raises_stop())


def test_sys_exc_info_clean_between_tasks(loop):
    seen = []

    async def a():
        try:
            raise ValueError("a")
        except ValueError:
            await asyncio.sleep(0)

    async def b():
        seen.append(sys.exc_info())

    async def main():
        await asyncio.gather(a(), b())

    loop.run_until_complete(main())
    assert seen == [(None, None, None)]


def test_custom_base_exception_is_stored_not_propagated_mid_iteration(loop):
    """Only KeyboardInterrupt/SystemExit escape the loop; other BaseExceptions end the task."""

    class MyBase(BaseException):
        pass

    out = []

    async def raiser():
        raise MyBase("custom")

    task = loop.create_task(raiser())
    loop.call_soon(out.append, "same-iteration")
    with pytest.raises(MyBase):
        loop.run_until_complete(task)
    assert out == ["same-iteration"]
    assert type(task.exception()) is MyBase


def test_get_coro_after_done(loop):
    coro = _return(1)
    task = loop.create_task(coro)
    loop.run_until_complete(task)
    assert task.get_coro() is coro


def test_task_subclass(loop, impl):
    class MyTask(impl.task_class):
        def describe(self):
            return f"my:{self.get_name()}"

    task = MyTask(_return("sub"), loop=loop, name="subtask")
    assert task.describe() == "my:subtask"
    assert loop.run_until_complete(task) == "sub"
    assert repr(task).startswith("<MyTask finished name='subtask' coro=<")


def test_duck_typed_future_is_awaitable_in_task(loop):
    """Tasks accept any object following the asyncio future protocol (_asyncio_future_blocking)."""

    class DuckFuture:
        _asyncio_future_blocking = False

        def __init__(self):
            self._callbacks = []
            self._result = None
            self._done = False

        def get_loop(self):
            return loop

        def add_done_callback(self, fn, *, context=None):
            self._callbacks.append((fn, context))

        def remove_done_callback(self, fn):
            return 0

        def cancel(self, msg=None):
            return False

        def done(self):
            return self._done

        def result(self):
            return self._result

        def resolve(self, value):
            self._result, self._done = value, True
            for fn, ctx in self._callbacks:
                loop.call_soon(fn, self, context=ctx)

        def __await__(self):
            if not self._done:
                self._asyncio_future_blocking = True
                yield self
            return self._result

    async def main():
        duck = DuckFuture()
        loop.call_soon(duck.resolve, "quack")
        return await duck

    assert loop.run_until_complete(main()) == "quack"


def test_task_factory_exception_propagates(loop):
    def factory(lp, coro, **kwargs):
        coro.close()
        raise LookupError("factory failed")

    loop.set_task_factory(factory)
    with pytest.raises(LookupError, match="factory failed"):
        loop.create_task(_return(1))
