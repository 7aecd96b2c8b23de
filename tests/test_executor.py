"""run_in_executor (default and user executors), set_default_executor, shutdown_default_executor."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import pytest


def _work(x, y=0):
    return x + y, threading.get_ident()


def test_run_in_executor_default(loop):
    async def main():
        fut = loop.run_in_executor(None, _work, 2, 3)
        assert asyncio.isfuture(fut)
        assert fut.get_loop() is loop
        return await fut

    value, tid = loop.run_until_complete(main())
    assert value == 5
    assert tid != threading.get_ident()


def test_default_executor_thread_names(loop):
    async def main():
        return await loop.run_in_executor(None, lambda: threading.current_thread().name)

    assert loop.run_until_complete(main()).startswith("asyncio_")


def test_run_in_executor_user_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="userpool") as ex:

        async def main():
            names = await asyncio.gather(
                *(
                    loop.run_in_executor(ex, lambda: threading.current_thread().name)
                    for _ in range(4)
                )
            )
            return names

        names = loop.run_until_complete(main())
    assert all(n.startswith("userpool") for n in names)


def test_set_default_executor(loop):
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mydefault")
    loop.set_default_executor(ex)
    try:

        async def main():
            return await loop.run_in_executor(None, lambda: threading.current_thread().name)

        assert loop.run_until_complete(main()).startswith("mydefault")
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
    assert ex._shutdown


def test_set_default_executor_rejects_process_pool_type(loop):
    with pytest.raises(TypeError) as info:
        loop.set_default_executor(concurrent.futures.Executor())
    assert str(info.value) == "executor must be ThreadPoolExecutor instance"


def test_run_in_executor_exception(loop):
    def fail():
        raise LookupError("in thread")

    async def main():
        with pytest.raises(LookupError, match="in thread"):
            await loop.run_in_executor(None, fail)
        return "ok"

    assert loop.run_until_complete(main()) == "ok"


def test_run_in_executor_cancel(loop):
    started = threading.Event()
    release = threading.Event()

    def blocker():
        started.set()
        release.wait(30)
        return "finished"

    async def main():
        fut = loop.run_in_executor(None, blocker)
        while not started.is_set():
            await asyncio.sleep(0.001)
        fut.cancel()
        try:
            await fut
        except asyncio.CancelledError:
            pass
        release.set()
        return fut.cancelled()

    assert loop.run_until_complete(main()) is True


def test_shutdown_default_executor(loop):
    async def main():
        await loop.run_in_executor(None, time.sleep, 0.001)
        await loop.shutdown_default_executor()

    loop.run_until_complete(main())
    with pytest.raises(RuntimeError) as info:
        loop.run_in_executor(None, print)
    assert str(info.value) == "Executor shutdown has been called"


def test_shutdown_default_executor_without_executor(loop):
    assert loop.run_until_complete(loop.shutdown_default_executor()) is None
    with pytest.raises(RuntimeError) as info:
        loop.run_in_executor(None, print)
    assert str(info.value) == "Executor shutdown has been called"


def test_shutdown_default_executor_waits_for_work(loop):
    done = []

    def slowish():
        time.sleep(0.05)
        done.append(True)

    async def main():
        loop.run_in_executor(None, slowish)
        await loop.shutdown_default_executor()
        return list(done)

    assert loop.run_until_complete(main()) == [True]


def test_user_executor_still_allowed_after_default_shutdown(loop):
    loop.run_until_complete(loop.shutdown_default_executor())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ex:

        async def main():
            return await loop.run_in_executor(ex, _work, 1)

        assert loop.run_until_complete(main())[0] == 1


def test_close_shuts_down_default_executor(loop):
    async def main():
        return await loop.run_in_executor(None, _work, 1)

    loop.run_until_complete(main())
    loop.close()
    with pytest.raises(RuntimeError):
        loop.run_in_executor(None, print)


def test_to_thread(loop):
    async def main():
        return await asyncio.to_thread(_work, 10, y=5)

    value, tid = loop.run_until_complete(main())
    assert value == 15 and tid != threading.get_ident()


@pytest.mark.parametrize("executor", ["default", "to_thread", "user"])
def test_round_trips_while_the_loop_is_never_idle(loop, executor):
    """Pool calls complete while ready work never runs out (the loop gives the GIL away).

    A busy loop skips its poll; the GIL must still reach the pool's threads (native
    workers and Python threads alike), or every round trip waits for the switch interval.
    """
    spins = 0
    busy = True

    def spin():
        nonlocal spins
        spins += 1
        if busy:
            loop.call_soon(spin)

    async def main(pool):
        nonlocal busy
        loop.call_soon(spin)
        results = []
        for i in range(50):
            if executor == "to_thread":
                results.append(await asyncio.to_thread(_work, i))
            else:
                results.append(await loop.run_in_executor(pool, _work, i))
        busy = False
        return results

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as user_pool:
        pool = user_pool if executor == "user" else None
        results = loop.run_until_complete(asyncio.wait_for(main(pool), 30))
    assert [value for value, _ in results] == list(range(50))
    assert all(tid != threading.get_ident() for _, tid in results)
    assert spins > 0  # the chain really ran alongside


def test_many_executor_jobs(loop):
    async def main():
        return await asyncio.gather(*(loop.run_in_executor(None, _work, i) for i in range(200)))

    results = loop.run_until_complete(main())
    assert [r[0] for r in results] == list(range(200))


def test_run_in_executor_with_process_style_executor_interface(loop):
    """Any concurrent.futures.Executor works when passed explicitly."""

    class InlineExecutor(concurrent.futures.Executor):
        def submit(self, fn, *args, **kwargs):
            f = concurrent.futures.Future()
            f.set_result(fn(*args, **kwargs))
            return f

    async def main():
        return await loop.run_in_executor(InlineExecutor(), _work, 7)

    value, tid = loop.run_until_complete(main())
    assert value == 7 and tid == threading.get_ident()
