"""Reference handling: the loop releases callbacks, arguments, results, tasks and exceptions."""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref

from ferro_testutil import run_briefly


class Obj:
    """A weak-referenceable payload."""


class MyError(Exception):
    """A weak-referenceable exception (builtin exceptions are not)."""


def _all_dead(refs) -> bool:
    gc.collect()
    return all(r() is None for r in refs)


def test_cancel_releases_callback_args(loop):
    o1, o2 = Obj(), Obj()
    refs = [weakref.ref(o1), weakref.ref(o2)]
    h = loop.call_soon(print, o1)
    th = loop.call_later(10, print, o2)
    del o1, o2
    h.cancel()
    th.cancel()
    # the handles are still referenced (here and by the loop's queues), their payload is not
    assert _all_dead(refs)
    assert h.cancelled() and th.cancelled()
    run_briefly(loop)


def test_ran_callback_args_released(loop):
    refs = []
    for _ in range(10):
        o = Obj()
        refs.append(weakref.ref(o))
        loop.call_soon(lambda x: None, o)
        loop.call_later(0, lambda x: None, o)
    del o
    run_briefly(loop)
    run_briefly(loop)
    assert _all_dead(refs)


def test_fired_timer_handle_released(loop):
    h = loop.call_later(0, lambda: None)
    ref = weakref.ref(h)
    del h
    run_briefly(loop)
    run_briefly(loop)
    assert _all_dead([ref])


def test_future_results_released(loop):
    refs = []

    async def main():
        for _ in range(100):
            f = loop.create_future()
            o = Obj()
            refs.append(weakref.ref(o))
            loop.call_soon(f.set_result, o)
            await f
            del f, o

    loop.run_until_complete(main())
    assert _all_dead(refs)


def test_done_callbacks_released_after_run(loop):
    refs = []
    fut = loop.create_future()
    for _ in range(5):
        o = Obj()
        refs.append(weakref.ref(o))
        fut.add_done_callback(lambda f, o=o: None)
    del o
    fut.set_result(None)
    run_briefly(loop)
    assert _all_dead(refs)


def test_tasks_released(loop):
    refs = []

    async def child():
        o = Obj()
        await asyncio.sleep(0)
        return o

    async def main():
        for _ in range(50):
            t = loop.create_task(child())
            refs.append(weakref.ref(t))
            r = await t
            refs.append(weakref.ref(r))
            del t, r

    loop.run_until_complete(main())
    assert _all_dead(refs)


def test_task_exceptions_released(loop):
    refs = []

    async def failing():
        raise MyError()

    async def main():
        for _ in range(50):
            try:
                await loop.create_task(failing())
            except MyError as e:
                refs.append(weakref.ref(e))

    loop.run_until_complete(main())
    assert _all_dead(refs)


def test_future_freed_by_refcount_alone(loop):
    fut = loop.create_future()
    ref = weakref.ref(fut)
    del fut
    assert ref() is None


def test_close_releases_pending_handles(loop):
    o = Obj()
    ref = weakref.ref(o)
    loop.call_soon(print, o)
    loop.call_later(10, print, o)
    del o
    loop.close()
    assert _all_dead([ref])


def test_no_refcount_growth_on_scheduled_objects(loop):
    o = Obj()
    before = sys.getrefcount(o)

    async def main():
        for _ in range(200):
            loop.call_soon(lambda x: None, o)
            f = loop.create_future()
            f.set_result(o)
            await f
            del f
            await asyncio.sleep(0)

    loop.run_until_complete(main())
    gc.collect()
    assert sys.getrefcount(o) == before


def test_coroutine_frame_released_after_task_done(loop):
    holder = []

    async def coro():
        local = Obj()
        holder.append(weakref.ref(local))
        await asyncio.sleep(0)

    task = loop.create_task(coro())
    loop.run_until_complete(task)
    assert _all_dead(holder)
    assert task.done()
