"""The loop's objects with the cyclic collector running at (almost) every allocation.

An object is visible to the collector from its allocation on; on 3.11 and 3.12 the
instance dict of a native class is created after that, before the object's own fields
are written, and creating it can start a collection that traverses the half-built
object. With the collector's threshold at 1, any object whose traversal cannot cope
with that (or any stale object the loop still points to) crashes the process; the
stdlib loop runs the same program side by side.
"""

from __future__ import annotations

import asyncio
import gc
import socket

import pytest
from tls_testutil import SERVER_NAME, client_context, server_context

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def collect_always():
    """Run the test with a young-generation collection at nearly every allocation."""
    saved = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    try:
        yield
    finally:
        gc.set_threshold(*saved)


class _Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


def test_futures_tasks_handles(loop, collect_always):
    """call_soon, call_later (cancelled and run), futures, tasks, gather, a queue."""

    async def child(i, queue):
        await asyncio.sleep(0)
        await queue.put(i)
        return i

    async def main():
        queue = asyncio.Queue()
        total = 0
        for _ in range(20):
            fut = loop.create_future()
            loop.call_soon(fut.set_result, 1)
            loop.call_later(3600, print).cancel()
            loop.call_later(0, lambda: None)
            total += await fut
            results = await asyncio.gather(*(child(i, queue) for i in range(10)))
            total += sum(results)
            while not queue.empty():
                total += queue.get_nowait()
        return total

    assert loop.run_until_complete(main()) == 20 * (1 + 45 + 45)


def test_tls_protocols(impl, loop, collect_always):
    """The loop's TLS protocol objects, made one after another (each allocation of a
    native one is followed by its instance dict's, so whichever of the two starts a
    collection alternates)."""
    if impl.name == "ferroloop":
        from ferroloop.sslproto import SSLProtocol
    else:
        from asyncio.sslproto import SSLProtocol
    context = client_context()
    protocols = [
        SSLProtocol(loop, asyncio.Protocol(), context, None, False, SERVER_NAME) for _ in range(200)
    ]
    assert all(p._get_extra_info("peercert") is None for p in protocols)


def test_tcp_tls_udp_and_sock_calls(loop, collect_always):
    """Stream transports (plain and TLS), a datagram endpoint, sock_* calls."""

    async def main():
        server = await loop.create_server(_Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tls_server = await loop.create_server(_Echo, "127.0.0.1", 0, ssl=server_context())
        tls_port = tls_server.sockets[0].getsockname()[1]
        got = []
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"plain")
            got.append(await reader.readexactly(5))
            writer.close()
            await writer.wait_closed()
            reader, writer = await asyncio.open_connection(
                "127.0.0.1",
                tls_port,
                ssl=client_context(),
                server_hostname=SERVER_NAME,
            )
            writer.write(b"tls")
            got.append(await reader.readexactly(3))
            writer.close()
            await writer.wait_closed()

        udp_server, _ = await loop.create_datagram_endpoint(_UdpEcho, local_addr=("127.0.0.1", 0))
        addr = udp_server.get_extra_info("sockname")
        answers = asyncio.Queue()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                answers.put_nowait(data)

        udp_client, _ = await loop.create_datagram_endpoint(Client, remote_addr=addr)
        for i in range(3):
            udp_client.sendto(b"udp%d" % i)
            got.append(await answers.get())
        udp_client.close()
        udp_server.close()

        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            b.setblocking(False)
            for _ in range(3):
                await loop.sock_sendall(a, b"sock")
                got.append(await loop.sock_recv(b, 4))

        server.close()
        tls_server.close()
        await server.wait_closed()
        await tls_server.wait_closed()
        return got

    assert loop.run_until_complete(main()) == (
        [b"plain", b"tls"] * 3 + [b"udp0", b"udp1", b"udp2"] + [b"sock"] * 3
    )
