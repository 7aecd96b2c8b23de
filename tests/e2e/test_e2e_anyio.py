"""anyio on its asyncio backend, with the loop under test as the loop.

``anyio.run(..., backend="asyncio", backend_options={"loop_factory": factory})`` (anyio >= 4)
and anyio's pytest plugin (an ``anyio_backend`` fixture of ``("asyncio", {"loop_factory":
factory})``): task groups and exception groups, cancel scopes (deadlines, shielding),
worker threads both ways, memory object streams, TCP/TLS/Unix/UDP sockets, subprocesses,
async file I/O and the synchronisation primitives.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import tempfile
import threading

import pytest

NEED = "{} is not installed: pip install -r tests/e2e/requirements.txt (make e2e)"

anyio = pytest.importorskip("anyio", reason=NEED.format("anyio"))

from anyio.streams.tls import TLSListener, TLSStream
from e2e_util import HOST


@pytest.fixture
def anyio_run(impl, run_on):
    """``anyio_run(fn, *args)``: ``anyio.run`` on a loop of the implementation under test."""

    def run(fn, *args):
        errors: list[dict] = []

        async def checked():
            loop = asyncio.get_running_loop()
            assert isinstance(loop, impl.loop_class), f"running on {type(loop)!r}"
            loop.set_exception_handler(lambda _loop, context: errors.append(context))
            with anyio.fail_after(60):
                return await fn(*args)

        result = anyio.run(
            checked, backend="asyncio", backend_options={"loop_factory": impl.new_event_loop}
        )
        assert not errors, f"the loop's exception handler was called: {errors!r}"
        return result

    return run


def test_task_groups_and_exception_groups(anyio_run) -> None:
    async def main() -> None:
        results: list[int] = []

        async def worker(i: int) -> None:
            await anyio.sleep(0.001 * (i % 5))
            results.append(i)

        async with anyio.create_task_group() as tg:
            for i in range(500):
                tg.start_soon(worker, i)
        assert sorted(results) == list(range(500))

        async def fails(delay: float, exc: Exception) -> None:
            await anyio.sleep(delay)
            raise exc

        sibling_cancelled = anyio.Event()

        async def long_sibling() -> None:
            try:
                await anyio.sleep(30)
            except anyio.get_cancelled_exc_class():
                sibling_cancelled.set()
                raise

        with pytest.raises(ExceptionGroup) as info:
            async with anyio.create_task_group() as tg:
                tg.start_soon(long_sibling)
                tg.start_soon(fails, 0.01, ValueError("one"))
                tg.start_soon(fails, 0.01, KeyError("two"))
        assert sibling_cancelled.is_set()
        assert {type(e) for e in info.value.exceptions} <= {ValueError, KeyError}

        # tg.start(): wait for a task to report that it is ready.
        async def server(*, task_status=anyio.TASK_STATUS_IGNORED) -> None:
            await anyio.sleep(0.01)
            task_status.started("ready")
            await anyio.sleep(30)

        async with anyio.create_task_group() as tg:
            assert await tg.start(server) == "ready"
            tg.cancel_scope.cancel()

    anyio_run(main)


def test_cancel_scopes(anyio_run) -> None:
    async def main() -> None:
        clock = anyio.current_time
        start = clock()
        with anyio.move_on_after(0.05) as scope:
            await anyio.sleep(10)
        assert scope.cancelled_caught
        assert 0.04 <= clock() - start < 2

        with pytest.raises(TimeoutError), anyio.fail_after(0.05):
            await anyio.sleep(10)

        # A shielded scope finishes its work inside a cancelled one.
        finished = []
        with anyio.move_on_after(0.02):
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.1)
                finished.append("shielded")
            await anyio.sleep(0)  # the next checkpoint delivers the pending cancellation
            finished.append("not reached")
        assert finished == ["shielded"]

        # Cancelling a scope from another task; nested deadlines.
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()

            async def victim() -> None:
                with scope:
                    await anyio.sleep(30)
                finished.append("victim out")

            tg.start_soon(victim)
            await anyio.sleep(0.01)
            scope.cancel()
        assert finished[-1] == "victim out"
        with anyio.move_on_after(5) as outer, anyio.move_on_after(0.02) as inner:
            await anyio.sleep(10)
        assert inner.cancelled_caught and not outer.cancelled_caught

    anyio_run(main)


def test_threads(anyio_run) -> None:
    async def main() -> None:
        main_thread = threading.get_ident()

        def blocking(x: int) -> tuple[int, int]:
            # Call back into the event loop from the worker thread.
            doubled = anyio.from_thread.run(async_double, x)
            return doubled, threading.get_ident()

        async def async_double(x: int) -> int:
            await anyio.sleep(0)
            return 2 * x

        results = []
        limiter = anyio.CapacityLimiter(4)

        async def one(i: int) -> None:
            results.append(await anyio.to_thread.run_sync(blocking, i, limiter=limiter))

        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(one, i)
        assert sorted(r[0] for r in results) == [2 * i for i in range(100)]
        assert all(r[1] != main_thread for r in results)

        # A cancellable thread call is abandoned at the deadline.
        event = threading.Event()
        with anyio.move_on_after(0.05):
            await anyio.to_thread.run_sync(event.wait, 5, abandon_on_cancel=True)
        event.set()

        # A blocking portal: a foreign thread drives coroutines in this loop.
        def from_foreign_thread(token_loop_check) -> str:
            return anyio.from_thread.run(token_loop_check)

        async def which_loop() -> str:
            return type(asyncio.get_running_loop()).__name__

        name = await anyio.to_thread.run_sync(from_foreign_thread, which_loop)
        assert name == type(asyncio.get_running_loop()).__name__

    anyio_run(main)


def test_memory_object_streams(anyio_run) -> None:
    async def main() -> None:
        send, receive = anyio.create_memory_object_stream[int](max_buffer_size=10)
        got: list[int] = []

        async def producer() -> None:
            async with send:
                for i in range(5000):
                    await send.send(i)

        async def consumer(rx) -> None:
            async with rx:
                async for item in rx:
                    got.append(item)

        async with anyio.create_task_group() as tg:
            tg.start_soon(producer)
            tg.start_soon(consumer, receive.clone())
            tg.start_soon(consumer, receive.clone())
            receive.close()
        assert sorted(got) == list(range(5000))

    anyio_run(main)


def test_tcp_and_tls_streams(anyio_run) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert(HOST)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def main() -> None:
        async def echo(stream) -> None:
            async with stream:
                async for data in stream:
                    await stream.send(data)

        for use_tls in (False, True):
            listener = await anyio.create_tcp_listener(local_host=HOST, local_port=0)
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            if use_tls:
                listener = TLSListener(listener, server_ctx, standard_compatible=False)
            async with anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, echo)
                stream = await anyio.connect_tcp(HOST, port)
                if use_tls:
                    stream = await TLSStream.wrap(
                        stream, hostname=HOST, ssl_context=client_ctx, standard_compatible=False
                    )
                async with stream:
                    for i in range(500):
                        await stream.send(f"ping {i}".encode())
                        assert await stream.receive() == f"ping {i}".encode()
                    big = os.urandom(1 << 20)
                    await stream.send(big)
                    got = b""
                    while len(got) < len(big):
                        got += await stream.receive()
                    assert got == big
                tg.cancel_scope.cancel()
            await listener.aclose()

    anyio_run(main)


def test_unix_and_udp_sockets(anyio_run) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="ferroloop-e2e-") as tmp:
            path = os.path.join(tmp, "anyio.sock")
            listener = await anyio.create_unix_listener(path)

            async def handler(stream) -> None:
                async with stream:
                    await stream.send((await stream.receive()).upper())

            async with anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, handler)
                async with await anyio.connect_unix(path) as stream:
                    await stream.send(b"unix")
                    assert await stream.receive() == b"UNIX"
                tg.cancel_scope.cancel()
            await listener.aclose()

        async with await anyio.create_udp_socket(local_host=HOST) as server:
            port = server.extra(anyio.abc.SocketAttribute.local_port)
            async with await anyio.create_connected_udp_socket(HOST, port) as client:
                for i in range(100):
                    await client.send(f"dgram {i}".encode())
                    data, addr = await server.receive()
                    assert data == f"dgram {i}".encode()
                    await server.sendto(data.upper(), *addr)
                    assert await client.receive() == f"DGRAM {i}".encode()

    anyio_run(main)


def test_subprocesses(anyio_run) -> None:
    async def main() -> None:
        result = await anyio.run_process([sys.executable, "-c", "print('hello from child')"])
        assert result.returncode == 0
        assert result.stdout.decode().strip() == "hello from child"

        code = (
            "import sys\nfor line in sys.stdin: sys.stdout.write(line.upper()); sys.stdout.flush()"
        )
        async with await anyio.open_process([sys.executable, "-c", code]) as proc:
            for i in range(20):
                await proc.stdin.send(f"line {i}\n".encode())
                assert (await proc.stdout.receive()).decode() == f"LINE {i}\n"
            await proc.stdin.aclose()
            assert await proc.wait() == 0

        # Cancelling run_process kills the child.
        start = anyio.current_time()
        with anyio.move_on_after(0.2) as scope:
            await anyio.run_process([sys.executable, "-c", "import time; time.sleep(10)"])
        assert scope.cancelled_caught
        assert anyio.current_time() - start < 5

    anyio_run(main)


def test_files_and_primitives(anyio_run) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="ferroloop-e2e-") as tmp:
            path = anyio.Path(tmp) / "data.txt"
            await path.write_text("one\ntwo\n")
            async with await anyio.open_file(path, "a") as fh:
                await fh.write("three\n")
            assert (await path.read_text()).splitlines() == ["one", "two", "three"]
            assert [p.name async for p in anyio.Path(tmp).iterdir()] == ["data.txt"]

        lock = anyio.Lock()
        semaphore = anyio.Semaphore(3)
        condition = anyio.Condition()
        inside = 0
        peak = 0
        counter = 0

        async def worker() -> None:
            nonlocal inside, peak, counter
            async with semaphore:
                inside += 1
                peak = max(peak, inside)
                await anyio.sleep(0.001)
                inside -= 1
            async with lock:
                value = counter
                await anyio.sleep(0)
                counter = value + 1
            async with condition:
                condition.notify_all()

        async with anyio.create_task_group() as tg:
            for _ in range(60):
                tg.start_soon(worker)
        assert peak <= 3
        assert counter == 60

    anyio_run(main)


# --------------------------------------------------------------------------- pytest plugin


@pytest.fixture
def anyio_backend(impl):
    """anyio's pytest plugin: run the ``anyio``-marked tests on the loop under test."""
    return ("asyncio", {"loop_factory": impl.new_event_loop})


