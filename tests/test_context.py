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

    def producer():
        VAR.set("at-call")
        loop.call_soon_threadsafe(lambda: seen.append(VAR.get()))
        VAR.set("changed-after-the-call")

    VAR.set("loop-thread")
    _run_in_another_thread(loop, producer)
    assert seen == ["at-call"]


def _run_in_another_thread(loop, producer, loop_thread_value=None):
    """Run ``producer`` in a new thread while ``loop`` runs (setting VAR to
    ``loop_thread_value`` on the loop's side first, if given), then let what it
    scheduled run."""
    sent = threading.Event()

    def body():
        try:
            producer()
        finally:
            sent.set()

    async def main():
        if loop_thread_value is not None:
            VAR.set(loop_thread_value)
        thread = threading.Thread(target=body)
        thread.start()
        await loop.run_in_executor(None, sent.wait, 10)
        thread.join()
        for _ in range(3):
            await asyncio.sleep(0)

    loop.run_until_complete(main())


def _context_of(handle):
    """The handle's context: ``get_context()`` (3.12+), else asyncio's ``_context`` slot."""
    return handle.get_context() if hasattr(handle, "get_context") else handle._context


def _schedule(loop, method, cb):
    if method == "call_later":
        return loop.call_later(0, cb)
    return getattr(loop, method)(cb)


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe", "call_later"])
@pytest.mark.parametrize("look_before_run", [True, False])
def test_handle_context_is_the_one_context_the_callback_runs_in(loop, method, look_before_run):
    """A handle's context is one object, holding the caller's variables as they were at
    scheduling: what is set through it before the run is seen by the callback, the context
    the callback runs in is the one the handle hands out (entered, so it cannot be entered
    again), and what the callback sets is seen through it afterwards."""
    seen = []
    handles = []

    def cb():
        seen.append(VAR.get())
        VAR.set("set-by-callback")
        ctx = _context_of(handles[0])
        seen.append(ctx[VAR])
        seen.append(ctx)
        with pytest.raises(RuntimeError):
            ctx.run(lambda: None)

    VAR.set("at-schedule")
    handles.append(_schedule(loop, method, cb))
    VAR.set("after-schedule")
    if look_before_run:
        ctx = _context_of(handles[0])
        assert ctx is _context_of(handles[0])
        assert ctx[VAR] == "at-schedule"
        ctx.run(VAR.set, "set-through-the-handle")
    loop.call_later(0.001, loop.stop)
    loop.run_forever()
    first = "set-through-the-handle" if look_before_run else "at-schedule"
    assert seen[:2] == [first, "set-by-callback"]
    assert seen[2] is _context_of(handles[0])
    assert _context_of(handles[0])[VAR] == "set-by-callback"
    assert VAR.get() == "after-schedule"


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe", "call_later"])
def test_cancelled_handle_keeps_no_context_alive(loop, method):
    """A cancelled handle lets go of what it captured (asyncio's cancel() drops the callback
    and arguments; the context it copied goes with the handle)."""
    import gc
    import weakref

    class Value:
        pass

    value = Value()
    ref = weakref.ref(value)
    VAR.set(value)
    handle = _schedule(loop, method, lambda: None)
    VAR.set("default")
    del value
    handle.cancel()
    loop.call_later(0.001, loop.stop)
    loop.run_forever()
    del handle
    gc.collect()
    assert ref() is None


def test_cycle_through_a_context_variable_is_collected(loop):
    """A handle whose captured variables hold an object that holds the handle is garbage
    once the loop is done with it, and the collector frees the cycle."""
    import gc
    import weakref

    class Holder:
        handle = None

    holder = Holder()
    ref = weakref.ref(holder)
    VAR.set(holder)
    holder.handle = loop.call_soon(lambda: None)
    VAR.set("default")
    del holder
    loop.call_later(0.001, loop.stop)
    loop.run_forever()
    gc.collect()
    assert ref() is None


def test_fresh_thread_without_a_context_schedules_in_an_empty_one(loop):
    """``call_soon_threadsafe`` from a thread that never touched contextvars runs the
    callback with every variable at its default, even when the loop thread set them."""
    seen = []

    def producer():
        loop.call_soon_threadsafe(lambda: seen.append(VAR.get()))

    _run_in_another_thread(loop, producer, loop_thread_value="loop-thread")
    assert seen == ["default"]


def test_handles_capture_variables_not_copies(ferroloop_only):
    """ferroloop: the import-time probe found the fields a one-shot handle's context
    snapshot reads, so handles take that path on this CPython (a layout change fails
    here instead of silently copying every context again)."""
    from ferroloop import _ferroloop

    enabled, tstate_offset = _ferroloop._context_snapshot_layout()
    assert enabled
    assert tstate_offset > 0


def test_token_from_one_callback_is_foreign_to_the_next(loop):
    """Each callback runs in its own copy of the caller's context: a ``Token`` made in one
    is rejected in the next (its context is another one), even once the first is done."""
    tokens = []
    errors = []

    def first():
        tokens.append(VAR.set("first"))

    def second():
        try:
            VAR.reset(tokens[0])
        except ValueError:
            errors.append("ValueError")
        seen.append(VAR.get())

    seen = []
    loop.call_soon(first)
    loop.call_soon(second)
    run_briefly(loop)
    assert errors == ["ValueError"]
    assert seen == ["default"]


def test_values_a_callback_sets_are_freed_after_it_runs(loop):
    """What a callback sets in its context goes with that context once the handle is done
    (no collection needed, and before anything else is scheduled), and the next callback
    starts from the caller's variables."""
    import weakref

    class Value:
        pass

    refs = []
    seen = []

    def setter():
        value = Value()
        refs.append(weakref.ref(value))
        VAR.set(value)

    async def main():
        VAR.set("caller")
        loop.call_soon(setter)
        for _ in range(3):
            await asyncio.sleep(0)
        alive = [ref() is not None for ref in refs]
        loop.call_soon(lambda: seen.append(VAR.get()))
        await asyncio.sleep(0)
        return alive

    assert loop.run_until_complete(main()) == [False]
    assert seen == ["caller"]
