"""websockets (the ``websockets.asyncio`` implementation): server and client in one loop.

Both ends run on the loop under test over 127.0.0.1 (and a Unix socket, and TLS): 10,000
messages ping-pong, 10,000 pipelined, a broadcast to several clients, compression of large
frames, pings, and the closing handshake.
"""

from __future__ import annotations

import asyncio
import http
import os
import ssl
import tempfile

import pytest

NEED = "{} is not installed: pip install -r tests/e2e/requirements.txt (make e2e)"

websockets = pytest.importorskip("websockets", reason=NEED.format("websockets"))
ws_server = pytest.importorskip("websockets.asyncio.server", reason="needs websockets >= 13")
ws_client = pytest.importorskip("websockets.asyncio.client", reason="needs websockets >= 13")

from e2e_util import HOST

MESSAGES = 10_000


async def echo(ws) -> None:
    async for message in ws:
        if message == "close-me":
            await ws.close(4001, "asked to")
            return
        await ws.send(message)


def port_of(server) -> int:
    return server.sockets[0].getsockname()[1]


def test_echo_10k_messages(run_on) -> None:
    async def main() -> None:
        async with ws_server.serve(echo, HOST, 0) as server:
            url = f"ws://{HOST}:{port_of(server)}"
            async with ws_client.connect(url) as ws:
                for i in range(MESSAGES):
                    await ws.send(f"message {i}")
                    assert await ws.recv() == f"message {i}"
                await ws.send("close-me")
                # A 4xxx code is not a "normal" closure: ConnectionClosedError, not ...OK.
                with pytest.raises(websockets.ConnectionClosed) as info:
                    await ws.recv()
                assert info.value.rcvd.code == 4001
                assert info.value.rcvd.reason == "asked to"

    run_on(main)


def test_pipelined_10k_messages(run_on) -> None:
    """The client sends 10,000 binary messages without waiting; a second task reads."""

    async def main() -> None:
        async with ws_server.serve(echo, HOST, 0, compression=None) as server:  # noqa: SIM117
            async with ws_client.connect(f"ws://{HOST}:{port_of(server)}") as ws:

                async def sender() -> None:
                    for i in range(MESSAGES):
                        await ws.send(i.to_bytes(4, "big") * 16)

                async def receiver() -> int:
                    for i in range(MESSAGES):
                        assert await ws.recv() == i.to_bytes(4, "big") * 16
                    return MESSAGES

                async with asyncio.TaskGroup() as tg:
                    tg.create_task(sender())
                    got = tg.create_task(receiver())
                assert got.result() == MESSAGES

    run_on(main)


def test_broadcast(run_on) -> None:
    clients = 8
    rounds = 500

    async def main() -> None:
        connected: set = set()
        all_in = asyncio.Event()

        async def handler(ws) -> None:
            connected.add(ws)
            if len(connected) == clients:
                all_in.set()
            await ws.wait_closed()

        async with ws_server.serve(handler, HOST, 0) as server:
            url = f"ws://{HOST}:{port_of(server)}"
            conns = [await ws_client.connect(url) for _ in range(clients)]
            await asyncio.wait_for(all_in.wait(), 10)
            for i in range(rounds):
                websockets.broadcast(connected, f"news {i}")

            async def read_all(ws) -> list[str]:
                return [await ws.recv() for _ in range(rounds)]

            got = await asyncio.gather(*(read_all(ws) for ws in conns))
            assert got == [[f"news {i}" for i in range(rounds)]] * clients
            await asyncio.gather(*(ws.close() for ws in conns))

    run_on(main)


def test_large_compressed_messages_and_pings(run_on) -> None:
    async def main() -> None:
        async with ws_server.serve(echo, HOST, 0, max_size=None) as server:
            url = f"ws://{HOST}:{port_of(server)}"
            async with ws_client.connect(url, max_size=None) as ws:
                text = "ferroloop " * 400_000  # 4 MB, compresses well
                await ws.send(text)
                assert await ws.recv() == text
                noise = os.urandom(2 << 20)  # 2 MiB, does not compress
                await ws.send(noise)
                assert await ws.recv() == noise
                for _ in range(100):
                    pong = await ws.ping()
                    latency = await asyncio.wait_for(pong, 5)
                    assert latency >= 0

    run_on(main)


def test_http_response_and_rejection(run_on) -> None:
    """``process_request`` answers plain HTTP; the client sees the rejection."""

    def process_request(connection, request):
        if request.path == "/health":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if request.path == "/forbidden":
            return connection.respond(http.HTTPStatus.FORBIDDEN, "no\n")
        return None

    async def main() -> None:
        async with ws_server.serve(echo, HOST, 0, process_request=process_request) as server:
            port = port_of(server)
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(f"GET /health HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
            status = await reader.readline()
            assert status.startswith(b"HTTP/1.1 200"), status
            writer.close()
            await writer.wait_closed()
            with pytest.raises(websockets.InvalidStatus) as info:
                await ws_client.connect(f"ws://{HOST}:{port}/forbidden")
            assert info.value.response.status_code == 403
            async with ws_client.connect(f"ws://{HOST}:{port}/ok") as ws:
                await ws.send("still fine")
                assert await ws.recv() == "still fine"

    run_on(main)


def test_unix_socket(run_on) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="ferroloop-e2e-") as tmp:
            path = os.path.join(tmp, "ws.sock")
            async with ws_server.unix_serve(echo, path), ws_client.unix_connect(path) as ws:
                for i in range(1000):
                    await ws.send(f"unix {i}")
                    assert await ws.recv() == f"unix {i}"

    run_on(main)


def test_server_shutdown_closes_clients(run_on) -> None:
    async def main() -> None:
        server = await ws_server.serve(echo, HOST, 0)
        url = f"ws://{HOST}:{port_of(server)}"
        conns = [await ws_client.connect(url) for _ in range(5)]
        for ws in conns:
            await ws.send("hi")
            assert await ws.recv() == "hi"
        server.close()
        await asyncio.wait_for(server.wait_closed(), 10)
        for ws in conns:
            with pytest.raises(websockets.ConnectionClosedOK) as info:
                await ws.recv()
            assert info.value.rcvd.code == 1001  # going away

    run_on(main)


def test_tls(run_on) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert(HOST)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def main() -> None:
        async with ws_server.serve(echo, HOST, 0, ssl=server_ctx, max_size=None) as server:
            url = f"wss://{HOST}:{port_of(server)}"
            async with ws_client.connect(url, ssl=client_ctx, max_size=None) as ws:
                for i in range(2000):
                    await ws.send(f"secure {i}")
                    assert await ws.recv() == f"secure {i}"
                big = os.urandom(4 << 20)
                await ws.send(big)
                assert await ws.recv() == big

    run_on(main)
