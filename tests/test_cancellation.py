"""Task cancellation: messages, cancelling()/uncancel(), cancellation through asyncio helpers."""

from __future__ import annotations

import asyncio
import sys

import pytest
from ferro_testutil import run_briefly


def test_cancel_pending_task_at_await_point(loop):
    trace = []

    async def victim():
        trace.append("start")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError as e:
            trace.append(("cancelled", e.args))
            raise
        trace.append("not reached")

    task = loop.create_task(victim())
    run_briefly(loop)
    assert task.cancel() is True
    assert not task.done()
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)
    assert trace == ["start", ("cancelled", ())]
    assert task.cancelled() and task.done()
    assert task.cancel() is False


def test_cancel_message_reaches_coroutine_and_result(loop):
    seen = []

    async def victim():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError as e:
            seen.append(e.args)
            raise

    task = loop.create_task(victim())
    run_briefly(loop)
    task.cancel("stop now")
    with pytest.raises(asyncio.CancelledError) as info:
        loop.run_until_complete(task)
    assert seen == [("stop now",)]
    assert info.value.args == ("stop now",)
    # Only the first retrieval is guaranteed to carry the message in asyncio
    # (the C Task hands its stored CancelledError out once).
    with pytest.raises(asyncio.CancelledError):
        task.result()
    with pytest.raises(asyncio.CancelledError):
        task.exception()


def test_cancel_message_seen_by_awaiter(loop):
    async def victim():
        await asyncio.sleep(10)

    async def main():
        t = loop.create_task(victim())
        await asyncio.sleep(0)
        t.cancel("msg-for-awaiter")
        try:
            await t
        except asyncio.CancelledError as e:
            return e.args

    assert loop.run_until_complete(main()) == ("msg-for-awaiter",)


def test_cancel_before_first_step_never_runs_body(loop):
    ran = []

    async def body():
        ran.append(True)

    task = loop.create_task(body())
    task.cancel("early")
    with pytest.raises(asyncio.CancelledError) as info:
        loop.run_until_complete(task)
    assert ran == []
    assert task.cancelled()
    assert info.value.args == ("early",)


def test_cancelling_and_uncancel(loop):
    async def victim():
        await asyncio.sleep(10)

    task = loop.create_task(victim())
    run_briefly(loop)
    assert task.cancelling() == 0
    assert task.cancel() is True
    assert task.cancelling() == 1
    assert task.cancel() is True
    assert task.cancelling() == 2
    assert task.uncancel() == 1
    assert task.cancelling() == 1
    assert task.uncancel() == 0
    assert task.uncancel() == 0
    assert task.cancelling() == 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)
    assert task.cancelled()


def test_task_swallows_cancellation(loop):
    async def stubborn():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "swallowed"

    task = loop.create_task(stubborn())
    run_briefly(loop)
    task.cancel()
    assert loop.run_until_complete(task) == "swallowed"
    assert not task.cancelled()
    assert task.cancelling() == 1


def test_uncancel_lets_task_continue(loop):
    async def resilient():
        task = asyncio.current_task()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            task.uncancel()
        await asyncio.sleep(0)
        return task.cancelling()

    task = loop.create_task(resilient())
    run_briefly(loop)
    task.cancel()
    assert loop.run_until_complete(task) == 0


def test_cancel_done_task_returns_false(loop):
    async def quick():
        return 1

    task = loop.create_task(quick())
    loop.run_until_complete(task)
    assert task.cancel() is False
    assert task.cancel("msg") is False
    assert not task.cancelled()
    assert task.cancelling() == 0


def test_cancel_propagates_to_awaited_task(loop):
    async def inner():
        await asyncio.sleep(10)

    async def outer(holder):
        holder["inner"] = loop.create_task(inner())
        await holder["inner"]

    holder = {}
    task = loop.create_task(outer(holder))
    run_briefly(loop)
    run_briefly(loop)
    task.cancel("chain")
    with pytest.raises(asyncio.CancelledError) as info:
        loop.run_until_complete(task)
    assert info.value.args == ("chain",)
    assert holder["inner"].cancelled()
    assert task.cancelled()


def test_cancel_propagates_to_awaited_future(loop):
    fut = loop.create_future()

    async def waiter():
        await fut

    task = loop.create_task(waiter())
    run_briefly(loop)
    task.cancel("fut-msg")
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)
    assert fut.cancelled()
    with pytest.raises(asyncio.CancelledError) as info:
        fut.result()
    assert info.value.args == ("fut-msg",)


def test_cancelling_awaited_future_cancels_task(loop):
    fut = loop.create_future()

    async def waiter():
        try:
            await fut
        except asyncio.CancelledError as e:
            return ("caught", e.args)

    task = loop.create_task(waiter())
    run_briefly(loop)
    fut.cancel("from-future")
    assert loop.run_until_complete(task) == ("caught", ("from-future",))


