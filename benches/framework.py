"""Framework benchmarks: real web frameworks serving ``Hello, World!`` under a fixed load.

Run ``python benches/framework.py`` to compare ferroloop with the stdlib asyncio loop and
uvloop (``--loops`` also takes ``rloop``); the other options are those of every family
(``--help``, ``--workloads``, ``--quick``, ``--repeat``, ``--json PATH``, ...; see
``_common.py``).  Needs the frameworks: ``pip install -r tests/e2e/requirements.txt``; a
workload whose framework is missing gets an error cell naming it.

Workloads (``n`` is the load's duration in seconds):

``aiohttp_hello``
    ``aiohttp.web`` (``AppRunner`` + ``TCPSite``, access log off) answering ``GET /`` with
    a ``text/plain`` ``Hello, World!``.
``uvicorn_hello``
    ``uvicorn.Server`` (httptools if installed, else h11; access log off) serving a bare ASGI
    app that sends ``Hello, World!``.
``starlette_hello``
    the same server with a Starlette app (routing, ``PlainTextResponse``): a typical stack.
``*_cpu``
    the same three under the same load, counted per second of the **server process's CPU
    time** instead of wall time: the server's efficiency, which a busy machine (or a load
    client sharing its two cores) distorts far less than requests per wall-clock second.

The server runs on the loop under test in the benchmark's worker process; the load comes
from a separate process that is the same for every loop: ``wrk`` (``CONNECTIONS``
keep-alive connections, one thread) if it is on ``PATH``, else this script's own load
client (``--_http-client``: one process, plain non-blocking sockets and ``selectors``).
Set ``FERROLOOP_BENCH_HTTP_CLIENT`` to ``wrk`` or ``python`` to force one.  One operation is
one request as counted by the load client; the figure is requests per second.

Each cell also reports the CPU use of the load client and of the server process over the
run (``client_cpu``/``server_cpu``, per cent of one CPU).  The server is single-threaded
Python: at ~100% ``server_cpu`` with ``client_cpu`` well below 100% the server -- framework
plus loop -- is the bottleneck, not the load client; a cell whose client used >= 90% of a
CPU is flagged ``bound=load-client``.  ``--client-ceiling`` measures what the load client
does against a trivial server (a raw ``asyncio.Protocol`` on uvloop) for comparison.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from _common import Measured, Workload, main  # the script's own folder is first on sys.path
from net import HTTP_CONNECTIONS, WRK_THREADS, http_client_kind, run_load_client

HOST = "127.0.0.1"
#: Concurrent keep-alive connections of the load client (net.py's, which runs it).
CONNECTIONS = HTTP_CONNECTIONS
#: Load-client CPU use (fraction of one CPU) from which a cell is flagged ``bound=load-client``.
CLIENT_BOUND = 0.9
BODY = b"Hello, World!"
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

# --------------------------------------------------------------------------- load client


def _client_description() -> str:
    if http_client_kind() == "wrk":
        return f"wrk -t{WRK_THREADS} -c{CONNECTIONS}"
    return f"python selectors load client, {CONNECTIONS} connections"


def _response_length(buffer: bytes) -> int:
    """Length of the first complete response in ``buffer`` (0 if incomplete)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return 0
    head = buffer[:end].lower()
    if not head.startswith(b"http/1.1 200 "):
        raise ValueError(f"unexpected response: {bytes(buffer[:60])!r}")
    start = head.find(b"\r\ncontent-length:")
    if start < 0:
        raise ValueError("response without Content-Length")
    stop = head.find(b"\r\n", start + 2)
    length = int(head[start + 17 : stop if stop >= 0 else len(head)])
    total = end + 4 + length
    return total if len(buffer) >= total else 0


