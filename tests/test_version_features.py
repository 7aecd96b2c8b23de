"""Each Python version's own asyncio features, side by side on both loops.

3.12: eager tasks (``asyncio.eager_task_factory`` and
``asyncio.create_eager_task_factory(<the loop's Task>)``), ``asyncio.run(loop_factory=)``.
3.13: ``Server.close_clients()``/``abort_clients()``, ``create_unix_server(cleanup_socket=)``,
``Queue.shutdown()``, ``as_completed`` as an async iterator. A test for a newer version is
skipped on older ones.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import sys

import pytest
from io_testutil import run

HOST = "127.0.0.1"
py312 = pytest.mark.skipif(sys.version_info < (3, 12), reason="Python 3.12+")
py313 = pytest.mark.skipif(sys.version_info < (3, 13), reason="Python 3.13+")


def _eager_factories(impl):
    return {
        "asyncio.eager_task_factory": asyncio.eager_task_factory,
        "own Task": asyncio.create_eager_task_factory(impl.task_class),
    }


@py312
@pytest.mark.parametrize("which", ["asyncio.eager_task_factory", "own Task"])
def test_eager_task_runs_first_step_in_create_task(impl, loop, which):
    order = []
    current_in_child = []

    async def child():
        current_in_child.append(asyncio.current_task())
        order.append("child starts")
        await asyncio.sleep(0)
        order.append("child ends")
        return 7

    async def finishes_at_once():
        return "done"

    async def main():
        loop.set_task_factory(_eager_factories(impl)[which])
        outer = asyncio.current_task()
        t = loop.create_task(child())
        order.append("caller resumes")
        assert asyncio.current_task() is outer
        assert current_in_child == [t]
        assert t in asyncio.all_tasks()
        result = await t
        quick = loop.create_task(finishes_at_once())
        return result, quick.done(), quick.result(), type(t)

    result, quick_done, quick_result, task_type = run(loop, main())
    assert order == ["child starts", "caller resumes", "child ends"]
    assert result == 7
    assert quick_done and quick_result == "done"
    if which == "own Task":
        assert task_type is impl.task_class


@py312
def test_eager_task_exception_and_cancel(impl, loop):
    async def boom():
        raise ValueError("eager")

    async def waits():
        await asyncio.sleep(10)

    async def main():
        loop.set_task_factory(asyncio.create_eager_task_factory(impl.task_class))
        t = loop.create_task(boom())
        assert t.done()
        with pytest.raises(ValueError, match="eager"):
            t.result()
        w = loop.create_task(waits())
        assert not w.done()
        w.cancel()
        with pytest.raises(asyncio.CancelledError):
            await w
        return True

    assert run(loop, main())


@py312
def test_eager_start_outside_a_running_loop_is_lazy(impl, loop):
    ran = []

    async def body():
        ran.append(True)

    loop.set_task_factory(asyncio.create_eager_task_factory(impl.task_class))
    t = loop.create_task(body())
    assert ran == [] and not t.done()
    loop.run_until_complete(t)
    assert ran == [True]


@py312
def test_asyncio_run_loop_factory(impl):
    async def main():
        return type(asyncio.get_running_loop())

    assert issubclass(asyncio.run(main(), loop_factory=impl.new_event_loop), impl.loop_class)


@py313
@pytest.mark.parametrize("how", ["close_clients", "abort_clients"])
def test_server_close_and_abort_clients(loop, how):
    async def main():
        lost = []
        made = asyncio.Event()

        class Proto(asyncio.Protocol):
            def connection_made(self, transport):
                made.set()

            def connection_lost(self, exc):
                lost.append(exc)

        server = await loop.create_server(Proto, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(HOST, port)
        await made.wait()
        server.close()
        getattr(server, how)()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await asyncio.wait_for(server.wait_closed(), 5)
        writer.close()
        return lost

    assert run(loop, main()) == [None]


@py313
@pytest.mark.parametrize("cleanup", [True, False])
def test_unix_server_cleanup_socket(loop, tmp_path, cleanup):
    path = str(tmp_path / "s.sock")

    async def main():
        server = await loop.create_unix_server(asyncio.Protocol, path, cleanup_socket=cleanup)
        assert os.path.exists(path)
        server.close()
        await server.wait_closed()

    run(loop, main())
    assert os.path.exists(path) == (not cleanup)


@py313
def test_unix_server_cleanup_keeps_a_replaced_path(loop, tmp_path):
    """A path replaced by another file while serving is not removed."""
    path = str(tmp_path / "s.sock")

    async def main():
        server = await loop.create_unix_server(asyncio.Protocol, path)
        os.unlink(path)
        pathlib.Path(path).write_text("not a socket")
        server.close()
        await server.wait_closed()

    run(loop, main())
    with open(path) as f:
        assert f.read() == "not a socket"


@py313
def test_queue_shutdown(loop):
    async def main():
        q = asyncio.Queue()
        q.put_nowait(1)
        getter_results = []

        async def getter():
            try:
                while True:
                    getter_results.append(await q.get())
            except asyncio.QueueShutDown:
                getter_results.append("shutdown")

        t = asyncio.create_task(getter())
        await asyncio.sleep(0.01)
        q.shutdown()
        await t
        with pytest.raises(asyncio.QueueShutDown):
            await q.put(2)
        q2 = asyncio.Queue()
        q2.put_nowait("x")
        q2.shutdown(immediate=True)
        with pytest.raises(asyncio.QueueShutDown):
            q2.get_nowait()
        return getter_results

    assert run(loop, main()) == [1, "shutdown"]


@py313
def test_as_completed_async_iterator(loop):
    async def value(v, delay):
        await asyncio.sleep(delay)
        return v

    async def main():
        aws = [value("slow", 0.05), value("fast", 0.0), value("mid", 0.02)]
        out = []
        async for fut in asyncio.as_completed(aws):
            out.append(await fut)
        tasks = [asyncio.create_task(value(i, 0.01 * i)) for i in range(3)]
        originals = []
        async for t in asyncio.as_completed(tasks):
            originals.append(t in tasks)
        return out, originals

    out, originals = run(loop, main())
    assert out == ["fast", "mid", "slow"]
    assert originals == [True, True, True]


@py313
def test_taskgroup_cancel_on_error_and_external_cancel(loop):
    async def main():
        async def fails():
            await asyncio.sleep(0)
            raise KeyError("k")

        async def long():
            await asyncio.sleep(10)

        with pytest.raises(ExceptionGroup) as info:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(long())
                tg.create_task(fails())
        return [type(e) for e in info.value.exceptions]

    assert run(loop, main()) == [KeyError]


def test_awaited_by_edges_on_native_futures(impl, loop):
    """The state 3.14's asyncio.graph reads: a task awaiting a future is in the
    future's ``_asyncio_awaited_by`` while it waits, and gone after its wake-up;
    ``futures.future_add_to_awaited_by`` reaches a native future. (Tracking is on
    from 3.14; this turns it on to run the same code on every version.)"""
    if impl.name == "ferroloop":
        from ferroloop import _graph

        _graph.enable()
    elif sys.version_info < (3, 14):
        pytest.skip("asyncio's own futures track awaits from 3.14")
    from asyncio import futures

    async def main():
        fut = loop.create_future()

        async def waiter():
            return await fut

        t = loop.create_task(waiter())
        await asyncio.sleep(0)
        during = fut._asyncio_awaited_by
        fut.set_result(3)
        await t
        after = fut._asyncio_awaited_by
        other = loop.create_future()
        if hasattr(futures, "future_add_to_awaited_by"):  # 3.14+
            add, discard = futures.future_add_to_awaited_by, futures.future_discard_from_awaited_by
        else:
            add, discard = type(other)._awaited_by_add, type(other)._awaited_by_discard
        add(other, t)
        added = other._asyncio_awaited_by
        discard(other, t)
        other.cancel()
        return during, after, added, other._asyncio_awaited_by, t

    during, after, added, removed, t = run(loop, main())
    assert during == {t}
    assert not after
    assert added == {t}
    assert not removed
