"""grpcio's asyncio API (``grpc.aio``): a server and a client in one process on 127.0.0.1.

No generated code: the service is made of generic handlers on raw ``bytes`` (no serializers),
called through ``channel.unary_unary("/svc/Method")`` and friends.  Covers the four call
shapes (unary-unary, unary-stream, stream-unary, stream-stream), status codes from the
handler, metadata, deadlines (``DEADLINE_EXCEEDED`` on a slow handler, which sees its own
cancellation), a client that cancels a streaming call (the server handler observes the
cancellation), 1,000 concurrent unary calls, a TLS channel with gzip, a graceful
``stop(grace)`` with a call in flight, and plain (sync) handlers run in the server's
``migration_thread_pool`` -- on the loop under test.

grpc.aio polls gRPC core's completion queue in a thread of its own and wakes the loop through
a Unix socket pair whose read end it registers with ``loop.add_reader`` (once per loop).  Each
test makes a new server and channel in its own loop, so the parametrised tests also check that
grpc.aio runs on asyncio and on ferroloop in turn in one process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import pytest

NEED = "{} is not installed: pip install -r tests/e2e/requirements.txt (make e2e)"

grpc = pytest.importorskip("grpc", reason=NEED.format("grpcio"))
grpc_aio = pytest.importorskip("grpc.aio", reason="needs grpcio with the asyncio API")

HOST = "127.0.0.1"


class Service:
    """The handlers of the ``svc`` service, and what the server saw."""

    def __init__(self) -> None:
        self.cancelled: asyncio.Event = asyncio.Event()
        self.slow_cancelled: asyncio.Event = asyncio.Event()
        self.stream_sent = 0

    async def echo(self, request: bytes, context) -> bytes:
        meta = dict(context.invocation_metadata() or ())
        if "x-tag" in meta:
            await context.send_initial_metadata((("x-seen", meta["x-tag"]),))
            context.set_trailing_metadata((("x-trailer", "done"),))
        return request

    async def fail(self, request: bytes, context) -> bytes:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"no such thing: {request.decode()}")
        raise AssertionError("abort() returned")

    async def slow(self, request: bytes, context) -> bytes:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.slow_cancelled.set()
            raise
        return request

    async def nap(self, request: bytes, context) -> bytes:
        """Answers after ``request`` seconds."""
        await asyncio.sleep(float(request))
        return b"rested " + request

    async def split(self, request: bytes, context):
        """unary-stream: ``b"N:PAYLOAD"`` -> N messages ``i:PAYLOAD``."""
        count, payload = request.split(b":", 1)
        for i in range(int(count)):
            yield b"%d:" % i + payload

    async def endless(self, request: bytes, context):
        """unary-stream that never ends by itself: the client cancels it."""
        try:
            i = 0
            while True:
                yield b"tick %d" % i
                self.stream_sent += 1
                i += 1
                await asyncio.sleep(0.001)
        except (asyncio.CancelledError, GeneratorExit):
            # grpc cancels the task that drives this generator: the CancelledError
            # arrives here if the task was awaiting inside the generator (its sleep),
            # but if it was awaiting grpc's write of the last message, the generator
            # only sees GeneratorExit when it is closed. Either way it was stopped.
            self.cancelled.set()
            raise

    async def join(self, request_iterator, context) -> bytes:
        """stream-unary: the requests concatenated, with their count."""
        parts = [part async for part in request_iterator]
        return b"%d|" % len(parts) + b"".join(parts)

    async def chat(self, request_iterator, context):
        """stream-stream: each request upper-cased, as it comes."""
        async for part in request_iterator:
            yield part.upper()

    def handler(self):
        return grpc.method_handlers_generic_handler(
            "svc",
            {
                "Echo": grpc.unary_unary_rpc_method_handler(self.echo),
                "Fail": grpc.unary_unary_rpc_method_handler(self.fail),
                "Slow": grpc.unary_unary_rpc_method_handler(self.slow),
                "Nap": grpc.unary_unary_rpc_method_handler(self.nap),
                "Split": grpc.unary_stream_rpc_method_handler(self.split),
                "Endless": grpc.unary_stream_rpc_method_handler(self.endless),
                "Join": grpc.stream_unary_rpc_method_handler(self.join),
                "Chat": grpc.stream_stream_rpc_method_handler(self.chat),
            },
        )


async def serve() -> tuple[grpc_aio.Server, int, Service]:
    service = Service()
    server = grpc_aio.server()
    server.add_generic_rpc_handlers((service.handler(),))
    port = server.add_insecure_port(f"{HOST}:0")
    assert port > 0
    await server.start()
    return server, port, service


def run_grpc(run_on, body) -> None:
    """Run ``body(channel, service)`` against a fresh server and channel on the loop under test."""

    async def main() -> None:
        server, port, service = await serve()
        try:
            async with grpc_aio.insecure_channel(f"{HOST}:{port}") as channel:
                await asyncio.wait_for(channel.channel_ready(), 10)
                await body(channel, service)
        finally:
            await server.stop(None)

    run_on(main)


def test_unary_unary(impl, run_on) -> None:
    async def body(channel, service) -> None:
        echo = channel.unary_unary("/svc/Echo")
        assert await echo(b"hello", timeout=10) == b"hello"
        big = bytes(range(256)) * 4096  # 1 MiB, under grpc's 4 MiB default limit
        assert await echo(big, timeout=10) == big
        assert await echo(b"", timeout=10) == b""

        # Metadata both ways: initial and trailing.
        call = echo(b"tagged", metadata=(("x-tag", impl.name),), timeout=10)
        assert await call == b"tagged"
        assert ("x-seen", impl.name) in tuple(await call.initial_metadata())
        assert ("x-trailer", "done") in tuple(await call.trailing_metadata())
        assert await call.code() == grpc.StatusCode.OK

        # A status from the handler.
        with pytest.raises(grpc_aio.AioRpcError) as info:
            await channel.unary_unary("/svc/Fail")(b"widget", timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert info.value.details() == "no such thing: widget"

        # An unknown method.
        with pytest.raises(grpc_aio.AioRpcError) as info:
            await channel.unary_unary("/svc/Nope")(b"", timeout=10)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED

    run_grpc(run_on, body)


def test_streams(impl, run_on) -> None:
    async def body(channel, service) -> None:
        # unary-stream
        split = channel.unary_stream("/svc/Split")
        got = [msg async for msg in split(b"500:abc", timeout=10)]
        assert got == [b"%d:abc" % i for i in range(500)]
        call = split(b"3:x", timeout=10)
        assert await call.read() == b"0:x"
        assert await call.read() == b"1:x"
        assert await call.read() == b"2:x"
        assert await call.read() is grpc_aio.EOF
        assert await call.code() == grpc.StatusCode.OK

        # stream-unary, from an async iterator
        async def parts():
            for i in range(300):
                yield b"<%d>" % i

        join = channel.stream_unary("/svc/Join")
        want = b"300|" + b"".join(b"<%d>" % i for i in range(300))
        assert await join(parts(), timeout=10) == want
        # ... and written by hand
        call = join(timeout=10)
        for chunk in (b"a" * 70000, b"b", b"c" * 3):
            await call.write(chunk)
        await call.done_writing()
        assert await call == b"3|" + b"a" * 70000 + b"b" + b"ccc"

        # stream-stream, interleaved: every write is answered before the next one.
        chat = channel.stream_stream("/svc/Chat")
        call = chat(timeout=10)
        for i in range(200):
            await call.write(b"line %d" % i)
            assert await call.read() == b"LINE %d" % i
        await call.done_writing()
        assert await call.read() is grpc_aio.EOF
        assert await call.code() == grpc.StatusCode.OK

        # stream-stream, many calls side by side from an async iterator each.
        async def one_chat(n: int) -> list[bytes]:
            async def words():
                for i in range(50):
                    yield b"c%d-w%d" % (n, i)

            return [msg async for msg in chat(words(), timeout=10)]

        results = await asyncio.gather(*(one_chat(n) for n in range(20)))
        for n, got in enumerate(results):
            assert got == [b"C%d-W%d" % (n, i) for i in range(50)]

    run_grpc(run_on, body)


def test_deadline_exceeded(impl, run_on) -> None:
    async def body(channel, service) -> None:
        loop = asyncio.get_running_loop()
        slow = channel.unary_unary("/svc/Slow")
        start = loop.time()
        with pytest.raises(grpc_aio.AioRpcError) as info:
            await slow(b"zzz", timeout=0.3)
        elapsed = loop.time() - start
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert 0.25 <= elapsed < 5, elapsed
        # The server cancels the handler once the deadline has passed.
        await asyncio.wait_for(service.slow_cancelled.wait(), 10)

        # A deadline on a stream that outlives it.
        endless = channel.unary_stream("/svc/Endless")
        got = 0
        with pytest.raises(grpc_aio.AioRpcError) as info:
            async for _ in endless(b"", timeout=0.3):
                got += 1
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert got > 0
        # The channel still works.
        assert await channel.unary_unary("/svc/Echo")(b"ok", timeout=10) == b"ok"

    run_grpc(run_on, body)


def test_client_cancels_stream(impl, run_on) -> None:
    async def body(channel, service) -> None:
        endless = channel.unary_stream("/svc/Endless")
        call = endless(b"", timeout=30)
        for i in range(20):
            assert await call.read() == b"tick %d" % i
        assert call.cancel() is True
        assert call.cancelled()
        with pytest.raises(asyncio.CancelledError):
            await call.read()
        assert await call.code() == grpc.StatusCode.CANCELLED
        # The server's handler sees the cancellation.
        await asyncio.wait_for(service.cancelled.wait(), 10)

        # Cancelling the task that awaits a unary call cancels the RPC.
        service.slow_cancelled.clear()

        async def slow_call() -> bytes:
            return await channel.unary_unary("/svc/Slow")(b"", timeout=30)

        task = asyncio.create_task(slow_call())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(service.slow_cancelled.wait(), 10)

        # A bidirectional call cancelled half-way.
        call = channel.stream_stream("/svc/Chat")(timeout=30)
        await call.write(b"one")
        assert await call.read() == b"ONE"
        call.cancel()
        assert await call.code() == grpc.StatusCode.CANCELLED
        assert await channel.unary_unary("/svc/Echo")(b"after", timeout=10) == b"after"

    run_grpc(run_on, body)


def test_1000_concurrent_unary_calls(impl, run_on) -> None:
    async def body(channel, service) -> None:
        echo = channel.unary_unary("/svc/Echo")
        payloads = [b"call-%d-" % i + bytes([i % 256]) * (i % 97) for i in range(1000)]
        got = await asyncio.gather(*(echo(p, timeout=30) for p in payloads))
        assert got == payloads

    run_grpc(run_on, body)


def test_several_channels_and_servers(impl, run_on) -> None:
    """Two servers and three channels in one loop, calls crossing between them."""

    async def main() -> None:
        (s1, p1, _), (s2, p2, _) = await serve(), await serve()
        channels = [grpc_aio.insecure_channel(f"{HOST}:{p}") for p in (p1, p2, p1)]
        try:

            async def call(i: int) -> bytes:
                ch = channels[i % 3]
                return await ch.unary_unary("/svc/Echo")(b"%d" % i, timeout=10)

            got = await asyncio.gather(*(call(i) for i in range(300)))
            assert got == [b"%d" % i for i in range(300)]
        finally:
            for ch in channels:
                await ch.close()
            await asyncio.gather(s1.stop(None), s2.stop(None))

    run_on(main)
    # A second loop of the same kind, right after, in the same process.
    run_on(main)


def test_tls_and_graceful_stop(impl, run_on) -> None:
    """A TLS channel; ``server.stop(grace)`` lets a call in flight finish and refuses new ones."""
    trustme = pytest.importorskip("trustme", reason=NEED.format("trustme"))
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    server_creds = grpc.ssl_server_credentials(
        [(cert.private_key_pem.bytes(), cert.cert_chain_pems[0].bytes())]
    )
    channel_creds = grpc.ssl_channel_credentials(ca.cert_pem.bytes())

    async def main() -> None:
        service = Service()
        server = grpc_aio.server()
        server.add_generic_rpc_handlers((service.handler(),))
        port = server.add_secure_port(f"{HOST}:0", server_creds)
        await server.start()
        options = (("grpc.ssl_target_name_override", "localhost"),)
        try:
            async with grpc_aio.secure_channel(f"{HOST}:{port}", channel_creds, options) as ch:
                assert ch.get_state() == grpc.ChannelConnectivity.IDLE
                await asyncio.wait_for(ch.channel_ready(), 10)
                assert ch.get_state() == grpc.ChannelConnectivity.READY
                echo = ch.unary_unary("/svc/Echo")
                big = b"tls" * 100_000
                assert await echo(big, timeout=10, compression=grpc.Compression.Gzip) == big

                nap = ch.unary_unary("/svc/Nap")
                in_flight = asyncio.ensure_future(nap(b"0.3", timeout=10))
                await asyncio.sleep(0.1)  # the call has reached the handler
                stopping = asyncio.ensure_future(server.stop(5))
                await asyncio.sleep(0.05)
                with pytest.raises(grpc_aio.AioRpcError) as info:
                    await echo(b"too late", timeout=5)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE
                assert await in_flight == b"rested 0.3"
                await stopping
                assert await server.wait_for_termination(1) is False
        finally:
            await server.stop(None)

    run_on(main)


def test_sync_handlers_in_thread_pool(impl, run_on) -> None:
    """Plain (non-async) handlers run in the server's ``migration_thread_pool``."""
    main_thread = threading.get_ident()
    threads: set[int] = set()

    def sync_echo(request: bytes, context) -> bytes:
        threads.add(threading.get_ident())
        time.sleep(0.002)  # blocking, as sync handlers may be
        return request[::-1]

    def sync_split(request: bytes, context):
        threads.add(threading.get_ident())
        for i in range(int(request)):
            yield b"%d" % i

    async def main() -> None:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            server = grpc_aio.server(migration_thread_pool=pool)
            handler = grpc.method_handlers_generic_handler(
                "sync",
                {
                    "Echo": grpc.unary_unary_rpc_method_handler(sync_echo),
                    "Split": grpc.unary_stream_rpc_method_handler(sync_split),
                },
            )
            server.add_generic_rpc_handlers((handler,))
            port = server.add_insecure_port(f"{HOST}:0")
            await server.start()
            try:
                async with grpc_aio.insecure_channel(f"{HOST}:{port}") as channel:
                    echo = channel.unary_unary("/sync/Echo")
                    got = await asyncio.gather(
                        *(echo(b"abc%d" % i, timeout=10) for i in range(200))
                    )
                    assert got == [(b"abc%d" % i)[::-1] for i in range(200)]
                    split = channel.unary_stream("/sync/Split")
                    assert [m async for m in split(b"100", timeout=10)] == [
                        b"%d" % i for i in range(100)
                    ]
            finally:
                await server.stop(None)
        assert threads and main_thread not in threads

    run_on(main)
