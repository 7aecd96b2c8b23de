"""Rust futures and Python coroutines bridged by pyo3-async-runtimes (tokio), on the loop under test.

``ferroloop_rust_bridge`` (``tests/rust_bridge``, built and installed by ``make e2e`` /
``make test-one``; by hand: ``make bridge``) is a small extension on pyo3-async-runtimes, the
layer under Rust-backed async libraries (psqlpy, ...). It uses the loop the way they do:
``asyncio.get_running_loop``, ``loop.create_future``, ``contextvars.copy_context``, and
``loop.call_soon_threadsafe(..., context=...)`` from tokio threads. Covered: Rust futures
awaited by coroutines, coroutines awaited by Rust, cancellation both ways, contextvars,
errors both ways, and 10,000 concurrent round trips without a leak.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import sys
import tracemalloc

import pytest
from e2e_util import STRICT

try:
    import ferroloop_rust_bridge as bridge
except ImportError as exc:  # pragma: no cover - depends on the set-up
    reason = (
        f"ferroloop_rust_bridge is not installed ({exc}): build and install it with `make bridge`"
    )
    if STRICT:
        pytest.fail(f"{reason} (FERROLOOP_E2E_STRICT is set)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)

request_id = contextvars.ContextVar("request_id", default="unset")


async def until(predicate, timeout: float = 5.0) -> None:
    """Wait (yielding to the loop) until ``predicate()`` is true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


def test_rust_futures_awaited_by_coroutines(impl, run_on) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        token = object()
        assert await bridge.ready(token) is token
        assert await bridge.from_thread("thread") == "thread"
        started = loop.time()
        assert await bridge.sleep(30, b"\x00\xff") == b"\x00\xff"
        assert loop.time() - started >= 0.025
        assert await bridge.sum_of_squares(1000) == sum(i * i for i in range(1000))
        # The Rust task sees this loop in its task locals, from a tokio thread.
        assert await bridge.current_loop() is loop
        # They are asyncio futures of this loop: tasks, gather, wait_for, shield take them.
        fut = bridge.sleep(1, 7)
        assert asyncio.isfuture(fut) and fut.get_loop() is loop
        assert await asyncio.wait_for(fut, 5) == 7
        got = await asyncio.gather(bridge.ready(1), bridge.sleep(5, 2), bridge.from_thread(3))
        assert got == [1, 2, 3]
        assert await asyncio.shield(bridge.sleep(5, "shielded")) == "shielded"
        assert await asyncio.ensure_future(bridge.ready("as is")) == "as is"

    run_on(main)


def test_coroutines_awaited_by_rust(impl, run_on) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen = {}

        async def callback(a: int, b: int) -> int:
            seen["loop"] = asyncio.get_running_loop()
            seen["task"] = asyncio.current_task()
            await asyncio.sleep(0)
            # A Python coroutine awaited by Rust can await Rust futures in turn.
            return await bridge.sleep(1, a * b)

        assert await bridge.call_async(callback, 6, 7) == 42
        assert seen["loop"] is loop
        assert seen["task"] is not None and seen["task"] is not asyncio.current_task()
        # Nested: Rust awaits Python that awaits Rust that awaits Python.
        assert await bridge.call_async(bridge.call_async, callback, 2, 3) == 6

    run_on(main)


def test_rust_drives_the_loop(impl) -> None:
    """A Rust program's way: ``run_until_complete`` on a loop it was given (no Runner)."""
    loop = impl.new_event_loop()
    errors: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    seen = {}

    async def callback(x: int) -> int:
        seen["loop"] = asyncio.get_running_loop()
        return await bridge.sleep(1, x + 1)

    try:
        assert bridge.block_on(loop, callback, 41) == 42
        assert seen["loop"] is loop
        # Again on the same loop, then an error from the coroutine.
        assert bridge.block_on(loop, callback, 1) == 2

        async def fails(x: int) -> None:
            raise LookupError(x)

        with pytest.raises(LookupError, match="^7$"):
            bridge.block_on(loop, fails, 7)
        assert not loop.is_running()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    assert errors == []


