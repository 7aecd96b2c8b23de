"""TLS record handling after the handshake: many records per read, records split
across reads, the app transport's ``write`` arguments, a context's own
``sslobject_class``, corrupt records, and data queued while the app is paused.

ferroloop decrypts and encrypts these records in native code (``TlsProtocolCore``);
every test runs on stdlib asyncio (the reference) and on ferroloop.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
import threading
from typing import ClassVar

import pytest
from io_testutil import TIMEOUT, Recorder, run
from tls_testutil import (
    SERVER_NAME,
    BlockingTLSPeer,
    ServerProtocols,
    client_context,
    server_context,
)

pytestmark = pytest.mark.timeout(30)

HOST = "127.0.0.1"


async def _echo_server(loop, protocols=None, ctx=None):
    protocols = protocols if protocols is not None else ServerProtocols(loop)
    server = await loop.create_server(protocols, HOST, 0, ssl=ctx or server_context())
    return server, server.sockets[0].getsockname()[1], protocols


async def _connect(loop, port, ctx=None, factory=None):
    return await loop.create_connection(
        factory or (lambda: Recorder(loop)),
        HOST,
        port,
        ssl=ctx or client_context(),
        server_hostname=SERVER_NAME,
    )


async def _finish(server, tr, pr) -> None:
    tr.close()
    await pr.lost
    server.close()
    await server.wait_closed()


def test_burst_of_small_records_in_order(loop):
    """2,000 writes in one tick become 2,000 records that arrive many per read."""
    messages = [struct.pack("!I", i) + os.urandom(i % 97) for i in range(2000)]
    expected = b"".join(messages)

    async def main():
        server, port, _ = await _echo_server(loop)
        tr, pr = await _connect(loop, port)
        for m in messages:
            tr.write(m)
        await pr.wait_data(len(expected))
        data = bytes(pr.data)
        await _finish(server, tr, pr)
        return data

    assert run(loop, main(), timeout=20) == expected


def test_records_split_across_reads(loop):
    """Records that reach the socket one byte at a time are decrypted once complete."""
    assert _trickle_records(loop) == b"hello, " * 50


def _trickle_records(loop) -> bytes:
    """A blocking TLS client sends its records to the loop's server through a proxy
    that forwards them one byte per send."""

    async def main():
        server, port, protos = await _echo_server(loop, ServerProtocols(loop, Recorder))
        listener = socket.create_server((HOST, 0))
        listener.settimeout(TIMEOUT)
        proxy_port = listener.getsockname()[1]

        def proxy() -> None:
            with listener, listener.accept()[0] as downstream:
                downstream.settimeout(TIMEOUT)
                with socket.create_connection((HOST, port), timeout=TIMEOUT) as upstream:
                    pump = threading.Thread(
                        target=_copy, args=(upstream, downstream, None), daemon=True
                    )
                    pump.start()
                    _copy(downstream, upstream, 1)
                    pump.join(TIMEOUT)

        def client() -> None:
            sock = socket.create_connection((HOST, proxy_port), timeout=TIMEOUT)
            with client_context().wrap_socket(sock, server_hostname=SERVER_NAME) as tls:
                for _ in range(50):
                    tls.sendall(b"hello, ")
                tls.unwrap()

        threads = [threading.Thread(target=f, daemon=True) for f in (proxy, client)]
        for t in threads:
            t.start()
        while not protos:
            await asyncio.sleep(0.01)
        sp = protos[0]
        await asyncio.wait_for(sp.lost, TIMEOUT)
        await asyncio.to_thread(lambda: [t.join(TIMEOUT) for t in threads])
        server.close()
        await server.wait_closed()
        return bytes(sp.data)

    return run(loop, main(), timeout=15)


def _copy(src: socket.socket, dst: socket.socket, step: int | None) -> None:
    """Forward ``src`` to ``dst`` until EOF, ``step`` bytes per send (None: as read)."""
    try:
        while data := src.recv(65536):
            if step is None:
                dst.sendall(data)
            else:
                for i in range(0, len(data), step):
                    dst.sendall(data[i : i + step])
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def test_write_argument_types(loop):
    """``write`` takes bytes, bytearray and memoryview; empty writes are no-ops;
    anything else is the stdlib's TypeError."""

    async def main():
        server, port, _ = await _echo_server(loop)
        tr, pr = await _connect(loop, port)
        errors = []
        for bad in ("text", 42, None, [b"x"]):
            try:
                tr.write(bad)
            except TypeError as exc:
                errors.append(str(exc))
        tr.write(b"")
        tr.write(bytearray(b"ab"))
        tr.write(memoryview(b"xcdx")[1:3])
        tr.writelines([b"ef", bytearray(b"gh"), memoryview(b"ij")])
        tr.write(b"")
        await pr.wait_data(10)
        data = bytes(pr.data)
        await _finish(server, tr, pr)
        return errors, data

    errors, data = run(loop, main())
    assert errors == [
        "data: expecting a bytes-like instance, got str",
        "data: expecting a bytes-like instance, got int",
        "data: expecting a bytes-like instance, got NoneType",
        "data: expecting a bytes-like instance, got list",
    ]
    assert data == b"abcdefghij"


