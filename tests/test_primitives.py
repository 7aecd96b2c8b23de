"""asyncio synchronisation primitives and queues driven by the loop (wake-up order matters)."""

from __future__ import annotations

import asyncio


def test_queue_producer_consumer_order(loop):
    async def main():
        q: asyncio.Queue = asyncio.Queue(maxsize=2)
        trace = []

        async def producer():
            for i in range(5):
                await q.put(i)
                trace.append(("put", i))
            await q.put(None)

        async def consumer():
            while (item := await q.get()) is not None:
                trace.append(("got", item))
                q.task_done()
            q.task_done()

        await asyncio.gather(producer(), consumer())
        await q.join()
        return trace

    assert loop.run_until_complete(main()) == [
        ("put", 0),
        ("put", 1),
        ("got", 0),
        ("got", 1),
        ("put", 2),
        ("put", 3),
        ("got", 2),
        ("got", 3),
        ("put", 4),
        ("got", 4),
    ]


def test_lock_is_fifo(loop):
    async def main():
        lock = asyncio.Lock()
        order = []

        async def worker(i):
            async with lock:
                order.append(i)
                await asyncio.sleep(0)

        await asyncio.gather(*(worker(i) for i in range(6)))
        return order

    assert loop.run_until_complete(main()) == list(range(6))


def test_event_wakes_all_waiters_in_order(loop):
    async def main():
        ev = asyncio.Event()
        woken = []

        async def waiter(i):
            await ev.wait()
            woken.append(i)

        tasks = [loop.create_task(waiter(i)) for i in range(4)]
        await asyncio.sleep(0)
        assert woken == []
        ev.set()
        await asyncio.gather(*tasks)
        return woken

    assert loop.run_until_complete(main()) == [0, 1, 2, 3]


def test_semaphore_limits_concurrency(loop):
    async def main():
        sem = asyncio.Semaphore(2)
        active = []
        peak = []

        async def worker():
            async with sem:
                active.append(1)
                peak.append(len(active))
                await asyncio.sleep(0)
                active.pop()

        await asyncio.gather(*(worker() for _ in range(8)))
        return max(peak)

    assert loop.run_until_complete(main()) == 2


def test_condition_notify(loop):
    async def main():
        cond = asyncio.Condition()
        out = []

        async def waiter(i):
            async with cond:
                await cond.wait()
                out.append(i)

        tasks = [loop.create_task(waiter(i)) for i in range(3)]
        await asyncio.sleep(0)
        async with cond:
            cond.notify(2)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        first = list(out)
        async with cond:
            cond.notify_all()
        await asyncio.gather(*tasks)
        return first, out

    assert loop.run_until_complete(main()) == ([0, 1], [0, 1, 2])


def test_priority_and_lifo_queues(loop):
    async def main():
        pq: asyncio.PriorityQueue = asyncio.PriorityQueue()
        lq: asyncio.LifoQueue = asyncio.LifoQueue()
        for x in (3, 1, 2):
            pq.put_nowait(x)
            lq.put_nowait(x)
        return [await pq.get() for _ in range(3)], [await lq.get() for _ in range(3)]

    assert loop.run_until_complete(main()) == ([1, 2, 3], [2, 1, 3])


def test_barrier(loop):
    async def main():
        barrier = asyncio.Barrier(3)
        out = []

        async def party(i):
            out.append(("arrive", i))
            await barrier.wait()
            out.append(("leave", i))

        await asyncio.gather(*(party(i) for i in range(3)))
        return out

    res = loop.run_until_complete(main())
    assert res[:3] == [("arrive", 0), ("arrive", 1), ("arrive", 2)]
    assert sorted(res[3:]) == [("leave", 0), ("leave", 1), ("leave", 2)]


def test_queue_get_with_timeout(loop):
    async def main():
        q: asyncio.Queue = asyncio.Queue()
        try:
            await asyncio.wait_for(q.get(), 0.01)
        except TimeoutError:
            pass
        loop.call_later(0.001, q.put_nowait, "late")
        return await asyncio.wait_for(q.get(), 5)

    assert loop.run_until_complete(main()) == "late"
