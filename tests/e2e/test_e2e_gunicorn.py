"""gunicorn with the worker classes of ``ferroloop_workers.py`` (and stock ones, as reference).

gunicorn (the arbiter) starts in a subprocess on a free port of 127.0.0.1 with two worker
processes; the app in each worker reports the class of the loop it runs on.  Requests come
from ``httpx``; SIGTERM must shut every worker down gracefully (exit status 0) -- the aiohttp
worker stops through ``loop.add_signal_handler``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

NEED = "{} is not installed: pip install -r tests/e2e/requirements.txt (make e2e)"

pytest.importorskip("gunicorn", reason=NEED.format("gunicorn"))
httpx = pytest.importorskip("httpx", reason=NEED.format("httpx"))

from e2e_util import HOST, free_port, python_env, stop_process, wait_for_port

APP_SOURCE = textwrap.dedent(
    """
    import asyncio
    import os


    def loop_name():
        loop = asyncio.get_running_loop()
        return f"{type(loop).__module__}.{type(loop).__qualname__}"


    async def make_aiohttp_app():
        from aiohttp import web

        async def index(request):
            await asyncio.sleep(0)
            return web.Response(text=f"{loop_name()} {os.getpid()}")

        app = web.Application()
        app.router.add_get("/", index)
        return app


    async def asgi_app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = f"{loop_name()} {os.getpid()}".encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})
    """
)

#: (stack, impl) -> (worker class, app, the loop class the app must report)
CASES = {
    ("aiohttp", "asyncio"): (
        "aiohttp.worker.GunicornWebWorker",
        "make_aiohttp_app",
        "asyncio.unix_events._UnixSelectorEventLoop",
    ),
    ("aiohttp", "ferroloop"): (
        "ferroloop_workers.GunicornFerroloopWebWorker",
        "make_aiohttp_app",
        "ferroloop.loop.Loop",
    ),
    ("uvicorn", "asyncio"): (
        "uvicorn_worker.UvicornH11Worker",  # loop="asyncio"
        "asgi_app",
        "asyncio.unix_events._UnixSelectorEventLoop",
    ),
    ("uvicorn", "ferroloop"): (
        "ferroloop_workers.FerroloopUvicornWorker",
        "asgi_app",
        "ferroloop.loop.Loop",
    ),
}


@pytest.mark.parametrize("stack", ["aiohttp", "uvicorn"])
def test_gunicorn_workers(impl, tmp_path, stack) -> None:
    pytest.importorskip(stack, reason=NEED.format(stack))
    if stack == "uvicorn":
        pytest.importorskip("uvicorn_worker", reason=NEED.format("uvicorn_worker"))
    worker, app, expected = CASES[(stack, impl.name)]
    (tmp_path / "e2e_gunicorn_app.py").write_text(APP_SOURCE)
    port = free_port()
    cmd = [sys.executable, "-m", "gunicorn", "--bind", f"{HOST}:{port}", "--workers", "2",
           "--worker-class", worker, "--graceful-timeout", "10", "--log-level", "warning",
           f"e2e_gunicorn_app:{app}"]  # fmt: skip
    env = python_env()
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    output = ""
    try:
        try:
            wait_for_port(port, 30, proc)
        except (RuntimeError, TimeoutError) as exc:
            stop_process(proc)
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"gunicorn did not start ({exc}): {out[-3000:]}") from None
        answers = set()
        with httpx.Client(timeout=10) as client:
            for _ in range(200):  # new connections: spread over both workers
                resp = client.get(f"http://{HOST}:{port}/", headers={"Connection": "close"})
                assert resp.status_code == 200
                answers.add(resp.text)
        loops = {text.split()[0] for text in answers}
        assert loops == {expected}
    finally:
        stop_process(proc, timeout=30)  # SIGTERM: graceful shutdown of the arbiter
        output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    assert proc.returncode == 0, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