class _CountingSSLObject(ssl.SSLObject):
    """An ``SSLContext.sslobject_class`` that counts reads and writes."""

    calls: ClassVar[dict[str, int]] = {"read": 0, "write": 0}

    def read(self, len=1024, buffer=None):
        type(self).calls["read"] += 1
        return super().read(len, buffer)

    def write(self, data):
        type(self).calls["write"] += 1
        return super().write(data)


def test_context_sslobject_class_is_used(loop):
    """A context's ``sslobject_class`` overrides are called for every record."""
    _CountingSSLObject.calls.update(read=0, write=0)

    async def main():
        ctx = client_context()
        ctx.sslobject_class = _CountingSSLObject
        server, port, _ = await _echo_server(loop)
        tr, pr = await _connect(loop, port, ctx=ctx)
        for i in range(10):
            tr.write(b"m%d;" % i)
            await pr.wait_data(len(b"".join(b"m%d;" % j for j in range(i + 1))))
        data = bytes(pr.data)
        await _finish(server, tr, pr)
        return data

    assert run(loop, main()) == b"".join(b"m%d;" % i for i in range(10))
    assert _CountingSSLObject.calls["write"] >= 10
    assert _CountingSSLObject.calls["read"] >= 10


def test_corrupt_record_after_handshake(loop):
    """A record that fails to decrypt ends the connection with the ssl module's error."""
    corrupt = b"\x17\x03\x03\x00\x20" + bytes(32)  # application data, garbage body

    delivered = threading.Event()

    def script(tls: ssl.SSLSocket):
        tls.sendall(b"ok")
        delivered.wait(TIMEOUT)  # a failing record drops what its read already decrypted
        os.write(tls.fileno(), corrupt)

    async def main():
        server, port, protos = await _echo_server(loop, ServerProtocols(loop, Recorder))
        peer = BlockingTLSPeer.client((HOST, port), script)
        try:
            while not protos:
                await asyncio.sleep(0.01)
            sp = protos[0]
            await sp.wait_data(2)
            delivered.set()
            exc = await asyncio.wait_for(sp.lost, TIMEOUT)
            data = bytes(sp.data)
        finally:
            await asyncio.to_thread(peer.close)
        server.close()
        await server.wait_closed()
        return data, exc

    data, exc = run(loop, main(), timeout=15)
    assert data == b"ok"
    assert isinstance(exc, ssl.SSLError), repr(exc)
    assert exc.reason in ("DECRYPTION_FAILED_OR_BAD_RECORD_MAC", "BAD_RECORD_MAC"), exc.reason


def test_paused_app_gets_queued_records_on_resume(loop):
    """While the app has paused reading, records wait (encrypted) and the socket stops
    being read past the high-water mark; after resume_reading() every byte arrives."""
    payload = os.urandom(2 * 1024 * 1024)

    async def main():
        server, port, protos = await _echo_server(loop, ServerProtocols(loop, Recorder))
        tr, pr = await _connect(loop, port)
        while not protos:
            await asyncio.sleep(0.01)
        sp = protos[0]
        await sp.made
        sp.transport.pause_reading()
        tr.write(payload)
        await asyncio.sleep(0.2)
        while_paused = len(sp.data)
        sp.transport.resume_reading()
        await sp.wait_data(len(payload))
        data = bytes(sp.data)
        await _finish(server, tr, pr)
        return while_paused, data

    while_paused, data = run(loop, main(), timeout=20)
    assert while_paused == 0
    assert data == payload


def test_write_from_connection_made_and_eof_order(loop):
    """Data written in connection_made arrives; a peer's close_notify is eof_received
    after all its data, then connection_lost(None)."""

    class Greeter(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.write(b"hello")
            transport.close()

    async def main():
        server, port, _ = await _echo_server(loop, ServerProtocols(loop, Greeter))
        _, pr = await _connect(loop, port)
        exc = await pr.lost
        server.close()
        await server.wait_closed()
        return bytes(pr.data), pr.events, exc

    data, events, exc = run(loop, main())
    assert data == b"hello"
    assert events == ["made", "eof", "lost"] and exc is None
