"""call_soon_threadsafe and run_coroutine_threadsafe: waking a sleeping loop from other threads."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest
from ferro_testutil import run_briefly

# Generous bound for "promptly": the loop is sleeping on a 60 s timer, so anything
# well below that proves the wake-up worked. Never a performance threshold.
PROMPT = 5.0
JOIN_TIMEOUT = 30.0


def _in_thread(target, *args, delay=0.05):
    def run():
        time.sleep(delay)
        target(*args)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_wakes_loop_sleeping_on_long_timer(loop):
    out = []
    long_timer = loop.call_later(60, out.append, "long timer fired")
    thread = _in_thread(loop.call_soon_threadsafe, loop.stop)
    start = time.monotonic()
    loop.run_forever()
    elapsed = time.monotonic() - start
    thread.join(JOIN_TIMEOUT)
    assert elapsed < PROMPT
    assert out == []
    long_timer.cancel()


def test_wakes_loop_with_nothing_scheduled(loop):
    thread = _in_thread(loop.call_soon_threadsafe, loop.stop)
    start = time.monotonic()
    loop.run_forever()
    thread.join(JOIN_TIMEOUT)
    assert time.monotonic() - start < PROMPT


def test_wakes_task_sleeping_in_asyncio_sleep(loop):
    async def main():
        fut = loop.create_future()
        sleeper = loop.create_task(asyncio.sleep(60))
        _in_thread(loop.call_soon_threadsafe, fut.set_result, "woken")
        start = time.monotonic()
        res = await fut
        elapsed = time.monotonic() - start
        sleeper.cancel()
        return res, elapsed

    res, elapsed = loop.run_until_complete(main())
    assert res == "woken"
    assert elapsed < PROMPT


def test_threadsafe_callback_args_and_handle(loop, impl):
    out = []
    done = threading.Event()
    handles = []

    def from_thread():
        handles.append(loop.call_soon_threadsafe(out.append, ("x", 1)))
        handles.append(loop.call_soon_threadsafe(loop.stop))
        done.set()

    thread = _in_thread(from_thread)
    loop.call_later(60, lambda: None).cancel()
    loop.run_forever()
    thread.join(JOIN_TIMEOUT)
    assert done.is_set()
    assert out == [("x", 1)]
    assert type(handles[0]).__name__ == "Handle"
    assert isinstance(handles[0], impl.handle_class)


def test_cancelled_threadsafe_handle_does_not_run(loop):
    out = []
    h = loop.call_soon_threadsafe(out.append, "cancelled")
    h.cancel()
    loop.call_soon_threadsafe(out.append, "kept")
    run_briefly(loop)
    assert out == ["kept"]


def test_threadsafe_from_same_thread_is_fifo_with_call_soon(loop):
    out = []
    loop.call_soon(out.append, 1)
    loop.call_soon_threadsafe(out.append, 2)
    loop.call_soon(out.append, 3)
    run_briefly(loop)
    assert out == [1, 2, 3]


def test_many_threads_hammering_none_lost(loop):
    n_threads, per_thread = 8, 500
    received = []
    barrier = threading.Barrier(n_threads)

    def producer(tid):
        barrier.wait(JOIN_TIMEOUT)
        for i in range(per_thread):
            loop.call_soon_threadsafe(received.append, (tid, i))

    async def main():
        threads = [
            threading.Thread(target=producer, args=(t,), daemon=True) for t in range(n_threads)
        ]
        for t in threads:
            t.start()
        deadline = loop.time() + JOIN_TIMEOUT
        while len(received) < n_threads * per_thread and loop.time() < deadline:
            await asyncio.sleep(0.005)
        for t in threads:
            t.join(JOIN_TIMEOUT)
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert len(received) == n_threads * per_thread
    for tid in range(n_threads):
        assert [i for t, i in received if t == tid] == list(range(per_thread))


def test_one_thread_flooding_past_the_backlog_limit(loop):
    """100,000 calls from one thread, far past ferroloop's back-pressure limit (16 Ki
    queued callbacks, where the producer starts yielding the GIL per call): each
    callback runs once, in order, with the handle it was scheduled as; handles the
    producer keeps stay usable; a timer due during the flood still fires."""
    n = 100_000
    ran = []
    kept = []
    fired = []

    def producer():
        for i in range(n):
            handle = loop.call_soon_threadsafe(ran.append, i)
            if i % 1000 == 0:
                kept.append(handle)

    async def main():
        loop.call_later(0.001, fired.append, True)
        worker = threading.Thread(target=producer, daemon=True)
        worker.start()
        deadline = loop.time() + JOIN_TIMEOUT
        while len(ran) < n and loop.time() < deadline:
            await asyncio.sleep(0.001)
        worker.join(JOIN_TIMEOUT)

    loop.run_until_complete(main())
    assert ran == list(range(n))
    assert fired == [True]
    assert len(kept) == n // 1000 and len({id(h) for h in kept}) == len(kept)
    assert all(isinstance(h, asyncio.Handle) and not h.cancelled() for h in kept)
    kept[0].cancel()
    assert kept[0].cancelled()


def test_hammering_while_loop_sleeps(loop):
    """Producers race the loop going to sleep on a long timer; every wake-up must land."""
    rounds = 200
    got = []
    lost = []

    def producer():
        try:
            for i in range(rounds):
                ev = threading.Event()
                loop.call_soon_threadsafe(lambda i=i, ev=ev: (got.append(i), ev.set()))
                if not ev.wait(10):
                    lost.append(i)
                    break
        finally:
            loop.call_soon_threadsafe(loop.stop)

    long_timer = loop.call_later(60, lambda: None)
    t = threading.Thread(target=producer, daemon=True)
    t.start()
    start = time.monotonic()
    loop.run_forever()
    t.join(JOIN_TIMEOUT)
    long_timer.cancel()
    assert lost == [], "a call_soon_threadsafe() did not wake the sleeping loop"
    assert got == list(range(rounds))
    assert time.monotonic() - start < 55


def test_threadsafe_respects_context(loop):
    var = contextvars.ContextVar("tvar", default="unset")
    seen = []

    def from_thread():
        var.set("thread-value")
        loop.call_soon_threadsafe(lambda: seen.append(var.get()))
        ctx = contextvars.copy_context()
        ctx.run(var.set, "explicit")
        loop.call_soon_threadsafe(lambda: seen.append(var.get()), context=ctx)
        loop.call_soon_threadsafe(loop.stop)

    _in_thread(from_thread)
    loop.run_forever()
    assert seen == ["thread-value", "explicit"]


def test_run_coroutine_threadsafe(loop):
    async def coro(x):
        await asyncio.sleep(0.001)
        return x * 2

    results = []

    def from_thread():
        cfut = asyncio.run_coroutine_threadsafe(coro(21), loop)
        results.append(cfut.result(JOIN_TIMEOUT))
        loop.call_soon_threadsafe(loop.stop)

    _in_thread(from_thread)
    loop.run_forever()
    assert results == [42]


def test_run_coroutine_threadsafe_exception_and_cancel(loop):
    async def fail():
        raise ValueError("remote")

    async def forever():
        await asyncio.sleep(60)

    results = []

    def from_thread():
        c1 = asyncio.run_coroutine_threadsafe(fail(), loop)
        try:
            c1.result(JOIN_TIMEOUT)
        except ValueError as e:
            results.append(str(e))
        c2 = asyncio.run_coroutine_threadsafe(forever(), loop)
        time.sleep(0.01)
        c2.cancel()
        deadline = time.monotonic() + JOIN_TIMEOUT
        while not c2.done() and time.monotonic() < deadline:
            time.sleep(0.005)
        results.append(c2.cancelled())
        loop.call_soon_threadsafe(loop.stop)

    _in_thread(from_thread)
    loop.run_forever()
    # let the cancelled task finish its cancellation
    run_briefly(loop)
    run_briefly(loop)
    assert results == ["remote", True]
    assert asyncio.all_tasks(loop) == set()


def test_call_soon_threadsafe_on_closed_loop(loop):
    loop.close()
    errors = []

    def from_thread():
        try:
            loop.call_soon_threadsafe(lambda: None)
        except RuntimeError as e:
            errors.append(str(e))

    t = _in_thread(from_thread, delay=0)
    t.join(JOIN_TIMEOUT)
    assert errors == ["Event loop is closed"]


def test_stop_from_other_thread_while_running_forever(loop):
    out = []

    def tick():
        out.append("tick")
        loop.call_later(0.005, tick)

    loop.call_soon(tick)
    thread = _in_thread(loop.call_soon_threadsafe, loop.stop, delay=0.05)
    loop.run_forever()
    thread.join(JOIN_TIMEOUT)
    assert len(out) >= 1
    assert not loop.is_running()


@pytest.mark.parametrize("n", [1, 3])
def test_future_set_from_thread_via_threadsafe(loop, n):
    async def main():
        futs = [loop.create_future() for _ in range(n)]

        def work():
            for i, f in enumerate(futs):
                loop.call_soon_threadsafe(f.set_result, i)

        _in_thread(work)
        return await asyncio.gather(*futs)

    assert loop.run_until_complete(main()) == list(range(n))


def test_is_running_from_other_thread(loop):
    seen = []

    def probe():
        seen.append(loop.is_running())
        loop.call_soon_threadsafe(loop.stop)

    _in_thread(probe, delay=0.01)
    loop.run_forever()
    assert seen == [True]
    assert loop.is_running() is False


def test_loops_running_in_parallel_threads(impl):
    """Several loops run at once in different threads, each with its own running loop."""
    n = 4
    results = {}
    errors = []
    barrier = threading.Barrier(n)

    def worker(i):
        try:
            loop = impl.new_event_loop()
            try:

                async def main():
                    barrier.wait(JOIN_TIMEOUT)
                    total = 0
                    for j in range(50):
                        await asyncio.sleep(0)
                        assert asyncio.get_running_loop() is loop
                        total += j
                    return total, threading.get_ident()

                results[i] = loop.run_until_complete(main())
            finally:
                loop.close()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    assert errors == []
    assert sorted(results) == list(range(n))
    assert {r[0] for r in results.values()} == {sum(range(50))}
    assert len({r[1] for r in results.values()}) == n


def test_loop_created_in_one_thread_runs_in_another(impl):
    loop = impl.new_event_loop()
    out = []
    try:

        def runner():
            out.append(loop.run_until_complete(asyncio.sleep(0, result="moved")))

        t = threading.Thread(target=runner)
        t.start()
        t.join(JOIN_TIMEOUT)
        assert out == ["moved"]
        assert loop.run_until_complete(asyncio.sleep(0, result="back")) == "back"
    finally:
        loop.close()


def test_stop_reaches_a_loop_flooded_from_many_threads(impl):
    """8 threads call call_soon_threadsafe as fast as they can while the loop runs in
    another thread; call_soon_threadsafe(loop.stop) must still stop it (ferroloop's
    producers used to outrun the loop without bound). benches/flood.py measures the
    stop latency and memory."""
    import threading

    for _ in range(3):
        loop = impl.new_event_loop()
        started, done, halt = threading.Event(), threading.Event(), threading.Event()
        loop.call_soon(started.set)

        def runner(loop=loop, done=done):
            loop.run_forever()
            done.set()

        def producer(loop=loop, halt=halt):
            cst = loop.call_soon_threadsafe
            while not halt.is_set():
                for _ in range(100):
                    cst(int)

        t = threading.Thread(target=runner)
        t.start()
        assert started.wait(10)
        producers = [threading.Thread(target=producer) for _ in range(8)]
        for p in producers:
            p.start()
        time.sleep(0.2)
        loop.call_soon_threadsafe(loop.stop)
        stopped = done.wait(30)
        halt.set()
        for p in producers:
            p.join()
        if not stopped:
            loop.call_soon_threadsafe(loop.stop)
        t.join()
        loop.close()
        assert stopped, "the loop did not stop within 30 s of stop() under the flood"


def test_flood_while_the_loop_thread_blocks_without_the_gil(impl):
    """A callback blocks the loop's thread with the GIL released (a wait on an event)
    while another thread makes 100,000 ``call_soon_threadsafe`` calls and then sets the
    event: the producer must get through (ferroloop's back-pressure, past 16 Ki queued
    callbacks, may only give the GIL away, never wait for the loop), and every callback
    then runs, in order."""
    import threading

    loop = impl.new_event_loop()
    try:
        blocking = threading.Event()
        produced = threading.Event()
        seen = []
        waited = []

        def blocker():
            blocking.set()
            waited.append(produced.wait(30))

        def producer():
            if not blocking.wait(30):
                return
            cst = loop.call_soon_threadsafe
            for i in range(100_000):
                cst(seen.append, i)
            produced.set()

        async def main():
            thread = threading.Thread(target=producer)
            thread.start()
            loop.call_soon(blocker)
            await asyncio.sleep(0)
            while len(seen) < 100_000:
                await asyncio.sleep(0.01)
            thread.join()

        loop.run_until_complete(asyncio.wait_for(main(), 60))
        assert waited == [True]
        assert seen == list(range(100_000))
    finally:
        loop.close()