@pytest.fixture
async def tcp_echo_port():
    """An async fixture run by anyio's plugin in the same loop as the test."""
    listener = await anyio.create_tcp_listener(local_host=HOST, local_port=0)

    async def echo(stream) -> None:
        async with stream:
            async for data in stream:
                await stream.send(data)

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()
    await listener.aclose()


@pytest.mark.anyio
async def test_plugin_runs_on_the_loop(impl, tcp_echo_port) -> None:
    assert isinstance(asyncio.get_running_loop(), impl.loop_class)
    async with await anyio.connect_tcp(HOST, tcp_echo_port) as stream:
        await stream.send(b"plugin")
        assert await stream.receive() == b"plugin"
    with anyio.fail_after(5):
        await anyio.to_thread.run_sync(lambda: None)


def test_blocking_portal_in_a_thread(impl) -> None:
    """``start_blocking_portal``: the loop runs in a new thread, driven from this one."""

    async def where() -> tuple[str, bool]:
        await anyio.sleep(0.001)
        loop = asyncio.get_running_loop()
        return type(loop).__name__, threading.current_thread() is threading.main_thread()

    async def later(i: int) -> int:
        await anyio.sleep(0.01)
        return i

    async def numbers(n: int) -> list[int]:
        async def gen():
            for i in range(n):
                await anyio.sleep(0)
                yield i

        return [i async for i in gen()]

    options = {"loop_factory": impl.new_event_loop}
    with anyio.from_thread.start_blocking_portal("asyncio", options) as portal:
        assert portal.call(where) == (impl.loop_class.__name__, False)
        futures = [portal.start_task_soon(later, i) for i in range(50)]
        assert [f.result(timeout=10) for f in futures] == list(range(50))
        assert portal.call(numbers, 20) == list(range(20))
