"""contextvars in protocol callbacks: a transport's protocol runs in (a copy of) the
context that was current when the transport was made.

On asyncio, ``data_received``/``eof_received``/``connection_lost`` (and
``get_buffer``/``buffer_updated``) run in the reader handle's context, a copy of the
context of the task that called ``create_connection``/``create_server``; tracing and
request-scoped libraries rely on it. Every case runs side by side on both loops, for
TCP and Unix streams, ``sock=``, ``connect_accepted_socket`` and TLS, with Protocol and
BufferedProtocol.
"""

from __future__ import annotations

import asyncio
import contextvars
import socket

import pytest
from io_testutil import run
from tls_testutil import SERVER_NAME, client_context, server_context

pytestmark = pytest.mark.timeout(30)

HOST = "127.0.0.1"
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


class Seen:
    """What one protocol saw of ``request_id`` in each callback."""

    def __init__(self, loop, role: str) -> None:
        self.role = role
        self.values: dict[str, set] = {}
        self.lost = loop.create_future()
        self.data = bytearray()

    def saw(self, where: str) -> None:
        self.values.setdefault(where, set()).add(request_id.get(None))


class _Base:
    def __init__(self, seen: Seen) -> None:
        self.seen = seen
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.seen.saw("made")
        if self.seen.role == "client":
            transport.write(b"ping")

    def got(self, data: bytes) -> None:
        self.seen.data += data
        if self.seen.role == "server":
            self.transport.write(data)
        elif bytes(self.seen.data) == b"ping":
            self.transport.close()

    def eof_received(self):
        self.seen.saw("eof")

    def connection_lost(self, exc):
        self.seen.saw("lost")
        self.seen.lost.set_result(exc)


class PlainProto(_Base, asyncio.Protocol):
    def data_received(self, data):
        self.seen.saw("data")
        self.got(data)


class BufferedProto(_Base, asyncio.BufferedProtocol):
    def __init__(self, seen: Seen) -> None:
        super().__init__(seen)
        self.buf = bytearray(64)

    def get_buffer(self, sizehint):
        self.seen.saw("get_buffer")
        return self.buf

    def buffer_updated(self, nbytes):
        self.seen.saw("data")
        self.got(bytes(self.buf[:nbytes]))


async def _in_context(value: str, coro_fn):
    """Run ``coro_fn()`` in a task whose context has ``request_id = value``."""

    async def inner():
        request_id.set(value)
        return await coro_fn()

    return await asyncio.create_task(inner(), context=contextvars.Context())


async def _scenario(loop, kind: str, proto_cls, tmp_path):
    server_seen = Seen(loop, "server")
    client_seen = Seen(loop, "client")
    ssl_kw_server = {"ssl": server_context()} if kind == "tls" else {}
    ssl_kw_client = (
        {"ssl": client_context(), "server_hostname": SERVER_NAME} if kind == "tls" else {}
    )
    accepted_task = None

    if kind == "unix":
        path = str(tmp_path / "ctx.sock")

        async def serve():
            return await loop.create_unix_server(lambda: proto_cls(server_seen), path)

        async def connect():
            return await loop.create_unix_connection(lambda: proto_cls(client_seen), path)

    elif kind == "accepted":
        listener = socket.socket()
        listener.bind((HOST, 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]

        async def serve():
            conn, _ = await loop.sock_accept(listener)
            listener.close()
            return await loop.connect_accepted_socket(lambda: proto_cls(server_seen), conn)

        async def connect():
            return await loop.create_connection(lambda: proto_cls(client_seen), HOST, port)

    else:
        port_box = {}

        async def serve():
            server = await loop.create_server(
                lambda: proto_cls(server_seen), HOST, 0, **ssl_kw_server
            )
            port_box["port"] = server.sockets[0].getsockname()[1]
            return server

        async def connect():
            port = port_box["port"]
            if kind == "sock":
                sock = socket.create_connection((HOST, port))
                sock.setblocking(False)
                return await loop.create_connection(lambda: proto_cls(client_seen), sock=sock)
            return await loop.create_connection(
                lambda: proto_cls(client_seen), HOST, port, **ssl_kw_client
            )

    if kind == "accepted":
        accepted_task = asyncio.ensure_future(_in_context("server", serve))
        await asyncio.sleep(0)
        server = None
    else:
        server = await _in_context("server", serve)
    await _in_context("client", connect)
    await client_seen.lost
    await server_seen.lost
    if accepted_task is not None:
        await accepted_task
    if server is not None:
        server.close()
        await server.wait_closed()
    return server_seen, client_seen


@pytest.mark.parametrize("proto_cls", [PlainProto, BufferedProto], ids=["Protocol", "Buffered"])
@pytest.mark.parametrize("kind", ["tcp", "unix", "sock", "accepted", "tls"])
def test_protocol_callbacks_run_in_creator_context(loop, kind, proto_cls, tmp_path):
    server_seen, client_seen = run(loop, _scenario(loop, kind, proto_cls, tmp_path))
    assert bytes(client_seen.data) == b"ping"
    for seen in (server_seen, client_seen):
        assert "data" in seen.values and "lost" in seen.values
        for where, values in seen.values.items():
            assert values == {seen.role}, (seen.role, where, seen.values)


def test_protocol_context_is_a_copy(loop):
    """A value a protocol sets in one data_received is seen by its next one, and
    does not leak into the task that made the connection (asyncio's reader handle
    keeps one copied context for every call)."""

    class Counting(asyncio.Protocol):
        def __init__(self):
            self.seen = []
            self.done = loop.create_future()

        def data_received(self, data):
            self.seen.append(request_id.get(None))
            request_id.set(f"data{len(self.seen)}")
            if len(self.seen) == 2:
                self.done.set_result(None)

    async def main():
        received = []
        handled = loop.create_future()

        async def handler(reader, writer):
            for chunk in (b"a", b"b"):
                writer.write(chunk)
                await writer.drain()
                await asyncio.sleep(0.05)
            received.append(await reader.read())
            writer.close()
            handled.set_result(None)

        server = await asyncio.start_server(handler, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        request_id.set("creator")
        tr, pr = await loop.create_connection(Counting, HOST, port)
        await pr.done
        after = request_id.get()
        tr.close()
        await handled
        server.close()
        await server.wait_closed()
        return pr.seen, after

    seen, after = run(loop, main())
    assert seen == ["creator", "data1"]
    assert after == "creator"


def test_connection_lost_context_after_close_elsewhere(impl, loop):
    """close() called from another context: asyncio runs connection_lost in the
    closer's context; ferroloop (like uvloop) in the transport's own context."""
    lost_value = []

    class Proto(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def connection_lost(self, exc):
            lost_value.append(request_id.get(None))

    async def main():
        server = await loop.create_server(asyncio.Protocol, HOST, 0)
        port = server.sockets[0].getsockname()[1]

        async def connect():
            return await loop.create_connection(Proto, HOST, port)

        tr, _ = await _in_context("creator", connect)

        async def closer():
            tr.close()
            await asyncio.sleep(0.01)

        await _in_context("closer", closer)
        server.close()
        await server.wait_closed()

    run(loop, main())
    expected = "creator" if impl.name == "ferroloop" else "closer"
    assert lost_value == [expected]
