"""Concurrency stress: ``call_soon_threadsafe`` and ``run_in_executor`` hammered from 8
threads while the loop runs, stops and closes.  No crash, no hang, and exactly what
asyncio guarantees.

What asyncio guarantees (and so what is checked, on both loops):

1. ``call_soon_threadsafe`` either returns a handle or raises
   ``RuntimeError('Event loop is closed')``; it raises for every call made after
   ``close()`` returned, and once it raised for a thread it raises for all of that
   thread's later calls.
2. The ready queue is FIFO: the callbacks of one thread run in the order of its calls,
   and those that ran form a prefix of the calls that returned a handle.
3. A callback enqueued before ``stop()``'s own callback (ordered here by a lock that
   both sides take around their ``call_soon*`` call) runs before ``run_forever()``
   returns: nothing enqueued ahead of the stop is lost.  Callbacks enqueued after it
   may or may not run before the loop stops; those still queued at ``close()`` are
   dropped, never run later, and nothing runs once ``close()`` returned.
4. While the loop runs and the producers finish before it stops, every callback runs
   exactly once (none lost, none duplicated).
5. Executor jobs still running at ``close()`` complete in their threads; their results
   are dropped without an error reaching the loop or ``sys.unraisablehook``; the
   worker threads exit afterwards.

``FERROLOOP_STRESS_ROUNDS`` (default 3) repeats the close race for longer local runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import threading
import time

import pytest

N_THREADS = 8
PER_THREAD = 3000
ROUNDS = int(os.environ.get("FERROLOOP_STRESS_ROUNDS", "3"))
JOIN = 20.0
CLOSED = "Event loop is closed"


@contextlib.contextmanager
def capture_unraisable():
    caught: list[str] = []
    old = sys.unraisablehook
    sys.unraisablehook = lambda u: caught.append(f"{u.exc_type.__name__}: {u.exc_value}")
    try:
        yield caught
    finally:
        sys.unraisablehook = old


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _join_all(threads) -> None:
    deadline = time.monotonic() + JOIN
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"threads still running after {JOIN} s: {alive}"


@pytest.mark.timeout(60)
def test_threadsafe_and_executor_none_lost_while_running(loop, loop_errors):
    """Guarantee 4: 8 threads hammer call_soon_threadsafe, and executor jobs (scheduled
    from those threads through call_soon_threadsafe, and from the loop) hammer it from
    the pool's threads; every callback runs exactly once, per-thread in order."""
    ran: dict[str, list[int]] = {}
    barrier = threading.Barrier(N_THREADS)
    jobs_done = []

    def record(key, i):
        ran.setdefault(key, []).append(i)

    def job(key, n):
        for i in range(n):
            loop.call_soon_threadsafe(record, key, i)
        return key

    def schedule_job(key, n):  # runs on the loop thread
        fut = loop.run_in_executor(None, job, key, n)
        fut.add_done_callback(lambda f: jobs_done.append(f.result()))

    def producer(tid):
        barrier.wait(JOIN)
        for i in range(PER_THREAD):
            loop.call_soon_threadsafe(record, f"t{tid}", i)
            if i % 500 == 0:
                loop.call_soon_threadsafe(schedule_job, f"t{tid}-job{i}", 100)

    async def main():
        for k in range(16):
            schedule_job(f"loop-job{k}", 200)
        threads = [threading.Thread(target=producer, args=(t,)) for t in range(N_THREADS)]
        for t in threads:
            t.start()
        expected_jobs = 16 + N_THREADS * len(range(0, PER_THREAD, 500))
        deadline = loop.time() + JOIN
        while loop.time() < deadline:
            if not any(t.is_alive() for t in threads) and len(jobs_done) == expected_jobs:
                break
            await asyncio.sleep(0.005)
        _join_all(threads)
        for _ in range(3):
            await asyncio.sleep(0)
        return expected_jobs

    start = time.monotonic()
    expected_jobs = loop.run_until_complete(main())
    elapsed = time.monotonic() - start
    assert len(jobs_done) == expected_jobs
    for tid in range(N_THREADS):
        assert ran.pop(f"t{tid}") == list(range(PER_THREAD))
    for key, seq in ran.items():
        n = 200 if key.startswith("loop-job") else 100
        assert seq == list(range(n)), key
    assert len(ran) == expected_jobs
    print(f"{sum(map(len, ran.values())) + N_THREADS * PER_THREAD} callbacks in {elapsed:.2f} s")