def test_cancel_python_awaitable_drops_rust_future(impl, run_on) -> None:
    async def main() -> None:
        tracker = bridge.Tracker()
        task = asyncio.ensure_future(bridge.tracked_sleep(tracker, 60_000))
        await until(lambda: tracker.started == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: tracker.dropped == 1)  # the tokio future was dropped
        # wait_for cancels the Rust future on timeout, too.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(bridge.tracked_sleep(tracker, 60_000), 0.05)
        await until(lambda: tracker.dropped == 2)
        # A future that is left alone runs to its end.
        await bridge.tracked_sleep(tracker, 1)
        assert (tracker.started, tracker.completed, tracker.dropped) == (3, 1, 2)
        # Cancelling many at once.
        tasks = [asyncio.ensure_future(bridge.tracked_sleep(tracker, 60_000)) for _ in range(100)]
        await until(lambda: tracker.started == 103)
        for t in tasks:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        await until(lambda: tracker.dropped == 102)
        assert tracker.completed == 1

        # Cancelled while Rust completes them: no InvalidStateError reaches the loop (run_on
        # fails the test on anything passed to the exception handler).
        futs = [(bridge.ready if i % 2 else bridge.from_thread)(i) for i in range(2000)]
        for fut in futs[::3]:
            fut.cancel()
        results = await asyncio.gather(*futs, return_exceptions=True)
        for i, result in enumerate(results):
            if i % 3 == 0:
                assert isinstance(result, asyncio.CancelledError)
            else:
                assert result == i
        await bridge.sleep(5, None)  # the completions of the cancelled ones have run by now

    run_on(main)


