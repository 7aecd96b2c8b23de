"""Objects made one after another behave as fresh objects, side by side.

ferroloop keeps freed handles, timer handles, futures and tasks on free lists and hands
their memory out again (src/free_list.rs). Nothing of a previous occupant may show
through: each future or task is finalised ("never retrieved", "destroyed but it is
pending!") on its own, weak references to a freed object stay dead, and every new
object is tracked by the cyclic collector and collected in a cycle.
"""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

ROUNDS = 50


def _assert_each_reported(loop_errors, message):
    """One report per round, in order, each with that round's exception; consumed."""
    gc.collect()
    assert [ctx["message"] for ctx in loop_errors] == [message] * ROUNDS
    assert [ctx["exception"].args[0] for ctx in loop_errors] == list(range(ROUNDS))
    loop_errors.clear()


def test_each_future_is_finalised(loop, loop_errors):
    """Every dropped future with an unretrieved exception is reported once."""
    for i in range(ROUNDS):
        fut = loop.create_future()
        fut.set_exception(ValueError(i))
        del fut
    _assert_each_reported(loop_errors, "Future exception was never retrieved")


def test_each_task_is_finalised(loop, loop_errors):
    """Every pending task dropped with its loop is reported once; one that finished
    with an unretrieved exception too."""

    async def fail(i):
        raise KeyError(i)

    async def main():
        for i in range(ROUNDS):
            task = loop.create_task(fail(i))
            await asyncio.sleep(0)
            assert task.done()
            del task

    loop.run_until_complete(main())
    _assert_each_reported(loop_errors, "Task exception was never retrieved")


def test_pending_tasks_destroyed_one_by_one(new_loop, loop_errors):
    """A pending task that is garbage is reported, again and again in the same memory."""
    loop = new_loop()

    async def wait():
        await loop.create_future()  # held only by this task: garbage together

    for _ in range(ROUNDS):
        task = loop.create_task(wait())
        loop.run_until_complete(asyncio.sleep(0))
        assert not task.done()
        del task
        gc.collect()
    messages = [ctx["message"] for ctx in loop_errors]
    assert messages == ["Task was destroyed but it is pending!"] * ROUNDS
    loop_errors.clear()


@pytest.mark.parametrize("kind", ["call_soon", "call_later", "future", "task"])
def test_weak_reference_stays_dead(loop, kind):
    """A weak reference to a freed object does not come back to life when a new
    object of the same kind is made."""

    async def noop():
        return None

    def make():
        if kind == "call_soon":
            return loop.call_soon(print)
        if kind == "call_later":
            return loop.call_later(3600, print)
        if kind == "future":
            return loop.create_future()
        return loop.create_task(noop())

    refs = []
    for _ in range(ROUNDS):
        obj = make()
        refs.append(weakref.ref(obj))
        if kind in ("call_soon", "call_later"):
            obj.cancel()
            loop.run_until_complete(asyncio.sleep(0))  # the loop lets the handle go
        elif kind == "task":
            loop.run_until_complete(obj)
        del obj
        gc.collect()
        assert refs[-1]() is None
    keep = [make() for _ in range(ROUNDS)]
    assert all(ref() is None for ref in refs)
    for obj in keep:
        if kind in ("call_soon", "call_later"):
            obj.cancel()
        elif kind == "task":
            loop.run_until_complete(obj)
    loop.run_until_complete(asyncio.sleep(0))


@pytest.mark.parametrize("kind", ["call_soon", "call_later", "future", "task"])
def test_new_objects_are_tracked_and_collected_in_cycles(loop, kind):
    """Objects made in freed memory are seen by the cyclic collector: a cycle through
    each is collected."""
    collected = []

    class Owner:
        def method(self):
            pass

    async def hold(owner):
        return owner

    for i in range(ROUNDS):
        owner = Owner()
        if kind == "call_soon":
            owner.ref = loop.call_soon(owner.method)
            owner.ref.cancel()
        elif kind == "call_later":
            owner.ref = loop.call_later(3600, owner.method)
            owner.ref.cancel()
        elif kind == "future":
            owner.ref = loop.create_future()
            owner.ref.add_done_callback(lambda f, owner=owner: None)
        else:
            owner.ref = loop.create_task(hold(owner))
            loop.run_until_complete(owner.ref)
        assert gc.is_tracked(owner.ref)
        weakref.finalize(owner, collected.append, i)
        del owner
    loop.run_until_complete(asyncio.sleep(0))
    gc.collect()
    assert sorted(collected) == list(range(ROUNDS))


def test_future_subclass_instances_between_reused_ones(loop, loop_errors):
    """Instances of a Python subclass made among reused native futures are whole
    objects with their own attributes, and are finalised too."""
    base = type(loop.create_future())

    class Sub(base):  # type: ignore[misc, valid-type]
        pass

    for i in range(ROUNDS):
        plain = loop.create_future()
        sub = Sub(loop=loop)
        sub.tag = i
        assert (type(sub), sub.tag) == (Sub, i)
        sub.set_exception(ValueError(i))
        plain.set_result(i)
        assert plain.result() == i
        del plain, sub
    gc.collect()
    assert [ctx["exception"].args[0] for ctx in loop_errors] == list(range(ROUNDS))
    loop_errors.clear()


@pytest.mark.parametrize("kind", ["call_soon", "call_later", "future", "task"])
def test_weak_reference_callbacks_run_once_when_freed(loop, kind):
    """Freeing an object runs each weak reference's callback once, and releases
    what the object held (ferroloop frees its own objects without pyo3's path:
    src/direct_objects.rs)."""
    fired = []
    released = []

    class Arg:
        pass

    async def hold(arg):
        return arg

    refs = []
    for i in range(ROUNDS):
        arg = Arg()
        weakref.finalize(arg, released.append, i)
        if kind == "call_soon":
            obj = loop.call_soon(print, arg)
        elif kind == "call_later":
            obj = loop.call_later(3600, print, arg)
        elif kind == "future":
            obj = loop.create_future()
            obj.set_result(arg)
        else:
            obj = loop.create_task(hold(arg))
            loop.run_until_complete(obj)
        del arg
        refs.append(weakref.ref(obj, lambda _ref, i=i: fired.append(i)))
        if kind in ("call_soon", "call_later"):
            loop.call_soon(obj.cancel)  # from a callback: the handle stays queued
            loop.run_until_complete(asyncio.sleep(0))
        del obj
        assert fired == list(range(i + 1))  # freed at once: no cycle holds it
        assert released == list(range(i + 1))
    assert all(ref() is None for ref in refs)


def test_hot_classes_take_the_direct_paths():
    """ferroloop builds and frees its five most frequent classes itself: the layout
    probe at import accepted each (a pyo3 that lays instances out differently
    would fall back silently to its own, slower paths -- this says so)."""
    from ferroloop import _ferroloop

    assert _ferroloop._direct_object_classes() == [
        "Handle",
        "TimerHandle",
        "Future",
        "Task",
        "FutureIter",
    ]
