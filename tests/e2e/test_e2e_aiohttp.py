"""aiohttp: a web server and its client in one loop -- HTTP, streaming, websockets, TLS.

Server (``aiohttp.web`` over ``loop.create_server``) and client (``aiohttp.ClientSession``
over ``loop.create_connection``) both run on the loop under test, over 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import ssl
import subprocess
import tempfile
import textwrap
import urllib.request

import pytest

NEED = "{} is not installed: pip install -r tests/e2e/requirements.txt (make e2e)"

aiohttp = pytest.importorskip("aiohttp", reason=NEED.format("aiohttp"))
web = pytest.importorskip("aiohttp.web")

from e2e_util import HOST, free_port, python_env, stop_process, wait_for_port

CHUNK = b"0123456789abcdef" * 64  # 1 KiB


def make_app() -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="Hello, " + request.query.get("name", "World"))

    async def echo_json(request: web.Request) -> web.Response:
        doc = await request.json()
        return web.json_response({"got": doc, "loop": type(asyncio.get_running_loop()).__name__})

    async def upload(request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_chunked(65536):
            digest.update(chunk)
            size += len(chunk)
        return web.json_response({"size": size, "sha256": digest.hexdigest()})

    async def stream(request: web.Request) -> web.StreamResponse:
        count = int(request.query.get("count", "100"))
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(count):
            await resp.write(CHUNK)
            if i % 100 == 0:
                await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    async def big(request: web.Request) -> web.Response:
        size = int(request.query["size"])
        return web.Response(body=os.urandom(16) * (size // 16))

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("delay", "5")))
        return web.Response(text="late")

    async def ws_echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                if msg.data == "close-me":
                    await ws.close(code=4000, message=b"bye")
                    break
                await ws.send_str(msg.data.upper())
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
        return ws

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/", hello)
    app.router.add_post("/json", echo_json)
    app.router.add_post("/upload", upload)
    app.router.add_get("/stream", stream)
    app.router.add_get("/big", big)
    app.router.add_get("/slow", slow)
    app.router.add_get("/ws", ws_echo)
    return app


class Server:
    """``async with Server() as base_url``: the app on a free port of 127.0.0.1."""

    def __init__(self, app: web.Application | None = None, ssl_context=None) -> None:
        self.runner = web.AppRunner(app or make_app(), handle_signals=False)
        self.ssl_context = ssl_context

    async def __aenter__(self) -> str:
        await self.runner.setup()
        site = web.TCPSite(self.runner, HOST, 0, ssl_context=self.ssl_context)
        await site.start()
        port = self.runner.addresses[0][1]
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{HOST}:{port}"

    async def __aexit__(self, *exc_info) -> None:
        await self.runner.cleanup()


def test_requests(impl, run_on) -> None:
    async def main() -> None:
        async with Server() as url, aiohttp.ClientSession() as session:
            async with session.get(f"{url}/", params={"name": "ferroloop"}) as resp:
                assert resp.status == 200
                assert await resp.text() == "Hello, ferroloop"
            async with session.post(f"{url}/json", json={"a": [1, 2, 3]}) as resp:
                doc = await resp.json()
            assert doc["got"] == {"a": [1, 2, 3]}
            assert doc["loop"] == impl.loop_class.__name__
            async with session.get(f"{url}/missing") as resp:
                assert resp.status == 404

            async def one(i: int) -> str:
                async with session.get(f"{url}/", params={"name": str(i)}) as resp:
                    return await resp.text()

            # 500 requests, at most 100 connections (the session's default limit): keep-alive.
            got = await asyncio.gather(*(one(i) for i in range(500)))
            assert got == [f"Hello, {i}" for i in range(500)]

    run_on(main)


def test_debug_mode(impl, run_on) -> None:
    """The same requests with the loop in debug mode (``PYTHONASYNCIODEBUG=1``, ``-X dev``)."""

    async def main() -> None:
        assert asyncio.get_running_loop().get_debug()
        async with Server() as url, aiohttp.ClientSession() as session:
            for i in range(5):
                async with session.post(f"{url}/json", json={"i": i}) as resp:
                    assert (await resp.json())["got"] == {"i": i}

    run_on(main, debug=True)


def test_streaming_response_and_upload(run_on) -> None:
    async def main() -> None:
        async with Server() as url, aiohttp.ClientSession() as session:
            async with session.get(f"{url}/stream", params={"count": "2000"}) as resp:
                assert resp.headers["Transfer-Encoding"] == "chunked"
                parts = [chunk async for chunk in resp.content.iter_chunked(4096)]
            assert len(parts) > 1
            assert b"".join(parts) == CHUNK * 2000

            payload = os.urandom(1 << 20)

            async def body():
                for i in range(0, len(payload), 65536):
                    yield payload[i : i + 65536]
                    await asyncio.sleep(0)

            async with session.post(f"{url}/upload", data=body()) as resp:
                doc = await resp.json()
            assert doc == {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}

    run_on(main)


def test_large_bodies(run_on) -> None:
    """8 MiB each way: the write buffer's water marks and read pausing on both sides."""

    async def main() -> None:
        async with Server() as url, aiohttp.ClientSession() as session:
            size = 8 * 1024 * 1024
            async with session.get(f"{url}/big", params={"size": str(size)}) as resp:
                data = await resp.read()
            assert len(data) == size
            async with session.post(f"{url}/upload", data=data) as resp:
                doc = await resp.json()
            assert doc == {"size": size, "sha256": hashlib.sha256(data).hexdigest()}

    run_on(main)


