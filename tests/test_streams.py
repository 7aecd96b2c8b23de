"""asyncio streams (StreamReader/StreamWriter) running on the loop under test."""

from __future__ import annotations

import asyncio
import socket

import pytest
from io_testutil import run, set_rst_on_close

pytestmark = pytest.mark.timeout(30)


async def _echo_handler(reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            writer.write(line.upper())
            await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


async def _start(loop, handler, **kw):
    server = await asyncio.start_server(handler, "127.0.0.1", 0, **kw)
    assert server.get_loop() is loop
    return server, server.sockets[0].getsockname()


async def _stop(server):
    server.close()
    await server.wait_closed()


def test_open_connection_start_server_echo(loop):
    async def main():
        server, addr = await _start(loop, _echo_handler)
        reader, writer = await asyncio.open_connection(*addr)
        assert writer.get_extra_info("peername") == addr
        assert writer.can_write_eof() is True
        writer.write(b"hello\n")
        writer.writelines([b"wor", b"ld\n"])
        await writer.drain()
        lines = [await reader.readline(), await reader.readline()]
        writer.write_eof()
        rest = await reader.read()
        assert reader.at_eof()
        writer.close()
        assert writer.is_closing()
        await writer.wait_closed()
        await _stop(server)
        return lines, rest

    assert run(loop, main()) == ([b"HELLO\n", b"WORLD\n"], b"")


def test_read_variants(loop):
    async def handler(reader, writer):
        writer.write(b"line1\nexact" + b"abc|def||tail-data")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server, addr = await _start(loop, handler)
        reader, writer = await asyncio.open_connection(*addr)
        out = [
            await reader.readline(),
            await reader.readexactly(5),
            await reader.readuntil(b"|"),
            await reader.readuntil(b"||"),
            await reader.read(4),
            await reader.read(-1),
            await reader.read(),
            await reader.readline(),
        ]
        writer.close()
        await writer.wait_closed()
        await _stop(server)
        return out

    assert run(loop, main()) == [
        b"line1\n",
        b"exact",
        b"abc|",
        b"def||",
        b"tail",
        b"-data",
        b"",
        b"",
    ]


def test_readexactly_incomplete(loop):
    async def handler(reader, writer):
        writer.write(b"short")
        writer.close()
        await writer.wait_closed()

    async def main():
        server, addr = await _start(loop, handler)
        reader, writer = await asyncio.open_connection(*addr)
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await reader.readexactly(10)
        writer.close()
        await writer.wait_closed()
        await _stop(server)
        return info.value.partial, info.value.expected

    assert run(loop, main()) == (b"short", 10)


def test_readuntil_incomplete_and_limit(loop):
    async def handler(reader, writer):
        writer.write(b"x" * 100 + b"\n")
        await writer.drain()
        await reader.read()  # wait for the client to finish
        writer.close()
        await writer.wait_closed()

    async def main():
        server, addr = await _start(loop, handler)
        reader, writer = await asyncio.open_connection(*addr, limit=16)
        await asyncio.sleep(0.05)  # the whole line is buffered
        with pytest.raises(asyncio.LimitOverrunError) as info:
            await reader.readuntil(b"\n")
        consumed, msg1 = info.value.consumed, str(info.value)
        # readline() turns the overrun into ValueError and drops the line.
        with pytest.raises(ValueError) as info2:
            await reader.readline()
        writer.write(b"more\n")
        writer.write_eof()
        rest = await reader.read()
        writer.close()
        await writer.wait_closed()
        await _stop(server)
        return consumed, msg1, str(info2.value), rest

    consumed, msg1, msg2, rest = run(loop, main())
    assert consumed == 100
    assert msg1 == msg2 == "Separator is found, but chunk is longer than limit"
    assert rest == b""


def test_readuntil_eof_before_separator(loop):
    async def handler(reader, writer):
        writer.write(b"no separator")
        writer.close()
        await writer.wait_closed()

    async def main():
        server, addr = await _start(loop, handler)
        reader, writer = await asyncio.open_connection(*addr)
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await reader.readuntil(b"\n")
        writer.close()
        await writer.wait_closed()
        await _stop(server)
        return info.value.partial, info.value.expected

    assert run(loop, main()) == (b"no separator", None)


def test_async_iteration_over_lines(loop):
    async def handler(reader, writer):
        writer.write(b"a\nb\nc")
        writer.close()
        await writer.wait_closed()

    async def main():
        server, addr = await _start(loop, handler)
        reader, writer = await asyncio.open_connection(*addr)
        lines = [line async for line in reader]
        writer.close()
        await writer.wait_closed()
        await _stop(server)
        return lines

    assert run(loop, main()) == [b"a\n", b"b\n", b"c"]


def test_drain_waits_for_peer(loop):
    """With the peer not reading, drain() blocks until it reads (write-side backpressure)."""
    go = None
    received = []

    async def handler(reader, writer):
        await go.wait()
        received.append(len(await reader.read()))
        writer.close()
        await writer.wait_closed()

    async def main():
        nonlocal go
        go = asyncio.Event()
        lsock = socket.socket()
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        lsock.bind(("127.0.0.1", 0))
        server = await asyncio.start_server(handler, sock=lsock)
        _reader, writer = await asyncio.open_connection(*lsock.getsockname())
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
        writer.transport.set_write_buffer_limits(high=65536)
        payload = b"d" * (4 * 1024 * 1024)
        writer.write(payload)
        drain = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(0.05)
        assert not drain.done()
        assert writer.transport.get_write_buffer_size() > 65536
        go.set()
        await drain
        assert writer.transport.get_write_buffer_size() <= 65536 // 4
        writer.close()
        await writer.wait_closed()
        for _ in range(500):
            if received:
                break
            await asyncio.sleep(0.01)
        await _stop(server)
        return received, len(payload)

    received, n = run(loop, main())
    assert received == [n]


def test_drain_after_reset_raises(loop):
    async def handler(reader, writer):
        set_rst_on_close(writer.get_extra_info("socket"))
        writer.transport.abort()

    async def main():
        server, addr = await _start(loop, handler)
        reader, writer = await asyncio.open_connection(*addr)
        with pytest.raises(ConnectionResetError):
            await reader.read(100)
        writer.write(b"x")
        with pytest.raises(ConnectionResetError):
            await writer.drain()
        writer.close()
        with pytest.raises(ConnectionResetError):
            await writer.wait_closed()
        await _stop(server)

    run(loop, main())


def test_open_connection_refused(loop):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        run(loop, asyncio.open_connection("127.0.0.1", port))


def test_unix_streams(loop, tmp_path):
    path = str(tmp_path / "streams.sock")

    async def main():
        server = await asyncio.start_unix_server(_echo_handler, path)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"unix stream\n")
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        await _stop(server)
        return line

    assert run(loop, main()) == b"UNIX STREAM\n"


def test_handler_exception_is_reported(loop, loop_errors):
    async def handler(reader, writer):
        writer.close()
        raise ZeroDivisionError("handler failed")

    async def main():
        server, addr = await _start(loop, handler)
        reader, writer = await asyncio.open_connection(*addr)
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        for _ in range(100):
            if loop_errors:
                break
            await asyncio.sleep(0.01)
        await _stop(server)

    run(loop, main())
    assert len(loop_errors) == 1
    ctx = loop_errors.pop()
    assert ctx["message"] == "Unhandled exception in client_connected_cb"
    assert isinstance(ctx["exception"], ZeroDivisionError)


def test_many_stream_clients(loop):
    async def client(addr, i):
        reader, writer = await asyncio.open_connection(*addr)
        writer.write(b"client %d\n" % i)
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return line

    async def main():
        server, addr = await _start(loop, _echo_handler)
        lines = await asyncio.gather(*(client(addr, i) for i in range(40)))
        await _stop(server)
        return lines

    assert run(loop, main()) == [b"CLIENT %d\n" % i for i in range(40)]
