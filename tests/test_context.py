"""contextvars: callbacks and tasks run in the context captured when they were scheduled."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest
from ferro_testutil import run_briefly

VAR = contextvars.ContextVar("VAR", default="default")


@pytest.fixture(autouse=True)
def _reset_var():
    """Each test starts (and leaves the test thread) with VAR unset."""
    token = VAR.set("default")
    yield
    VAR.reset(token)


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe", "call_later", "call_at"])
def test_callback_sees_context_at_scheduling_time(loop, method):
    seen = []

    def schedule(cb):
        if method == "call_later":
            loop.call_later(0, cb)
        elif method == "call_at":
            loop.call_at(loop.time(), cb)
        else:
            getattr(loop, method)(cb)

    VAR.set("first")
    schedule(lambda: seen.append(VAR.get()))
    VAR.set("second")
    schedule(lambda: seen.append(VAR.get()))
    VAR.set("after")
    loop.call_later(0.001, loop.stop)
    loop.run_forever()
    assert seen == ["first", "second"]


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe", "call_later", "call_at"])
def test_explicit_context_argument(loop, method):
    ctx = contextvars.copy_context()
    ctx.run(VAR.set, "in-ctx")
    seen = []

    def cb():
        seen.append(VAR.get())
        VAR.set("changed-by-cb")

    if method == "call_later":
        loop.call_later(0, cb, context=ctx)
    elif method == "call_at":
        loop.call_at(loop.time(), cb, context=ctx)
    else:
        getattr(loop, method)(cb, context=ctx)
    loop.call_later(0.001, loop.stop)
    loop.run_forever()
    assert seen == ["in-ctx"]
    assert ctx[VAR] == "changed-by-cb"
    assert VAR.get() == "default"


def test_changes_inside_callback_do_not_leak(loop):
    seen = []

    def setter():
        VAR.set("leaked?")
        seen.append(("setter", VAR.get()))

    def reader():
        seen.append(("reader", VAR.get()))

    loop.call_soon(setter)
    loop.call_soon(reader)
    run_briefly(loop)
    loop.call_soon(reader)
    run_briefly(loop)
    assert seen == [("setter", "leaked?"), ("reader", "default"), ("reader", "default")]
    assert VAR.get() == "default"


def test_shared_explicit_context_accumulates(loop):
    ctx = contextvars.copy_context()
    seen = []

    def incr():
        VAR.set(VAR.get() + "+")
        seen.append(VAR.get())

    for _ in range(3):
        loop.call_soon(incr, context=ctx)
    run_briefly(loop)
    assert seen == ["default+", "default++", "default+++"]
    assert ctx[VAR] == "default+++"


def test_callback_scheduled_from_callback_inherits_its_context(loop):
    seen = []

    def outer():
        VAR.set("outer-set")
        loop.call_soon(lambda: seen.append(VAR.get()))

    loop.call_soon(outer)
    loop.call_soon(lambda: seen.append(VAR.get()))
    run_briefly(loop)
    run_briefly(loop)
    assert seen == ["default", "outer-set"]


def test_task_runs_in_copy_of_creation_context(loop):
    async def child():
        before = VAR.get()
        VAR.set("child-set")
        await asyncio.sleep(0)
        return before, VAR.get()

    async def main():
        VAR.set("main-set")
        t = loop.create_task(child())
        VAR.set("main-changed-after-create")
        res = await t
        return res, VAR.get()

    assert loop.run_until_complete(main()) == (
        ("main-set", "child-set"),
        "main-changed-after-create",
    )
    assert VAR.get() == "default"


def test_task_context_persists_across_awaits(loop):
    async def main():
        VAR.set("persist")
        for _ in range(3):
            await asyncio.sleep(0)
            loop.call_soon(lambda: None)
        await asyncio.sleep(0.001)
        return VAR.get()

    assert loop.run_until_complete(main()) == "persist"


def test_create_task_with_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(VAR.set, "explicit")

    async def child():
        v = VAR.get()
        VAR.set("written")
        return v

    assert loop.run_until_complete(loop.create_task(child(), context=ctx)) == "explicit"
    assert ctx[VAR] == "written"
    assert VAR.get() == "default"


def test_tasks_are_isolated_from_each_other(loop):
    async def worker(name):
        VAR.set(name)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return VAR.get()

    async def main():
        return await asyncio.gather(*(worker(f"w{i}") for i in range(5)))

    assert loop.run_until_complete(main()) == [f"w{i}" for i in range(5)]


def test_done_callback_context(loop):
    seen = []

    async def main():
        fut = loop.create_future()
        VAR.set("at-add")
        fut.add_done_callback(lambda f: seen.append(VAR.get()))
        VAR.set("at-set-result")
        fut.set_result(None)
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert seen == ["at-add"]


def test_callback_context_from_task(loop):
    seen = []

    async def main():
        VAR.set("task-value")
        loop.call_soon(lambda: seen.append(VAR.get()))
        loop.call_later(0, lambda: seen.append(VAR.get()))
        await asyncio.sleep(0.001)

    loop.run_until_complete(main())
    assert seen == ["task-value", "task-value"]


def test_to_thread_propagates_context(loop):
    async def main():
        VAR.set("to-thread")
        return await asyncio.to_thread(VAR.get)

    assert loop.run_until_complete(main()) == "to-thread"


def test_run_until_complete_task_context_copied_from_caller(loop):
    VAR.set("caller")

    async def main():
        v = VAR.get()
        VAR.set("inside")
        return v

    assert loop.run_until_complete(main()) == "caller"
    assert VAR.get() == "caller"


def test_exception_handler_receives_error_from_context_callback(loop, loop_errors):
    ctx = contextvars.copy_context()

    def bad():
        raise RuntimeError(VAR.get())

    ctx.run(VAR.set, "ctx-of-bad")
    loop.call_soon(bad, context=ctx)
    run_briefly(loop)
    assert [str(c["exception"]) for c in loop_errors] == ["ctx-of-bad"]
    loop_errors.clear()


def test_same_context_reused_by_callback_scheduled_inside_it(loop, loop_errors):
    """A callback may schedule another into its own context: it runs later, after leaving it."""
    ctx = contextvars.copy_context()
    seen = []

    def inner():
        seen.append("inner-ran")

    def outer():
        loop.call_soon(inner, context=ctx)
        seen.append("outer-ran")

    loop.call_soon(outer, context=ctx)
    run_briefly(loop)
    run_briefly(loop)
    assert seen == ["outer-ran", "inner-ran"]
    assert loop_errors == []


def test_call_soon_threadsafe_from_another_thread_copies_that_threads_context(loop):
    """The callback runs in a copy of the calling thread's context as it was at the call
    (asyncio's contract; rloop 0.5 runs it in whatever context is current later)."""
    seen = []
    sent = threading.Event()

    def producer():
        VAR.set("at-call")
        loop.call_soon_threadsafe(lambda: seen.append(VAR.get()))
        VAR.set("changed-after-the-call")
        sent.set()

    async def main():
        thread = threading.Thread(target=producer)
        thread.start()
        await loop.run_in_executor(None, sent.wait, 10)
        thread.join()
        for _ in range(3):
            await asyncio.sleep(0)

    VAR.set("loop-thread")
    loop.run_until_complete(main())
    assert seen == ["at-call"]
