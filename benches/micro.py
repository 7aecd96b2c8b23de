"""Micro-benchmarks of the event loop's core: callbacks, timers, tasks, futures, queues.

Run ``python benches/micro.py`` (or ``make bench``) to compare ferroloop with the stdlib
asyncio loop, uvloop and rloop; ``--help`` lists the options (``--loops``,
``--workloads``, ``--quick``, ``--json PATH``, ...).  Each workload is a function
``run(loop, n)`` returning the number of operations it did; see ``_common.py``.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading

from _common import Workload, main  # the script's own folder is first on sys.path


def call_soon_chain(loop: asyncio.AbstractEventLoop, n: int) -> int:
    """One callback that re-schedules itself with ``call_soon`` ``n`` times."""
    done = loop.create_future()
    count = 0

    def step() -> None:
        nonlocal count
        count += 1
        if count < n:
            loop.call_soon(step)
        else:
            done.set_result(count)

    loop.call_soon(step)
    loop.run_until_complete(done)
    return n


def call_later_cancel(loop: asyncio.AbstractEventLoop, n: int) -> int:
    """Schedule ``n`` timers (1-1000 us, shuffled), cancel every other one, run the rest.

    The timers are scheduled and cancelled by a coroutine on the running loop, as
    programs do (``wait_for``, ``sleep``, timeouts in protocols).
    """
    done = loop.create_future()
    expected = n // 2  # the odd-indexed timers survive
    fired = 0

    def on_timer(i: int) -> None:
        nonlocal fired
        if not i & 1:
            raise AssertionError(f"cancelled timer {i} ran")
        fired += 1
        if fired == expected:
            done.set_result(fired)

    async def main_coro() -> None:
        call_later = loop.call_later
        handles = [call_later((1 + i * 7919 % 1000) * 1e-6, on_timer, i) for i in range(n)]
        for handle in handles[::2]:
            handle.cancel()
        del handles
        if expected:
            await done

    loop.run_until_complete(main_coro())
    return n


def gather_tasks(loop: asyncio.AbstractEventLoop, n: int) -> int:
    """``create_task`` + ``gather`` over many tiny coroutines, 1000 per batch."""
    batch = 1000

    async def tiny(i: int) -> int:
        return i

    async def main_coro() -> None:
        left = n
        while left > 0:
            size = min(batch, left)
            tasks = [loop.create_task(tiny(i)) for i in range(size)]
            await asyncio.gather(*tasks)
            left -= size

    loop.run_until_complete(main_coro())
    return n


def gather_wait_for(loop: asyncio.AbstractEventLoop, n: int) -> int:
    """``gather`` of ``wait_for(coro, timeout)`` over tiny coroutines, 1000 per batch.

    Every ``wait_for`` arms a timeout timer (a task and a ``call_later`` on 3.11, an
    ``asyncio.timeout`` on 3.12+) and cancels it when the coroutine finishes first.
    """
    batch = 1000

    async def tiny(i: int) -> int:
        await asyncio.sleep(0)
        return i

    async def main_coro() -> None:
        left = n
        while left > 0:
            size = min(batch, left)
            results = await asyncio.gather(*(asyncio.wait_for(tiny(i), 10) for i in range(size)))
            if results[-1] != size - 1:
                raise AssertionError("wait_for returned a wrong result")
            left -= size

    loop.run_until_complete(main_coro())
    return n


def sleep_zero(loop: asyncio.AbstractEventLoop, n: int) -> int:
    """One task doing ``await asyncio.sleep(0)`` ``n`` times."""

    async def main_coro() -> None:
        for _ in range(n):
            await asyncio.sleep(0)

    loop.run_until_complete(main_coro())
    return n


def future_ping_pong(loop: asyncio.AbstractEventLoop, n: int) -> int:
    """Two tasks each await a future that the other resolves, ``n`` rounds each."""
    futs = [loop.create_future(), loop.create_future()]

    async def player(me: int) -> None:
        other = 1 - me
        for _ in range(n):
            value = await futs[me]
            futs[me] = loop.create_future()
            futs[other].set_result(value + 1)

    async def main_coro() -> None:
        futs[0].set_result(0)
        await asyncio.gather(player(0), player(1))

    loop.run_until_complete(main_coro())
    return 2 * n


def _queue(loop: asyncio.AbstractEventLoop, n: int, maxsize: int) -> int:
    """One producer and one consumer pass ``n`` items through ``asyncio.Queue(maxsize)``."""

    async def main_coro() -> None:
        queue: asyncio.Queue[int | None] = asyncio.Queue(maxsize=maxsize)

        async def producer() -> None:
            for i in range(n):
                await queue.put(i)
            await queue.put(None)

        async def consumer() -> int:
            got = 0
            while await queue.get() is not None:
                got += 1
            return got

        _, got = await asyncio.gather(producer(), consumer())
        if got != n:
            raise AssertionError(f"consumer got {got} items, expected {n}")

    loop.run_until_complete(main_coro())
    return n


def queue_handoff(loop: asyncio.AbstractEventLoop, n: int) -> int:
    """Producer/consumer over ``asyncio.Queue(maxsize=1)``: a task switch per item."""
    return _queue(loop, n, 1)


def queue_batched(loop: asyncio.AbstractEventLoop, n: int) -> int:
    """Producer/consumer over ``asyncio.Queue(maxsize=64)``: switches every ~64 items."""
    return _queue(loop, n, 64)


def _threadsafe(
    loop: asyncio.AbstractEventLoop, n: int, threads: int, copy_context: bool = True
) -> int:
    """``threads`` threads each call ``call_soon_threadsafe`` ~``n / threads`` times.

    With ``copy_context=False`` every call passes one ready-made ``context=``, so no loop
    copies the caller's context (asyncio's contract does it for each call; rloop 0.5
    skips it): the figure with that piece of the contract taken out.
    """
    per_thread = max(1, n // threads)
    total = per_thread * threads
    done = loop.create_future()
    count = 0

    def on_call() -> None:
        nonlocal count
        count += 1
        if count == total:
            done.set_result(count)

    def sender() -> None:
        call = loop.call_soon_threadsafe
        if copy_context:
            for _ in range(per_thread):
                call(on_call)
        else:
            ctx = contextvars.copy_context()
            for _ in range(per_thread):
                call(on_call, context=ctx)

    async def main_coro() -> None:
        workers = [threading.Thread(target=sender) for _ in range(threads)]
        for worker in workers:
            worker.start()
        try:
            await done
        finally:
            for worker in workers:
                worker.join()

    loop.run_until_complete(main_coro())
    return total


def threadsafe_1(loop: asyncio.AbstractEventLoop, n: int) -> int:
    """``call_soon_threadsafe`` from one other thread."""
    return _threadsafe(loop, n, 1)


def threadsafe_4(loop: asyncio.AbstractEventLoop, n: int) -> int:
    """``call_soon_threadsafe`` from four other threads."""
    return _threadsafe(loop, n, 4)


def threadsafe_4_given_context(loop: asyncio.AbstractEventLoop, n: int) -> int:
    """``threadsafe_4_threads`` with an explicit ``context=`` (no context copied per call)."""
    return _threadsafe(loop, n, 4, copy_context=False)


WORKLOADS = [
    Workload("call_soon_chain", call_soon_chain, 200_000, 10_000, call_soon_chain.__doc__),
    Workload("call_later_cancel", call_later_cancel, 100_000, 5_000, call_later_cancel.__doc__),
    Workload("gather_tasks", gather_tasks, 100_000, 5_000, gather_tasks.__doc__),
    Workload("gather_wait_for", gather_wait_for, 50_000, 2_500, gather_wait_for.__doc__),
    Workload("sleep_zero", sleep_zero, 150_000, 7_500, sleep_zero.__doc__),
    Workload("future_ping_pong", future_ping_pong, 75_000, 4_000, future_ping_pong.__doc__),
    Workload("queue_handoff", queue_handoff, 50_000, 2_500, queue_handoff.__doc__),
    Workload("queue_batched", queue_batched, 400_000, 20_000, queue_batched.__doc__),
    Workload("threadsafe_1_thread", threadsafe_1, 80_000, 4_000, threadsafe_1.__doc__),
    Workload("threadsafe_4_threads", threadsafe_4, 80_000, 4_000, threadsafe_4.__doc__),
    Workload(
        "threadsafe_4_given_context",
        threadsafe_4_given_context,
        80_000,
        4_000,
        threadsafe_4_given_context.__doc__,
    ),
]


if __name__ == "__main__":
    raise SystemExit(main("micro", WORKLOADS, os.path.abspath(__file__)))
