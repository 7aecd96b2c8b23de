"""uvicorn serving a FastAPI (Starlette) app, hit by httpx -- on the loop under test.

* In-process: ``uvicorn.Server.serve()`` runs in a loop of the implementation under test and
  an ``httpx.AsyncClient`` in the same loop sends it requests: JSON, a sync endpoint (run in
  anyio's worker threads), a streaming response, request-body streaming, background tasks,
  lifespan, and a websocket (client: ``websockets``) -- for every HTTP and websocket protocol
  implementation uvicorn has installed.
* As a program: ``python -m uvicorn --loop ferroloop:new_event_loop`` (uvicorn >= 0.36 takes
  an import string of a loop factory) and ``uvicorn.run(..., loop=...)``, checked from a
  plain ``httpx.Client``; the app reports the class of the loop it runs on.
"""

from __future__ import annotations

import asyncio
import importlib.util
import signal
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

NEED = "{} is not installed: pip install -r tests/e2e/requirements.txt (make e2e)"

uvicorn = pytest.importorskip("uvicorn", reason=NEED.format("uvicorn"))
fastapi = pytest.importorskip("fastapi", reason=NEED.format("fastapi"))
httpx = pytest.importorskip("httpx", reason=NEED.format("httpx"))
pytest.importorskip("websockets", reason=NEED.format("websockets"))

from e2e_util import HOST, free_port, python_env, stop_process, wait_for_port
from fastapi import BackgroundTasks, FastAPI, Request, WebSocket
from fastapi.responses import StreamingResponse
from websockets.asyncio.client import connect as ws_connect

pytestmark = [
    # uvicorn's legacy "websockets" protocol (still tested) warns about itself and its library.
    pytest.mark.filterwarnings("ignore:The `websockets` implementation is deprecated"),
    pytest.mark.filterwarnings("ignore:websockets.legacy is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:remove second argument of ws_handler:DeprecationWarning"),
]

HTTP_IMPLS = [
    pytest.param(name, marks=pytest.mark.skipif(
        importlib.util.find_spec(module) is None, reason=f"{module} is not installed"))
    for name, module in (("h11", "h11"), ("httptools", "httptools"))
]  # fmt: skip
WS_IMPLS = [
    pytest.param(name, marks=pytest.mark.skipif(
        importlib.util.find_spec(module) is None, reason=f"{module} is not installed"))
    for name, module in (("websockets", "websockets"), ("websockets-sansio", "websockets"),
                         ("wsproto", "wsproto"))
]  # fmt: skip


def make_app() -> FastAPI:
    from contextlib import asynccontextmanager

    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        events.append("startup")
        yield {"greeting": "hello"}
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)
    app.state.events = events
    app.state.background = []

    @app.get("/")
    async def root(request: Request) -> dict:
        return {
            "greeting": request.state.greeting,
            "loop": type(asyncio.get_running_loop()).__name__,
        }

    @app.get("/items/{item_id}")
    async def item(item_id: int, q: str | None = None) -> dict:
        return {"item_id": item_id, "q": q}

    @app.get("/sync")
    def sync_endpoint() -> dict:  # runs in a worker thread (anyio.to_thread)
        return {"thread": threading.current_thread().name != "MainThread"}

    @app.get("/stream")
    async def stream(count: int = 100) -> StreamingResponse:
        async def lines():
            for i in range(count):
                yield f"line {i}\n"
                if i % 10 == 0:
                    await asyncio.sleep(0)

        return StreamingResponse(lines(), media_type="text/plain")

    @app.post("/upload")
    async def upload(request: Request) -> dict:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"size": size}

    @app.post("/later")
    async def later(tasks: BackgroundTasks) -> dict:
        async def work() -> None:
            await asyncio.sleep(0.01)
            app.state.background.append("done")

        tasks.add_task(work)
        return {"queued": True}

    @app.websocket("/ws")
    async def ws_echo(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            text = await websocket.receive_text()
            if text == "bye":
                await websocket.close(code=1000)
                return
            await websocket.send_text(text[::-1])

    return app


class InProcessServer:
    """``async with InProcessServer(app, http=..., ws=...) as url``: uvicorn in this loop."""

    def __init__(self, app, **config) -> None:
        self.config = uvicorn.Config(app, log_level="warning", lifespan="on", **config)
        self.server = uvicorn.Server(self.config)
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> str:
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when the
        # listener's proto says TCP (proto 0 would leave Nagle on: 40 ms per response).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        self.sock = sock
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self.task.done():
                self.task.result()
                raise RuntimeError("uvicorn exited before starting")
            await asyncio.sleep(0.01)
        return f"{HOST}:{sock.getsockname()[1]}"

    async def __aexit__(self, *exc_info) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 15)
        self.sock.close()