def test_websocket(run_on) -> None:
    async def main() -> None:
        async with Server() as url, aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{url}/ws") as ws:
                for i in range(1000):
                    await ws.send_str(f"message {i}")
                    assert await ws.receive_str(timeout=10) == f"MESSAGE {i}"
                # Pipelined: many frames in flight at once.
                for i in range(1000):
                    await ws.send_bytes(i.to_bytes(4, "big") + b"xyz")
                for i in range(1000):
                    assert await ws.receive_bytes(timeout=10) == b"zyx" + i.to_bytes(4, "little")
                big = os.urandom(1 << 20)
                await ws.send_bytes(big)
                assert await ws.receive_bytes(timeout=10) == big[::-1]
                await ws.ping(b"hi")  # the pong is handled by the client's reader
                await ws.send_str("close-me")
                msg = await ws.receive(timeout=10)
                assert msg.type == aiohttp.WSMsgType.CLOSE
                assert msg.data == 4000
                assert msg.extra == "bye"
            assert ws.closed
            assert ws.close_code == 4000

    run_on(main)


def test_client_timeout_and_cancelled_handler(run_on) -> None:
    async def main() -> None:
        async with Server() as url, aiohttp.ClientSession() as session:
            timeout = aiohttp.ClientTimeout(total=0.2)
            with pytest.raises(asyncio.TimeoutError):
                async with session.get(f"{url}/slow", params={"delay": "1"}, timeout=timeout):
                    pass
            # The server goes on serving after the client dropped the connection.
            async with session.get(f"{url}/slow", params={"delay": "0.01"}) as resp:
                assert await resp.text() == "late"

    run_on(main)


def test_file_response(run_on) -> None:
    """``web.FileResponse`` sends with ``loop.sendfile`` (native on ferroloop)."""
    content = os.urandom(3 * 1024 * 1024 + 7)
    with tempfile.NamedTemporaryFile(suffix=".bin") as fh:
        fh.write(content)
        fh.flush()

        async def serve_file(request: web.Request) -> web.FileResponse:
            return web.FileResponse(fh.name)

        async def main() -> None:
            app = web.Application()
            app.router.add_get("/file", serve_file)
            async with Server(app) as url, aiohttp.ClientSession() as session:
                async with session.get(f"{url}/file") as resp:
                    assert resp.status == 200
                    assert await resp.read() == content
                headers = {"Range": "bytes=100-199"}
                async with session.get(f"{url}/file", headers=headers) as resp:
                    assert resp.status == 206
                    assert await resp.read() == content[100:200]

        run_on(main)


def test_unix_socket(run_on) -> None:
    async def main() -> None:
        runner = web.AppRunner(make_app(), handle_signals=False)
        await runner.setup()
        with tempfile.TemporaryDirectory(prefix="ferroloop-e2e-") as tmp:
            path = os.path.join(tmp, "aiohttp.sock")
            site = web.UnixSite(runner, path)
            await site.start()
            try:
                connector = aiohttp.UnixConnector(path=path)
                async with (
                    aiohttp.ClientSession(connector=connector) as session,
                    session.get("http://localhost/?name=unix") as resp,
                ):
                    assert await resp.text() == "Hello, unix"
            finally:
                await runner.cleanup()

    run_on(main)


def test_tls(run_on) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert(HOST, "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def main() -> None:
        async with Server(ssl_context=server_ctx) as url:
            connector = aiohttp.TCPConnector(ssl=client_ctx)
            async with aiohttp.ClientSession(connector=connector) as session:
                async with session.get(f"{url}/", params={"name": "tls"}) as resp:
                    assert await resp.text() == "Hello, tls"
                async with session.get(f"{url}/big", params={"size": str(2 << 20)}) as resp:
                    assert len(await resp.read()) == 2 << 20
                async with session.ws_connect(f"{url}/ws") as ws:
                    for i in range(200):
                        await ws.send_str(f"tls {i}")
                        assert await ws.receive_str(timeout=10) == f"TLS {i}"
                    await ws.close()

    run_on(main)


RUN_APP_SOURCE = textwrap.dedent(
    """
    import asyncio
    import sys

    from aiohttp import web


    async def index(request):
        loop = asyncio.get_running_loop()
        return web.Response(text=f"{type(loop).__module__}.{type(loop).__qualname__}")


    async def on_cleanup(app):
        print("cleanup done", flush=True)


    app = web.Application()
    app.router.add_get("/", index)
    app.on_cleanup.append(on_cleanup)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
    print("run_app returned", flush=True)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_run_app_program(impl, tmp_path, sig) -> None:
    """``web.run_app`` in a script run as ``python -m ferroloop script.py`` (or plain python).

    run_app installs SIGINT/SIGTERM handlers with ``loop.add_signal_handler``; the signal
    must shut the app down gracefully (cleanup hooks run, run_app returns, exit status 0).
    """
    script = tmp_path / "app.py"
    script.write_text(RUN_APP_SOURCE)
    port = free_port()
    proc = subprocess.Popen(
        impl.script_command(str(script), str(port)), env=python_env(), cwd=tmp_path,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_for_port(port, 30, proc)
        with urllib.request.urlopen(f"http://{HOST}:{port}/", timeout=10) as resp:
            body = resp.read().decode()
        expected = {"asyncio": "asyncio.unix_events._UnixSelectorEventLoop",
                    "ferroloop": "ferroloop.loop.Loop"}[impl.name]  # fmt: skip
        assert body == expected
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
    finally:
        stop_process(proc)
    assert proc.returncode == 0, out
    assert out.splitlines()[-2:] == ["cleanup done", "run_app returned"], out