def test_self_cancel(loop):
    async def selfish():
        asyncio.current_task().cancel("self")
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError as e:
            return e.args

    assert loop.run_until_complete(selfish()) == ("self",)


def test_cancel_while_ready_to_resume(loop):
    """A cancel() after the awaited future completed, before the task resumed, wins."""
    fut = loop.create_future()
    seen = []

    async def waiter():
        try:
            value = await fut
            seen.append(("value", value))
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    task = loop.create_task(waiter())
    run_briefly(loop)
    fut.set_result("v")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)
    assert seen == ["cancelled"]


def test_cancel_during_sleep_is_prompt(loop):
    async def main():
        t = loop.create_task(asyncio.sleep(3600))
        await asyncio.sleep(0)
        start = loop.time()
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            pass
        return t.cancelled(), loop.time() - start < 5

    assert loop.run_until_complete(main()) == (True, True)


def test_gather_cancel_cancels_children(loop):
    async def child():
        await asyncio.sleep(10)

    async def main():
        c1 = loop.create_task(child())
        c2 = loop.create_task(child())
        g = asyncio.gather(c1, c2)
        await asyncio.sleep(0)
        g.cancel()
        try:
            await g
        except asyncio.CancelledError:
            pass
        return c1.cancelled(), c2.cancelled(), g.cancelled()

    # gather's outer future ends with a CancelledError *exception*, not cancelled().
    assert loop.run_until_complete(main()) == (True, True, False)


def test_wait_for_timeout_cancels_inner(loop):
    state = {}

    async def inner():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            state["inner_cancelled"] = True
            raise

    async def main():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(inner(), 0.01)
        return state

    assert loop.run_until_complete(main()) == {"inner_cancelled": True}


def test_timeout_converts_cancellation(loop):
    async def main():
        task = asyncio.current_task()
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)
        except TimeoutError as e:
            return type(e.__cause__).__name__, task.cancelling()

    assert loop.run_until_complete(main()) == ("CancelledError", 0)


def test_outer_cancel_inside_timeout_is_not_converted(loop):
    async def inner():
        async with asyncio.timeout(10):
            await asyncio.sleep(10)

    async def main():
        t = loop.create_task(inner())
        await asyncio.sleep(0)
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            return "cancelled"
        except TimeoutError:
            return "timeout"

    assert loop.run_until_complete(main()) == "cancelled"


def test_shield_outer_cancel(loop):
    async def main():
        inner = loop.create_task(asyncio.sleep(0.01, result="inner-result"))

        async def waiter():
            return await asyncio.shield(inner)

        w = loop.create_task(waiter())
        await asyncio.sleep(0)
        w.cancel()
        try:
            await w
        except asyncio.CancelledError:
            pass
        return w.cancelled(), inner.cancelled(), await inner

    assert loop.run_until_complete(main()) == (True, False, "inner-result")


def test_task_group_cancelled_from_outside(loop):
    cancelled = []

    async def child(i):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    async def body():
        async with asyncio.TaskGroup() as tg:
            for i in range(3):
                tg.create_task(child(i))

    async def main():
        t = loop.create_task(body())
        await asyncio.sleep(0.001)
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            return sorted(cancelled), t.cancelled()

    assert loop.run_until_complete(main()) == ([0, 1, 2], True)


def test_cancelled_error_not_caught_by_except_exception(loop):
    async def victim():
        try:
            await asyncio.sleep(10)
        except Exception:  # noqa: BLE001 - the point of the test
            return "wrongly caught"

    task = loop.create_task(victim())
    run_briefly(loop)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)


def test_run_until_complete_cancelled_future(loop):
    fut = loop.create_future()
    loop.call_soon(fut.cancel, "ruc")
    with pytest.raises(asyncio.CancelledError) as info:
        loop.run_until_complete(fut)
    assert info.value.args == ("ruc",)


def test_cancel_task_waiting_on_cancelled_inner_reraises(loop):
    async def inner():
        raise asyncio.CancelledError("inner-raised")

    async def outer():
        await loop.create_task(inner())

    task = loop.create_task(outer())
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)
    assert task.cancelled()


def test_uncancel_before_first_step_does_not_revoke_cancel(loop):
    """Up to 3.12, uncancel() only lowers the counter and the pending cancellation
    still happens; from 3.13, uncancel() to zero also withdraws it (the task runs)."""
    ran = []

    async def body():
        ran.append(True)

    task = loop.create_task(body())
    task.cancel()
    assert task.uncancel() == 0
    if sys.version_info >= (3, 13):
        loop.run_until_complete(task)
        assert ran == [True]
        assert not task.cancelled()
        return
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)
    assert ran == []
    assert task.cancelled()