@pytest.mark.parametrize("http", HTTP_IMPLS)
def test_http(impl, run_on, http) -> None:
    app = make_app()

    async def main() -> None:
        async with InProcessServer(app, http=http, ws="none") as addr:  # noqa: SIM117
            async with httpx.AsyncClient(base_url=f"http://{addr}", timeout=10) as client:
                resp = await client.get("/")
                assert resp.json() == {"greeting": "hello", "loop": impl.loop_class.__name__}
                resp = await client.get("/items/42", params={"q": "x"})
                assert resp.json() == {"item_id": 42, "q": "x"}
                assert (await client.get("/items/nope")).status_code == 422
                assert (await client.get("/sync")).json() == {"thread": True}

                results = await asyncio.gather(*(client.get(f"/items/{i}") for i in range(300)))
                assert [r.json()["item_id"] for r in results] == list(range(300))

                async with client.stream("GET", "/stream", params={"count": 1000}) as resp:
                    assert resp.headers.get("transfer-encoding") == "chunked"
                    lines = [line async for line in resp.aiter_lines()]
                assert lines == [f"line {i}" for i in range(1000)]

                async def body():
                    for _ in range(64):
                        yield b"x" * 16384

                resp = await client.post("/upload", content=body())
                assert resp.json() == {"size": 64 * 16384}

                assert (await client.post("/later")).json() == {"queued": True}
                for _ in range(100):
                    if app.state.background:
                        break
                    await asyncio.sleep(0.01)
                assert app.state.background == ["done"]
        assert app.state.events == ["startup", "shutdown"]

    run_on(main)


@pytest.mark.parametrize("ws", WS_IMPLS)
def test_websocket(run_on, ws) -> None:
    async def main() -> None:
        async with InProcessServer(make_app(), http="h11", ws=ws) as addr:  # noqa: SIM117
            async with ws_connect(f"ws://{addr}/ws") as conn:
                for i in range(2000):
                    await conn.send(f"abc {i}")
                    assert await conn.recv() == f"abc {i}"[::-1]
                await conn.send("bye")
                await conn.wait_closed()
                assert conn.close_code == 1000

    run_on(main)


def test_graceful_shutdown_with_open_connection(run_on) -> None:
    """``should_exit`` while a keep-alive connection is idle: uvicorn closes it and exits."""

    async def main() -> None:
        server = InProcessServer(make_app(), http="h11", ws="none")
        addr = await server.__aenter__()
        host, port = addr.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET /items/1 HTTP/1.1\r\nHost: {addr}\r\n\r\n".encode())
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        await server.__aexit__(None, None, None)
        rest = await asyncio.wait_for(reader.read(), 10)  # the server closed its end
        assert b"item_id" in rest
        writer.close()
        await writer.wait_closed()

    run_on(main)


# --------------------------------------------------------------------------- as a program