def http_load_client(port: int, connections: int, seconds: float) -> dict[str, Any]:
    """The fallback load client: keep-alive GETs on ``connections`` sockets for ``seconds``.

    One request in flight per connection (like wrk); a response is complete when its
    ``Content-Length`` body has arrived.  Single-threaded ``selectors`` loop, no asyncio.
    """
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(connections):
        sock = socket.create_connection((HOST, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        socks.append(sock)
        sel.register(sock, selectors.EVENT_READ, bytearray())
    errors = 0
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    for sock in socks:
        sock.send(REQUEST)
    while (left := deadline - time.perf_counter()) > 0:
        for key, _ in sel.select(left):
            sock, buffer = key.fileobj, key.data
            data = sock.recv(65536)  # type: ignore[union-attr]
            if not data:
                errors += 1
                sel.unregister(sock)
                continue
            buffer += data
            try:
                while size := _response_length(buffer):
                    del buffer[:size]
                    done += 1
                    sock.send(REQUEST)  # type: ignore[union-attr]
            except ValueError:
                errors += 1
                sel.unregister(sock)
    elapsed = time.perf_counter() - start
    for sock in socks:
        sock.close()
    sel.close()
    return {"requests": done, "seconds": elapsed, "errors": errors}


# --------------------------------------------------------------------------- servers


def _serve_under_load(
    loop: asyncio.AbstractEventLoop,
    seconds: int,
    start: Callable[[], Any],
    per_cpu: bool = False,
) -> Measured:
    """Start a server with ``await start()`` -> ``(port, stop)``, load it, return the figures.

    The rate is requests per second of wall time, or with ``per_cpu`` per second of the
    server process's CPU time (its efficiency, less sensitive to a busy machine).
    """
    result: dict[str, Any] = {}

    async def main_coro() -> None:
        port, stop = await start()
        finished = loop.create_future()

        def drive() -> None:
            # A plain thread waits for the load client process; it holds no GIL meanwhile.
            try:
                result["value"] = run_load_client(port, seconds, None, os.path.abspath(__file__))
            except BaseException as exc:  # noqa: BLE001 - handed to the loop below
                result["error"] = exc
            loop.call_soon_threadsafe(finished.set_result, None)

        usage = resource.getrusage(resource.RUSAGE_SELF)
        thread = threading.Thread(target=drive, name="load-client")
        thread.start()
        await finished
        thread.join()
        after = resource.getrusage(resource.RUSAGE_SELF)
        result["server_cpu_s"] = (after.ru_utime - usage.ru_utime) + (
            after.ru_stime - usage.ru_stime
        )
        await stop()

    loop.run_until_complete(main_coro())
    if "error" in result:
        raise result["error"]
    value = result["value"]
    requests, elapsed = int(value["requests"]), float(value["seconds"])
    if requests <= 0:
        raise AssertionError("the load client completed no request")
    client_s, server_s = value["client_cpu_s"], result["server_cpu_s"]
    info = {
        "client_cpu": f"{100 * client_s / elapsed:.0f}%",
        "server_cpu": f"{100 * server_s / elapsed:.0f}%",
        "server_us_per_req": f"{1e6 * server_s / requests:.1f}",
    }
    if client_s / elapsed >= CLIENT_BOUND:
        info["bound"] = "load-client"
    return Measured(requests, server_s if per_cpu else elapsed, info)


def aiohttp_hello(loop: asyncio.AbstractEventLoop, n: int, per_cpu: bool = False) -> Measured:
    """aiohttp.web answering ``GET /`` with ``Hello, World!`` (access log off)."""
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="text/plain")

    async def start():
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0, backlog=1024)
        await site.start()
        return runner.addresses[0][1], runner.cleanup

    return _serve_under_load(loop, n, start, per_cpu)


async def _asgi_hello(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({
        "type": "http.response.start", "status": 200,
        "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": BODY})


def _uvicorn(loop: asyncio.AbstractEventLoop, n: int, app: Any, per_cpu: bool) -> Measured:
    import importlib.util

    import uvicorn

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"

    async def start():
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, http=http, ws="none", lifespan="on",
            backlog=1024,
        )  # fmt: skip
        server = uvicorn.Server(config)
        # proto=IPPROTO_TCP so that accepted sockets get TCP_NODELAY, as with a server
        # uvicorn binds itself (asyncio checks the socket's proto).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        # serve() swaps in its own SIGINT/SIGTERM handlers with signal.signal(); fine here.
        task = loop.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn exited before starting")
            await asyncio.sleep(0.01)

        async def stop() -> None:
            server.should_exit = True
            await asyncio.wait_for(task, 15)
            sock.close()

        return sock.getsockname()[1], stop

    return _serve_under_load(loop, n, start, per_cpu)