def _close_race(impl, seed: int):
    """One round: producers hammer while the loop runs; the loop stops (at a random
    moment) and is closed while they keep calling.  Returns the measurements."""
    rng = random.Random(seed)
    loop = impl.new_event_loop()
    contexts: list[dict] = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    order = threading.Lock()
    state = {"stop_requested": False, "closed": False}
    ok: list[list[int]] = [[] for _ in range(N_THREADS)]  # calls that returned a handle
    before_stop: list[set[int]] = [set() for _ in range(N_THREADS)]
    raised_at: list[int | None] = [None] * N_THREADS
    errors: list[str] = []
    ran: list[list[int]] = [[] for _ in range(N_THREADS)]
    ran_closed: list[tuple[int, int]] = []
    after_close_ok: list[tuple[int, int]] = []
    finished_jobs: list[int] = []

    def cb(tid, i):
        if loop.is_closed():
            ran_closed.append((tid, i))
        ran[tid].append(i)

    def slow_job(i):
        time.sleep(0.001 * (i % 5))
        finished_jobs.append(i)
        return i

    def producer(tid):
        i = 0
        deadline = time.monotonic() + JOIN
        while time.monotonic() < deadline:
            closed_before = state["closed"]
            try:
                if tid % 2:  # half the threads order their calls against stop()
                    with order:
                        loop.call_soon_threadsafe(cb, tid, i)
                        if not state["stop_requested"]:
                            before_stop[tid].add(i)
                else:
                    loop.call_soon_threadsafe(cb, tid, i)
            except RuntimeError as e:
                if str(e) != CLOSED:
                    errors.append(f"thread {tid}: {e!r}")
                if raised_at[tid] is None:
                    raised_at[tid] = i
                if i > raised_at[tid] + 50:  # a few more calls on the closed loop
                    return
            except BaseException as e:  # noqa: BLE001
                errors.append(f"thread {tid}: unexpected {e!r}")
                return
            else:
                ok[tid].append(i)
                if raised_at[tid] is not None:
                    errors.append(
                        f"thread {tid}: call {i} succeeded after call {raised_at[tid]} raised"
                    )
                if closed_before:
                    after_close_ok.append((tid, i))
            i += 1
            if i % 64 == 0:
                time.sleep(0)  # let the others in
        errors.append(f"thread {tid}: never saw the loop closed")

    async def main():
        for i in range(50):
            loop.run_in_executor(None, slow_job, i)
        await asyncio.sleep(rng.uniform(0.005, 0.05))

        def request_stop():
            with order:
                state["stop_requested"] = True
                loop.call_soon(loop.stop)

        request_stop()

    threads = [
        threading.Thread(target=producer, args=(t,), name=f"producer-{t}") for t in range(N_THREADS)
    ]
    with capture_unraisable() as unraisable:
        for t in threads:
            t.start()
        task = loop.create_task(main())
        start = time.monotonic()
        loop.run_forever()
        stopped_in = time.monotonic() - start
        ran_at_stop = [len(r) for r in ran]
        time.sleep(rng.uniform(0, 0.01))  # producers keep enqueueing into the stopped loop
        task.result()
        del task
        loop.close()
        state["closed"] = True
        _join_all(threads)
        deadline = time.monotonic() + JOIN
        while len(finished_jobs) < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
    return {
        "ok": ok,
        "before_stop": before_stop,
        "raised_at": raised_at,
        "errors": errors,
        "ran": ran,
        "ran_at_stop": ran_at_stop,
        "ran_closed": ran_closed,
        "after_close_ok": after_close_ok,
        "finished_jobs": len(finished_jobs),
        "contexts": [c.get("message") for c in contexts],
        "unraisable": unraisable,
        "stopped_in": stopped_in,
    }