def test_debug_mode(impl, run_on) -> None:
    """The same bridge in the loop's debug mode (thread checks, source tracebacks)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert loop.get_debug()

        async def twice(x: int) -> int:
            return 2 * await bridge.from_thread(x)

        assert await bridge.call_async(twice, 21) == 42
        assert await asyncio.gather(*(bridge.ready(i) for i in range(500))) == list(range(500))
        tracker = bridge.Tracker()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(bridge.tracked_sleep(tracker, 60_000), 0.01)
        await until(lambda: tracker.dropped == 1)

    run_on(main, debug=True)


def test_rust_aborts_python_coroutine(impl, run_on) -> None:
    async def main() -> None:
        events: list[str] = []
        release = asyncio.Event()

        async def slow() -> str:
            try:
                await release.wait()
            except asyncio.CancelledError:
                events.append("cancelled")
                raise
            events.append("finished")
            return "done"

        # Rust aborts its tokio task; the drop guard cancels the Python task on its loop.
        assert await bridge.abort_after(slow, 20, True) == ("aborted", None)
        await until(lambda: events == ["cancelled"])

        # pyo3-async-runtimes alone: dropping the future of into_future leaves the coroutine
        # running (it is not cancelled), on every loop.
        events.clear()
        assert await bridge.abort_after(slow, 20, False) == ("aborted", None)
        await asyncio.sleep(0.01)
        assert events == []
        release.set()
        await until(lambda: events == ["finished"])

        # Finished before the deadline: Rust gets the result, nothing is cancelled.
        events.clear()
        assert await bridge.abort_after(slow, 5_000, True) == ("completed", "done")
        assert events == ["finished"]

    run_on(main)


def test_contextvars(impl, run_on) -> None:
    async def main() -> None:
        async def read_var(tag: str) -> tuple[str, str]:
            value = request_id.get()
            request_id.set(f"changed-by-{tag}")  # a copy: never seen by the caller
            await asyncio.sleep(0)
            return tag, value

        # future_into_py copies the caller's context; into_future runs the callback's
        # coroutine in that copy (TaskLocals carry it), so it sees what the caller had set.
        request_id.set("outer")
        assert await bridge.call_async(read_var, "a") == ("a", "outer")
        assert request_id.get() == "outer"

        async def request(i: int) -> tuple[str, str]:
            request_id.set(f"req-{i}")
            await asyncio.sleep(0)
            got = await bridge.call_async(read_var, str(i))
            assert request_id.get() == f"req-{i}"
            return got

        got = await asyncio.gather(*(request(i) for i in range(200)))
        assert got == [(str(i), f"req-{i}") for i in range(200)]

        # A context run by hand (contextvars.Context.run) is the one captured.
        ctx = contextvars.copy_context()
        ctx.run(request_id.set, "in-ctx")
        fut = ctx.run(bridge.call_async, read_var, "ctx")
        assert await fut == ("ctx", "in-ctx")
        assert ctx[request_id] == "in-ctx" and request_id.get() == "outer"

    run_on(main)


def test_errors_cross_both_ways(impl, run_on) -> None:
    async def main() -> None:
        with pytest.raises(bridge.BridgeError, match=r"^disk on fire: \u00e9$"):
            await bridge.fail("disk on fire: \u00e9")
        with pytest.raises(bridge.RustPanic, match="^rust future panicked"):
            await bridge.panic("oh no")

        original = KeyError("missing-key")

        async def raises() -> None:
            await asyncio.sleep(0)
            raise original

        with pytest.raises(KeyError) as info:
            await bridge.call_async(raises)
        assert info.value is original  # the same exception object came back through Rust

        class Custom(Exception):
            pass

        async def raises_custom(n: int) -> None:
            raise Custom(f"custom {n}")

        with pytest.raises(Custom, match="^custom 3$"):
            await bridge.call_async(raises_custom, 3)
        # The loop is still fine after all of that.
        assert await bridge.ready("ok") == "ok"

    run_on(main)


def test_10000_round_trips_no_leak(impl, run_on) -> None:
    n = 10_000
    value = object()  # a closure cell: no frame holds extra references to it

    async def echo(value):
        return value

    async def round_trip() -> None:
        # Half Rust futures completed at once, half Rust -> Python -> Rust round trips.
        got = await asyncio.gather(
            *(bridge.ready(value) if i % 2 else bridge.call_async(echo, value) for i in range(n))
        )
        assert len(got) == n and all(g is value for g in got)

    async def settle(refs: int) -> None:
        # pyo3 applies the decrefs of references dropped on tokio threads (without the GIL)
        # at its next attach: any Rust future completing does one.
        deadline = asyncio.get_running_loop().time() + 5
        while sys.getrefcount(value) != refs:
            assert asyncio.get_running_loop().time() < deadline, (
                f"Rust futures kept {sys.getrefcount(value) - refs} references"
            )
            await bridge.sleep(1, None)
        gc.collect()

    async def fill_free_lists() -> None:
        # ferroloop keeps freed objects for reuse: up to 16 Ki handles (as many as its
        # call_soon_threadsafe backlog holds, THREADSAFE_BACKLOG_LIMIT in
        # src/event_loop.rs) and 2,048 timer handles, futures and tasks. A round trip's
        # peak (up to 10,000 handles queued by tokio threads) may leave a list short of
        # that, and a later, higher peak would then grow it inside the measurement, as
        # traced memory that is no leak. Fill them all first.
        loop = asyncio.get_running_loop()
        many = range(3000)
        futures = [loop.create_future() for _ in many]
        handles = [loop.call_soon(int) for _ in range(20_000)]
        handles += [loop.call_later(3600, int) for _ in many]
        for handle in handles:
            handle.cancel()
        await asyncio.gather(*(echo(None) for _ in many))
        del futures, handles
        await asyncio.sleep(0)
        gc.collect()

    async def main() -> tuple[int, int]:
        refs = sys.getrefcount(value)
        tasks = len(asyncio.all_tasks())
        # A first run fills caches, free lists and tables that keep their size (asyncio's
        # WeakSet of tasks): the two runs after it are measured.
        await round_trip()
        await settle(refs)
        await fill_free_lists()
        assert len(asyncio.all_tasks()) == tasks
        tracemalloc.start()
        try:
            await round_trip()
            await settle(refs)
            objects = len(gc.get_objects())
            first, _ = tracemalloc.get_traced_memory()
            await round_trip()
            await settle(refs)
            second, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(asyncio.all_tasks()) == tasks
        assert len(gc.get_objects()) - objects < 200
        return first, second

    first, second = run_on(main, timeout=120)
    # A leak of one small object per round trip would be 10,000 of them: >= 160 KiB.
    assert second - first < 64 * 1024, f"a second run grew traced memory by {second - first} B"