def uvicorn_hello(loop: asyncio.AbstractEventLoop, n: int, per_cpu: bool = False) -> Measured:
    """uvicorn (httptools if installed) serving a bare ASGI ``Hello, World!`` app."""
    return _uvicorn(loop, n, _asgi_hello, per_cpu)


def starlette_hello(loop: asyncio.AbstractEventLoop, n: int, per_cpu: bool = False) -> Measured:
    """uvicorn serving a Starlette app: one route, ``PlainTextResponse``."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request) -> PlainTextResponse:
        return PlainTextResponse("Hello, World!")

    return _uvicorn(loop, n, Starlette(routes=[Route("/", hello)]), per_cpu)


# --------------------------------------------------------------------------- ceiling


class _RawHello(asyncio.Protocol):
    RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n" + BODY

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(self.RESPONSE * data.count(b"\r\n\r\n"))


def client_ceiling(seconds: int) -> int:
    """Print what the load client achieves against a raw asyncio.Protocol server on uvloop.

    The frameworks are far slower than this; a framework cell close to it would be measuring
    the load client rather than the server.
    """
    try:
        import uvloop

        loop = uvloop.new_event_loop()
        name = "uvloop"
    except ImportError:
        loop = asyncio.new_event_loop()
        name = "asyncio"

    async def start():
        server = await loop.create_server(_RawHello, HOST, 0, backlog=1024)

        async def stop() -> None:
            server.close()
            await server.wait_closed()

        return server.sockets[0].getsockname()[1], stop

    try:
        measured = _serve_under_load(loop, seconds, start)
    finally:
        loop.close()
    info = " ".join(f"{k}={v}" for k, v in (measured.info or {}).items())
    print(
        f"{_client_description()} against a raw Protocol server on {name}: "
        f"{measured.ops / measured.seconds:,.0f} requests/s over {measured.seconds:.1f} s; {info}"
    )
    return 0


def _per_cpu(fn: Callable[..., Measured]) -> Callable[[asyncio.AbstractEventLoop, int], Measured]:
    def run(loop: asyncio.AbstractEventLoop, n: int) -> Measured:
        return fn(loop, n, per_cpu=True)

    return run


_CPU_DOC = "the same load; requests per second of the server process's CPU time"
WORKLOADS = [
    # n is the load duration in seconds (wrk takes whole seconds).
    Workload("aiohttp_hello", aiohttp_hello, 3, 1, aiohttp_hello.__doc__),
    Workload("uvicorn_hello", uvicorn_hello, 3, 1, uvicorn_hello.__doc__),
    Workload("starlette_hello", starlette_hello, 3, 1, starlette_hello.__doc__),
    Workload("aiohttp_hello_cpu", _per_cpu(aiohttp_hello), 3, 1, _CPU_DOC),
    Workload("uvicorn_hello_cpu", _per_cpu(uvicorn_hello), 3, 1, _CPU_DOC),
    Workload("starlette_hello_cpu", _per_cpu(starlette_hello), 3, 1, _CPU_DOC),
]
DEFAULT_LOOPS = "ferroloop,asyncio,uvloop"


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--_http-client"]:
        port, conns, secs = int(argv[1]), int(argv[2]), float(argv[3])
        print("@@HTTP-CLIENT@@ " + json.dumps(http_load_client(port, conns, secs)), flush=True)
        raise SystemExit(0)
    if argv[:1] == ["--client-ceiling"]:
        raise SystemExit(client_ceiling(int(argv[1]) if len(argv) > 1 else 3))
    if "--_worker" not in argv and "--list" not in argv:
        if not any(a == "--loops" or a.startswith("--loops=") for a in argv):
            argv = ["--loops", DEFAULT_LOOPS, *argv]
        print(f"load client: {_client_description()}", flush=True)
    raise SystemExit(main("framework", WORKLOADS, __file__, argv))
