"""Async-generator hooks while the loop runs, and shutdown_asyncgens()."""

from __future__ import annotations

import asyncio
import gc
import sys
import warnings

import pytest
from ferro_testutil import run_briefly


def test_asyncgen_hooks_installed_only_while_running(loop):
    before = sys.get_asyncgen_hooks()
    seen = []
    loop.call_soon(lambda: seen.append(sys.get_asyncgen_hooks()))
    run_briefly(loop)
    inside = seen[0]
    assert inside.firstiter is not None and inside.finalizer is not None
    assert inside != before
    assert sys.get_asyncgen_hooks() == before


def test_asyncgen_hooks_restored_after_exception(loop):
    before = sys.get_asyncgen_hooks()

    def boom():
        raise KeyboardInterrupt

    loop.call_soon(boom)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert sys.get_asyncgen_hooks() == before


def test_shutdown_asyncgens_finalizes_suspended_generators(loop):
    trace = []

    async def agen(name):
        try:
            trace.append(f"{name}:start")
            yield 1
            yield 2
        finally:
            trace.append(f"{name}:finally")

    gens = []

    async def main():
        for name in ("a", "b"):
            g = agen(name)
            gens.append(g)
            assert await g.__anext__() == 1

    loop.run_until_complete(main())
    assert trace == ["a:start", "b:start"]
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert sorted(trace[2:]) == ["a:finally", "b:finally"]
    assert all(g.ag_frame is None for g in gens)


def test_shutdown_asyncgens_with_no_generators(loop):
    assert loop.run_until_complete(loop.shutdown_asyncgens()) is None


def test_shutdown_asyncgens_skips_exhausted_generators(loop):
    trace = []

    async def agen():
        try:
            yield 1
        finally:
            trace.append("finally")

    async def main():
        async for _ in agen():
            pass

    loop.run_until_complete(main())
    assert trace == ["finally"]
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert trace == ["finally"]


def test_shutdown_asyncgens_error_reaches_handler(loop, loop_errors):
    async def bad_agen():
        try:
            yield 1
        finally:
            raise ValueError("close failed")

    holder = []

    async def main():
        g = bad_agen()
        holder.append(g)
        await g.__anext__()

    loop.run_until_complete(main())
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert len(loop_errors) == 1
    ctx = loop_errors.pop()
    assert sorted(ctx) == ["asyncgen", "exception", "message"]
    assert ctx["asyncgen"] is holder[0]
    assert ctx["message"] == (
        f"an error occurred during closing of asynchronous generator {holder[0]!r}"
    )
    assert type(ctx["exception"]) is ValueError


def test_garbage_collected_asyncgen_is_closed_by_loop(loop):
    trace = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            await asyncio.sleep(0)
            trace.append("finalized")

    async def main():
        g = agen()
        await g.__anext__()
        del g
        gc.collect()
        for _ in range(5):
            await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert trace == ["finalized"]


def test_asyncgen_after_shutdown_warns(loop):
    async def agen():
        yield 1

    loop.run_until_complete(loop.shutdown_asyncgens())

    async def main():
        g = agen()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await g.__anext__()
        await g.aclose()
        return [(w.category, str(w.message)) for w in caught], repr(g)

    caught, g_repr = loop.run_until_complete(main())
    assert caught == [
        (
            ResourceWarning,
            f"asynchronous generator {g_repr} was scheduled after loop.shutdown_asyncgens() call",
        )
    ]


def test_async_for_and_async_comprehension(loop):
    async def count(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    async def main():
        return [x async for x in count(5)]

    assert loop.run_until_complete(main()) == [0, 1, 2, 3, 4]


def test_run_shuts_down_asyncgens(impl):
    trace = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            trace.append("finalized by run()")

    holder = []

    async def main():
        g = agen()
        holder.append(g)
        await g.__anext__()

    impl.run(main())
    assert trace == ["finalized by run()"]