@pytest.mark.timeout(120)
@pytest.mark.parametrize("round_", range(ROUNDS))
def test_threadsafe_close_race(impl, round_):
    """Guarantees 1, 2, 3 and 5, with 8 threads calling while the loop stops and closes."""
    threads_before = _os_threads()
    r = _close_race(impl, seed=round_)
    assert r["errors"] == []
    assert r["unraisable"] == []
    assert r["contexts"] == [], "nothing may reach the exception handler"
    assert r["ran_closed"] == [], "a callback ran on a closed loop"
    assert r["after_close_ok"] == [], "call_soon_threadsafe succeeded after close() returned"
    assert r["ran"] and [len(x) for x in r["ran"]] == r["ran_at_stop"], (
        "callbacks ran after the loop stopped"
    )
    for tid in range(N_THREADS):
        ran, ok = r["ran"][tid], r["ok"][tid]
        assert r["raised_at"][tid] is not None, f"thread {tid} never saw the loop closed"
        assert ran == ok[: len(ran)], f"thread {tid}: callbacks ran out of order or not a prefix"
        missing = sorted(r["before_stop"][tid] - set(ran))
        assert not missing, (
            f"thread {tid}: {len(missing)} callbacks enqueued before stop() were lost"
        )
    assert r["finished_jobs"] == 50, "executor jobs running at close() must complete"
    deadline = time.monotonic() + JOIN
    while _os_threads() > threads_before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _os_threads() <= threads_before, "executor / producer threads left running"
    total = sum(map(len, r["ok"]))
    print(
        f"{impl.name}: {total} calls, {sum(map(len, r['ran']))} ran, stopped in {r['stopped_in']:.3f} s"
    )


@pytest.mark.timeout(60)
def test_close_from_other_thread_while_running(loop):
    """close() from another thread while the loop runs: always RuntimeError, the loop
    keeps running; stop() then close() from the loop's own thread works."""
    results = []
    stop = threading.Event()

    def closer():
        while not stop.is_set():
            try:
                loop.close()
            except RuntimeError as e:
                results.append(str(e))
            else:
                results.append("closed!")
                return
            time.sleep(0)

    async def main():
        t = threading.Thread(target=closer)
        t.start()
        deadline = loop.time() + JOIN
        while len(results) < 5 and loop.time() < deadline and t.is_alive():
            loop.call_soon_threadsafe(lambda: None)
            await asyncio.sleep(0)
        stop.set()
        while t.is_alive():
            await asyncio.sleep(0.001)
        return loop.is_closed()

    assert loop.run_until_complete(main()) is False
    assert results, "the other thread never got to call close()"
    assert set(results) == {"Cannot close a running event loop"}


@pytest.mark.timeout(60)
def test_run_coroutine_threadsafe_hammer(loop):
    """8 threads each submit coroutines with run_coroutine_threadsafe and wait for the
    results (which run executor jobs): every result arrives."""
    per_thread = 100
    results: list[list[int]] = [[] for _ in range(N_THREADS)]
    errors = []

    async def work(i):
        await asyncio.sleep(0)
        return await loop.run_in_executor(None, pow, i, 2)

    def client(tid):
        try:
            futs = [asyncio.run_coroutine_threadsafe(work(i), loop) for i in range(per_thread)]
            results[tid] = [f.result(JOIN) for f in futs]
        except BaseException as e:  # noqa: BLE001
            errors.append(repr(e))

    async def main():
        threads = [threading.Thread(target=client, args=(t,)) for t in range(N_THREADS)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            await asyncio.sleep(0.005)
        _join_all(threads)

    loop.run_until_complete(main())
    assert errors == []
    assert results == [[i * i for i in range(per_thread)]] * N_THREADS