APP_SOURCE = textwrap.dedent(
    """
    import asyncio, sys

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        loop = asyncio.get_running_loop()
        body = ("%s.%s" % (type(loop).__module__, type(loop).__qualname__)).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})

    if __name__ == "__main__":
        import uvicorn
        uvicorn.run("e2e_asgi_app:app", host=sys.argv[1], port=int(sys.argv[2]),
                    loop=sys.argv[3], log_level="warning")
    """
)

LOOP_SETTINGS = {
    # impl name -> (uvicorn loop setting, the class the app must report)
    "asyncio": ("asyncio", "asyncio.unix_events._UnixSelectorEventLoop"),
    "ferroloop": ("ferroloop:new_event_loop", "ferroloop.loop.Loop"),
}


def _serve_and_get(cmd: list[str], port: int, cwd) -> str:
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=python_env(PYTHONPATH=str(cwd)), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        try:
            wait_for_port(port, 30, proc)
        except (RuntimeError, TimeoutError):
            stop_process(proc)
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"uvicorn did not start: {out[-2000:]}") from None
        with httpx.Client(timeout=10) as client:
            texts = {client.get(f"http://{HOST}:{port}/").text for _ in range(20)}
        assert len(texts) == 1
        return texts.pop()
    finally:
        stop_process(proc)  # SIGTERM: uvicorn shuts down gracefully
        # uvicorn >= 0.29 re-raises the signal it caught once it has shut down.
        assert proc.returncode in (0, -signal.SIGTERM), (
            proc.stdout.read().decode(errors="replace")[-2000:] if proc.stdout else ""
        )


@pytest.mark.parametrize("how", ["cli", "uvicorn.run"])
def test_loop_setting(impl, tmp_path, how) -> None:
    (tmp_path / "e2e_asgi_app.py").write_text(APP_SOURCE)
    setting, expected = LOOP_SETTINGS[impl.name]
    port = free_port()
    if how == "cli":
        cmd = [sys.executable, "-m", "uvicorn", "--host", HOST, "--port", str(port),
               "--loop", setting, "--log-level", "warning", "e2e_asgi_app:app"]  # fmt: skip
    else:
        cmd = [sys.executable, "e2e_asgi_app.py", HOST, str(port), setting]
    assert _serve_and_get(cmd, port, tmp_path) == expected


def test_multiple_workers(impl, tmp_path) -> None:
    """``--workers 2``: each spawned worker process builds its loop from the import string."""
    (tmp_path / "e2e_asgi_app.py").write_text(APP_SOURCE)
    setting, expected = LOOP_SETTINGS[impl.name]
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "--host", HOST, "--port", str(port), "--workers", "2",
           "--loop", setting, "--log-level", "warning", "e2e_asgi_app:app"]  # fmt: skip
    assert _serve_and_get(cmd, port, tmp_path) == expected


def test_config_reports_factory(impl) -> None:
    """``uvicorn.Config(loop=...).get_loop_factory()`` hands back ferroloop's factory."""
    setting, _ = LOOP_SETTINGS[impl.name]
    config = uvicorn.Config("e2e_asgi_app:app", loop=setting)
    factory = config.get_loop_factory()
    loop = factory()
    try:
        assert isinstance(loop, impl.loop_class)
    finally:
        loop.close()


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")
def test_starlette_testclient(impl) -> None:
    """Starlette's TestClient runs the app in an anyio portal thread on the given loop."""
    from starlette.testclient import TestClient

    app = make_app()
    options = {"loop_factory": impl.new_event_loop}
    with TestClient(app, backend_options=options) as client:
        assert client.get("/").json() == {"greeting": "hello", "loop": impl.loop_class.__name__}
        assert client.get("/sync").json() == {"thread": True}
        assert client.get("/stream", params={"count": 3}).text == "line 0\nline 1\nline 2\n"
        with client.websocket_connect("/ws") as ws:
            ws.send_text("hello")
            assert ws.receive_text() == "olleh"
            ws.send_text("bye")
    assert app.state.events == ["startup", "shutdown"]
