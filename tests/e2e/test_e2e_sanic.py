"""Sanic on ferroloop: in the loop under test, and as a program with two worker processes.

Sanic picks its loop itself: unless ``config.USE_UVLOOP`` is ``False``, every process it
runs (the manager and each worker) calls ``sanic.server.loop.try_use_uvloop()``, which
installs uvloop's event loop policy -- and uvloop is a dependency of Sanic on Linux -- before
the worker makes its loop with ``asyncio.new_event_loop()``.  So ferroloop runs Sanic with
two lines at the top of the app's module (which every worker imports again):
``ferroloop.install()`` and ``app.config.USE_UVLOOP = False`` (see tests/e2e/README.md).

``test_in_loop``
    ``app.create_server(..., return_asyncio_server=True)`` on the loop under test, driven
    by ``httpx`` (JSON routes, 100 concurrent requests, request bodies, a streamed
    response) and ``aiohttp`` (a websocket route).
``test_workers``
    a small Sanic program in a subprocess with ``workers=2``; its route reports its loop
    class and pid until both workers have answered, then SIGTERM must stop it cleanly
    (exit status 0, no traceback).  The ``asyncio`` variant runs the same program
    on the stdlib loop (``USE_UVLOOP = False`` alone).
``test_uvloop_wins_by_default``
    the pitfall: with the loop's policy installed but ``USE_UVLOOP`` left alone, Sanic's
    workers run on uvloop, whatever was installed before (stopped by SIGINT).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import signal
import subprocess
import sys
import textwrap
import time

import pytest

NEED = "{} is not installed: pip install -r tests/e2e/requirements.txt (make e2e)"

sanic = pytest.importorskip("sanic", reason=NEED.format("sanic"))
httpx = pytest.importorskip("httpx", reason=NEED.format("httpx"))
aiohttp = pytest.importorskip("aiohttp", reason=NEED.format("aiohttp"))

from e2e_util import HOST, free_port, python_env, stop_process, wait_for_port

_app_names = itertools.count()

LOOP_CLASSES = {
    "asyncio": "asyncio.unix_events._UnixSelectorEventLoop",
    "ferroloop": "ferroloop.loop.Loop",
}


def loop_name() -> str:
    loop = asyncio.get_running_loop()
    return f"{type(loop).__module__}.{type(loop).__qualname__}"


def make_app(impl) -> sanic.Sanic:
    from sanic import response

    app = sanic.Sanic(f"e2e_sanic_{impl.name}_{next(_app_names)}")
    app.config.ACCESS_LOG = False
    # TouchUp rewrites Sanic's own modules when an app starts: once per process, so a
    # second app started in the same process (the other loop's test) fails with KeyError.
    app.config.TOUCHUP = False

    @app.get("/json")
    async def json_route(request):
        await asyncio.sleep(0)
        return response.json({"loop": loop_name(), "n": int(request.args.get("n", "0"))})

    @app.post("/echo")
    async def echo(request):
        return response.raw(request.body, headers={"x-length": str(len(request.body))})

    @app.get("/stream")
    async def stream(request):
        resp = await request.respond(content_type="text/plain")
        for i in range(200):
            await resp.send(f"chunk {i}\n")
            if i % 50 == 0:
                await asyncio.sleep(0.001)
        await resp.eof()

    @app.websocket("/ws")
    async def ws_route(request, ws):
        async for message in ws:
            if isinstance(message, bytes):
                await ws.send(message[::-1])
            elif message == "close":
                await ws.close(code=4001, reason="bye")
                return
            else:
                await ws.send(message.upper())

    return app


def test_in_loop(impl, run_on) -> None:
    app = make_app(impl)

    async def main() -> None:
        port = free_port()
        server = await app.create_server(host=HOST, port=port, return_asyncio_server=True)
        assert server is not None
        await server.startup()
        try:
            await server.before_start()
            await server.after_start()
            assert server.is_serving()
            base = f"http://{HOST}:{port}"
            async with httpx.AsyncClient(base_url=base, timeout=20) as client:
                resp = await client.get("/json", params={"n": 1})
                assert resp.status_code == 200
                assert resp.json() == {"loop": LOOP_CLASSES[impl.name], "n": 1}

                async def get(n: int) -> int:
                    r = await client.get("/json", params={"n": n})
                    return r.json()["n"]

                got = await asyncio.gather(*(get(n) for n in range(100)))
                assert got == list(range(100))

                body = bytes(range(256)) * 4096  # 1 MiB
                resp = await client.post("/echo", content=body)
                assert resp.content == body
                assert resp.headers["x-length"] == str(len(body))

                async with client.stream("GET", "/stream") as resp:
                    assert resp.headers.get("transfer-encoding") == "chunked"
                    text = "".join([chunk async for chunk in resp.aiter_text()])
                assert text == "".join(f"chunk {i}\n" for i in range(200))

                assert (await client.get("/missing")).status_code == 404

            async with aiohttp.ClientSession() as session, session.ws_connect(f"{base}/ws") as ws:
                for i in range(100):
                    await ws.send_str(f"hello {i}")
                    assert (await ws.receive_str(timeout=10)) == f"HELLO {i}"
                await ws.send_bytes(b"\x00\x01\x02" * 1000)
                assert (await ws.receive_bytes(timeout=10)) == b"\x02\x01\x00" * 1000
                await ws.send_str("close")
                msg = await ws.receive(timeout=10)
                assert msg.type is aiohttp.WSMsgType.CLOSE
                assert (msg.data, msg.extra) == (4001, "bye")
        finally:
            await server.before_stop()
            await server.close()
            await server.after_stop()
        assert not server.is_serving()

    try:
        run_on(main)
    finally:
        sanic.Sanic.unregister_app(app)


#: The program of test_workers: E2E_LOOP is "ferroloop" (the recipe of tests/e2e/README.md),
#: "asyncio" (the stdlib loop), or "ferroloop-default"/"asyncio-default" (USE_UVLOOP untouched).
WORKERS_APP = textwrap.dedent(
    """
    import asyncio
    import os
    import sys
    import time

    from sanic import Sanic, response

    LOOP = os.environ["E2E_LOOP"]
    if LOOP.startswith("ferroloop"):
        import ferroloop

        ferroloop.install()  # module level: runs in the main process and in every worker

    app = Sanic("e2e_sanic_workers")
    if not LOOP.endswith("-default"):
        app.config.USE_UVLOOP = False  # else Sanic installs uvloop's policy in each worker
    app.config.ACCESS_LOG = False


    @app.get("/")
    async def index(request):
        # Block this worker's loop a moment, so that the other worker accepts the next
        # connections (they share one listening socket).
        time.sleep(float(request.args.get("block", "0")))
        loop = asyncio.get_running_loop()
        name = f"{type(loop).__module__}.{type(loop).__qualname__}"
        policy = type(asyncio.get_event_loop_policy()).__module__
        return response.json({"loop": name, "pid": os.getpid(), "policy": policy})


    if __name__ == "__main__":
        app.run(host="127.0.0.1", port=int(sys.argv[1]), workers=2, motd=False)
    """
)


def run_workers(tmp_path, loop_setting: str, sig: int) -> tuple[set[str], set[int], str, int]:
    """Run WORKERS_APP with 2 workers; (loop classes, worker pids, output, exit status)."""
    script = tmp_path / "e2e_sanic_workers.py"
    script.write_text(WORKERS_APP)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port)], cwd=tmp_path,
        env=python_env(E2E_LOOP=loop_setting), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    loops: set[str] = set()
    pids: set[int] = set()
    try:
        try:
            wait_for_port(port, 60, proc)
        except (RuntimeError, TimeoutError) as exc:
            stop_process(proc)
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"sanic did not start ({exc}): {out[-3000:]}") from None

        def get(_: int) -> dict:
            url = f"http://{HOST}:{port}/?block=0.05"
            resp = httpx.get(url, headers={"Connection": "close"}, timeout=10)
            assert resp.status_code == 200
            return resp.json()

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for _ in range(20):  # rounds of 8 concurrent requests, until both workers answered
                for data in pool.map(get, range(8)):
                    loops.add(data["loop"])
                    pids.add(data["pid"])
                if len(pids) == 2:
                    break
        # Both workers serve, so both have sent their ACK; but the manager notices that by
        # polling (every 0.1 s), and a signal that comes before it has (Sanic's
        # WorkerManager.wait_for_ack re-queues the shutdown message while the stopping
        # workers never count as acknowledged) makes it spin forever.  Give it that time.
        time.sleep(1.0)
    finally:
        stop_process(proc, sig, timeout=30)
        output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        if proc.stdout:
            proc.stdout.close()
    return loops, pids, output, proc.returncode


def run_workers_settled(
    tmp_path, loop_setting: str, sig: int
) -> tuple[set[str], set[int], str, int]:
    """run_workers, once more if the first run's shutdown failed.

    Sanic's multi-worker shutdown is racy on any loop: besides the early-signal spin
    above, a worker can keep its listening socket's reader after Sanic shut the socket
    down and spin on accept() (EINVAL) until the manager is killed (seen once on the
    stdlib loop, Python 3.13), and a SIGINT that lands while the manager reads its shared
    worker-state dict desynchronises that proxy's connection (`'NoneType' object is not a
    mapping`; seen once with uvloop in the workers, on a loaded machine). One more whole
    run is allowed; the caller's assertions apply to it in full.
    """
    for attempt in range(2):
        run_dir = tmp_path / str(attempt)
        run_dir.mkdir()
        loops, pids, output, status = run_workers(run_dir, loop_setting, sig)
        if status == 0 and "Traceback" not in output:
            break
    return loops, pids, output, status


def test_workers(impl, tmp_path) -> None:
    loops, pids, output, status = run_workers_settled(tmp_path, impl.name, signal.SIGTERM)
    assert len(pids) == 2, (pids, output[-3000:])
    assert loops == {LOOP_CLASSES[impl.name]}, output[-3000:]
    assert status == 0, output[-4000:]
    assert "Traceback" not in output, output[-4000:]


def test_uvloop_wins_by_default(impl, tmp_path) -> None:
    pytest.importorskip("uvloop", reason="Sanic installs uvloop only on Linux (and macOS)")
    loops, pids, output, status = run_workers_settled(
        tmp_path, f"{impl.name}-default", signal.SIGINT
    )
    assert len(pids) == 2, (pids, output[-3000:])
    assert loops == {"uvloop.Loop"}, output[-3000:]
    assert status == 0, output[-4000:]
