"""Network benchmarks: TCP and UDP echo over 127.0.0.1 and a small HTTP/1.1 server under load.

Run ``python benches/net.py`` to compare ferroloop with the stdlib asyncio loop, uvloop
and rloop; the options are those of every family (``--help``, ``--loops``, ``--workloads``,
``--quick``, ``--json PATH``, ...; see ``_common.py``).

Echo workloads (``sock_echo_1k``, ``streams_echo_*``, ``protocol_echo_*``): the echo
server **and** its clients run on the loop under test, in one process, over real TCP
sockets on 127.0.0.1 (``TCP_NODELAY`` on both ends).  ``CONNECTIONS`` clients each do
ping-pong -- send one message, wait until all of it has come back, send the next -- so
each round trip is four socket operations on the loop (the client's send, the server's
receive and send, the client's receive), and nothing but the loop and the kernel's loopback
is measured: there is no outside client to saturate.  One operation is one message's round
trip.  Connecting and closing are not timed.

``udp_echo``: the same shape over UDP -- a datagram echo server and ``CONNECTIONS``
connected clients, each with one 100-byte datagram in flight; one operation is one
datagram's round trip.

``http_hello``: a minimal HTTP/1.1 keep-alive server (an ``asyncio.Protocol`` that splits
requests on ``\\r\\n\\r\\n`` and answers each with a fixed ``Hello, World!`` response) runs
on the loop under test; the load comes from a separate process that is the same for every
loop: ``wrk`` (``HTTP_CONNECTIONS`` connections, ``WRK_THREADS`` thread, ``n`` seconds) if it
is on ``PATH``, else this script's own load client (``--_http-client``: one process, plain
non-blocking sockets and ``selectors``, no event loop).  Set ``FERROLOOP_BENCH_HTTP_CLIENT``
to ``wrk`` or ``python`` to force one.  One operation is one request; the figure is
requests per second as counted by the load client.

The ``http_hello`` cell also reports, for its best run, the CPU use of the load client and
of the server process (``client_cpu``/``server_cpu``, in per cent of one CPU, from
``getrusage``) and the server's CPU time per request (``server_us_per_req``, which still
compares loops that the load client holds to the same rate).  A client at
``CLIENT_BOUND`` or more is flagged ``bound=load-client``: the figure is then the client's
limit, not the loop's.  Two sides about half busy each are flagged ``bound=shared-cpu``:
they shared a CPU, with another process or (unpinned, see ``http_placement``) each other.
``net.py --http-ceiling [SECONDS]`` runs the same load against ``http_ceiling.c`` (the same
server in C, compiled with ``cc``) and prints the same figures: the most the load client
can drive here.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from _common import Measured, Workload, main  # the script's own folder is first on sys.path

HOST = "127.0.0.1"
#: Concurrent client connections of the echo workloads.
CONNECTIONS = 8
#: Load of ``http_hello``: concurrent keep-alive connections, and wrk's thread count.
HTTP_CONNECTIONS = 50
WRK_THREADS = 1
#: Load-client CPU use (fraction of one CPU) from which an ``http_hello`` cell is flagged as
#: limited by the load client (``bound=load-client``) rather than by the server.
CLIENT_BOUND = 0.9
#: Client + server CPU use (fraction of one CPU) up to which, both sides being well below
#: one CPU each, the two processes are taken to have shared a CPU (``bound=shared-cpu``).
SHARED_CPU = 1.15

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

# wrk's Lua hook: print the raw counts (requests, duration in us, errors) in one line.
WRK_SCRIPT = """\
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("@@WRK@@ %d %d %d %d %d %d %d\\n", summary.requests,
    summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def _nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _message(size: int) -> bytes:
    return bytes(i & 0xFF for i in range(size))


class _Countdown:
    """A future that resolves once ``count()`` has been called ``n`` times."""

    def __init__(self, loop: asyncio.AbstractEventLoop, n: int) -> None:
        self.left = n
        self.done = loop.create_future()
        if n <= 0:
            self.done.set_result(None)

    def count(self) -> None:
        self.left -= 1
        if self.left == 0 and not self.done.done():
            self.done.set_result(None)


async def _server_side_closed(
    closed: _Countdown, transports: list[asyncio.BaseTransport]
) -> dict[str, str] | None:
    """Wait for the server side of every echo connection to see its client's close.

    rloop 0.5 does not close a client's socket on ``transport.close()``, so its server
    never sees EOF: then the server transports are aborted (teardown is not timed) and the
    cell carries a note instead of failing.
    """
    await asyncio.wait([closed.done], timeout=1.0)
    if closed.done.done():
        return None
    for transport in transports:
        if not transport.is_closing():
            transport.abort()
    await asyncio.wait_for(closed.done, 5)
    return {"note": "server saw no EOF after the client's close(); aborted"}


# --------------------------------------------------------------------------- sock_* echo


def _sock_echo(loop: asyncio.AbstractEventLoop, n: int, size: int) -> Measured:
    """``CONNECTIONS`` clients ping-pong ``size``-byte messages through ``loop.sock_*``."""
    per_conn = max(1, n // CONNECTIONS)
    msg = _message(size)

    async def serve(conn: socket.socket) -> None:
        with conn:
            while data := await loop.sock_recv(conn, 65536):
                await loop.sock_sendall(conn, data)

    async def client(sock: socket.socket) -> None:
        for _ in range(per_conn):
            await loop.sock_sendall(sock, msg)
            got = 0
            while got < size:
                data = await loop.sock_recv(sock, 65536)
                if not data:
                    raise ConnectionError("echo server closed the connection")
                got += len(data)
            if got != size:
                raise AssertionError(f"echoed {got} bytes, sent {size}")

    async def main_coro() -> float:
        with socket.create_server((HOST, 0), backlog=CONNECTIONS) as listener:
            listener.setblocking(False)
            clients = []
            servers = []
            for _ in range(CONNECTIONS):
                sock = socket.socket()
                sock.setblocking(False)
                _nodelay(sock)
                await loop.sock_connect(sock, listener.getsockname())
                conn, _ = await loop.sock_accept(listener)
                conn.setblocking(False)
                _nodelay(conn)
                clients.append(sock)
                servers.append(loop.create_task(serve(conn)))
            start = time.perf_counter()
            await asyncio.gather(*(client(sock) for sock in clients))
            elapsed = time.perf_counter() - start
            for sock in clients:
                sock.close()
            await asyncio.wait_for(asyncio.gather(*servers), 10)
            return elapsed

    elapsed = loop.run_until_complete(main_coro())
    return Measured(per_conn * CONNECTIONS, elapsed)


def sock_echo_1k(loop: asyncio.AbstractEventLoop, n: int) -> Measured:
    """1 KiB round trips via ``sock_recv``/``sock_sendall`` (server and clients in the loop)."""
    return _sock_echo(loop, n, 1024)


def sock_echo_64k(loop: asyncio.AbstractEventLoop, n: int) -> Measured:
    """64 KiB round trips via ``sock_recv``/``sock_sendall``."""
    return _sock_echo(loop, n, 64 * 1024)


# --------------------------------------------------------------------------- streams echo


def _streams_echo(
    loop: asyncio.AbstractEventLoop,
    n: int,
    size: int,
    *,
    server_kwargs: dict | None = None,
    client_kwargs: dict | None = None,
    teardown=None,
) -> Measured:
    """``CONNECTIONS`` stream clients ping-pong ``size``-byte messages with a stream server.

    ``server_kwargs``/``client_kwargs`` go to ``start_server``/``open_connection`` (TLS
    passes its contexts there); ``teardown`` replaces ``_server_side_closed``.
    """
    server_kwargs = server_kwargs or {}
    client_kwargs = client_kwargs or {}
    teardown = teardown or _server_side_closed
    per_conn = max(1, n // CONNECTIONS)
    msg = _message(size)
    handlers = _Countdown(loop, CONNECTIONS)
    server_transports: list[asyncio.BaseTransport] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_transports.append(writer.transport)
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()
            await writer.wait_closed()
        except ConnectionError:
            pass  # aborted by _server_side_closed
        finally:
            handlers.count()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(per_conn):
            writer.write(msg)
            await writer.drain()
            data = await reader.readexactly(size)
            if len(data) != size:
                raise AssertionError(f"echoed {len(data)} bytes, sent {size}")

    async def main_coro() -> tuple[float, dict[str, str] | None]:
        server = await asyncio.start_server(handle, HOST, 0, backlog=CONNECTIONS, **server_kwargs)
        port = server.sockets[0].getsockname()[1]
        conns = [
            await asyncio.open_connection(HOST, port, **client_kwargs) for _ in range(CONNECTIONS)
        ]
        start = time.perf_counter()
        await asyncio.gather(*(client(r, w) for r, w in conns))
        elapsed = time.perf_counter() - start
        for _, writer in conns:
            writer.close()
        for _, writer in conns:
            await writer.wait_closed()
        note = await teardown(handlers, server_transports)
        server.close()
        await server.wait_closed()
        return elapsed, note

    elapsed, note = loop.run_until_complete(main_coro())
    return Measured(per_conn * CONNECTIONS, elapsed, note)


def streams_echo_1k(loop: asyncio.AbstractEventLoop, n: int) -> Measured:
    """1 KiB round trips: ``open_connection`` clients, ``start_server`` echo handler."""
    return _streams_echo(loop, n, 1024)


def streams_echo_64k(loop: asyncio.AbstractEventLoop, n: int) -> Measured:
    """64 KiB round trips: ``open_connection`` clients, ``start_server`` echo handler."""
    return _streams_echo(loop, n, 65536)


# --------------------------------------------------------------------------- protocol echo


class _EchoServerProtocol(asyncio.Protocol):
    def __init__(self, closed: _Countdown, transports: list[asyncio.BaseTransport]) -> None:
        self.closed = closed
        self.transports = transports
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transports.append(transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.count()


class _EchoClientProtocol(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, msg: bytes, rounds: int) -> None:
        self.msg = msg
        self.size = len(msg)
        self.rounds = rounds
        self.received = 0
        self.count = 0
        self.transport: asyncio.Transport | None = None
        self.finished = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def start(self) -> None:
        self.transport.write(self.msg)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.received < self.size:
            return
        if self.received > self.size:
            raise AssertionError(f"echoed {self.received} bytes, sent {self.size}")
        self.received = 0
        self.count += 1
        if self.count < self.rounds:
            self.transport.write(self.msg)  # type: ignore[union-attr]
        elif not self.finished.done():
            self.finished.set_result(self.count)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            self.finished.set_exception(ConnectionError(f"connection lost early: {exc!r}"))
        if not self.lost.done():
            self.lost.set_result(None)


def _protocol_echo(
    loop: asyncio.AbstractEventLoop,
    n: int,
    size: int,
    *,
    server_kwargs: dict | None = None,
    client_kwargs: dict | None = None,
    teardown=None,
) -> Measured:
    """``CONNECTIONS`` Protocol clients ping-pong ``size``-byte messages, callbacks only.

    The keyword arguments are those of ``_streams_echo``.
    """
    server_kwargs = server_kwargs or {}
    client_kwargs = client_kwargs or {}
    teardown = teardown or _server_side_closed
    per_conn = max(1, n // CONNECTIONS)
    msg = _message(size)
    server_closed = _Countdown(loop, CONNECTIONS)
    server_transports: list[asyncio.BaseTransport] = []

    async def main_coro() -> tuple[float, dict[str, str] | None]:
        server = await loop.create_server(
            lambda: _EchoServerProtocol(server_closed, server_transports),
            HOST,
            0,
            backlog=CONNECTIONS,
            **server_kwargs,
        )
        port = server.sockets[0].getsockname()[1]
        protocols: list[_EchoClientProtocol] = []
        for _ in range(CONNECTIONS):
            _, proto = await loop.create_connection(
                lambda: _EchoClientProtocol(loop, msg, per_conn), HOST, port, **client_kwargs
            )
            protocols.append(proto)
        start = time.perf_counter()
        for proto in protocols:
            proto.start()
        await asyncio.gather(*(proto.finished for proto in protocols))
        elapsed = time.perf_counter() - start
        for proto in protocols:
            proto.transport.close()  # type: ignore[union-attr]
        await asyncio.gather(*(proto.lost for proto in protocols))
        note = await teardown(server_closed, server_transports)
        server.close()
        await server.wait_closed()
        return elapsed, note

    elapsed, note = loop.run_until_complete(main_coro())
    return Measured(per_conn * CONNECTIONS, elapsed, note)


def protocol_echo_1k(loop: asyncio.AbstractEventLoop, n: int) -> Measured:
    """1 KiB round trips: ``asyncio.Protocol`` server and clients (``create_server``)."""
    return _protocol_echo(loop, n, 1024)


def protocol_echo_64k(loop: asyncio.AbstractEventLoop, n: int) -> Measured:
    """64 KiB round trips: ``asyncio.Protocol`` server and clients (``create_server``)."""
    return _protocol_echo(loop, n, 65536)


# --------------------------------------------------------------------------- UDP


class _UdpEchoServer(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


class _UdpEchoClient(asyncio.DatagramProtocol):
    """A connected endpoint that ping-pongs one datagram ``count`` times."""

    def __init__(self, loop: asyncio.AbstractEventLoop, msg: bytes, count: int) -> None:
        self.msg = msg
        self.left = count
        self.finished = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def start(self) -> None:
        self.transport.sendto(self.msg)  # type: ignore[attr-defined]

    def datagram_received(self, data: bytes, addr) -> None:
        self.left -= 1
        if self.left:
            self.transport.sendto(self.msg)  # type: ignore[attr-defined]
        elif not self.finished.done():
            self.finished.set_result(None)

    def error_received(self, exc: Exception) -> None:
        if not self.finished.done():
            self.finished.set_exception(exc)


def udp_echo(loop: asyncio.AbstractEventLoop, n: int) -> Measured:
    """100-byte datagram round trips: a ``create_datagram_endpoint`` echo server
    (``sendto(data, addr)``) and connected (``remote_addr``) clients."""
    per_client = max(1, n // CONNECTIONS)
    msg = _message(100)

    async def main_coro() -> float:
        server, _ = await loop.create_datagram_endpoint(_UdpEchoServer, local_addr=(HOST, 0))
        address = server.get_extra_info("sockname")
        clients = []
        for _ in range(CONNECTIONS):
            transport, proto = await loop.create_datagram_endpoint(
                lambda: _UdpEchoClient(loop, msg, per_client), remote_addr=address
            )
            clients.append((transport, proto))
        start = time.perf_counter()
        for _, proto in clients:
            proto.start()
        # Loopback does not drop datagrams at one in flight per client; a bound all the same.
        await asyncio.wait_for(asyncio.gather(*(p.finished for _, p in clients)), 60)
        elapsed = time.perf_counter() - start
        for transport, _ in clients:
            transport.close()
        server.close()
        await asyncio.sleep(0)
        return elapsed

    return Measured(per_client * CONNECTIONS, loop.run_until_complete(main_coro()))


# --------------------------------------------------------------------------- HTTP server


class _HttpProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive: every request (ending in a blank line) gets ``RESPONSE``."""

    def __init__(self, state: dict[str, int], open_transports: set) -> None:
        self.state = state
        self.open_transports = open_transports
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.open_transports.add(transport)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        count = buffer.count(b"\r\n\r\n")
        if count:
            self.transport.write(RESPONSE * count)  # type: ignore[union-attr]
            self.state["served"] += count
            buffer = buffer[buffer.rindex(b"\r\n\r\n") + 4 :]
        if len(buffer) > 65536:
            raise ValueError("request head larger than 64 KiB")
        self.buffer = buffer

    def connection_lost(self, exc: Exception | None) -> None:
        self.open_transports.discard(self.transport)


def http_client_kind() -> str:
    """The load client ``http_hello`` uses: ``wrk`` or ``python``."""
    choice = os.environ.get("FERROLOOP_BENCH_HTTP_CLIENT", "auto")
    if choice not in ("auto", "wrk", "python"):
        raise SystemExit(f"FERROLOOP_BENCH_HTTP_CLIENT={choice!r}: use auto, wrk or python")
    if choice == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    return choice


def http_placement() -> tuple[set[int], set[int]] | None:
    """``(server CPUs, load-client CPUs)`` for ``http_hello``, or ``None`` (not pinned).

    With two CPUs or more, the server gets the last allowed CPU and the load client the
    others.  Left to itself, the scheduler often keeps both processes on one CPU for all the
    runs of a cell (each side then about half busy: ``bound=shared-cpu``, ~140k instead of
    ~190k requests/s on the 2-CPU development VM), a lottery from cell to cell.  Pinned,
    the placement is the same for every loop; the price is that any other busy process
    on either CPU halves the figures (also flagged ``bound=shared-cpu``).
    ``FERROLOOP_BENCH_HTTP_PIN=0`` leaves the placement to the scheduler.
    """
    if os.environ.get("FERROLOOP_BENCH_HTTP_PIN", "1") == "0":
        return None
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return {cpus[-1]}, set(cpus[:-1])


def _pinned(cmd: list[str], cpus: set[int] | None) -> list[str]:
    """``cmd`` started on ``cpus`` only (``taskset``, or a Python shim that execs it)."""
    if cpus is None:
        return cmd
    cpu_list = ",".join(str(c) for c in sorted(cpus))
    if taskset := shutil.which("taskset"):
        return [taskset, "-c", cpu_list, *cmd]
    shim = (
        f"import os, sys; os.sched_setaffinity(0, {{{cpu_list}}}); "
        "os.execvp(sys.argv[1], sys.argv[1:])"
    )
    return [sys.executable, "-c", shim, *cmd]


def run_load_client(
    port: int, seconds: int, cpus: set[int] | None, script: str = os.path.abspath(__file__)
) -> dict[str, float]:
    """Run the load client process (on ``cpus``) to completion; return its counts and CPU.

    Without ``wrk`` the client is ``script --_http-client`` (this file's by default).
    """
    url = f"http://{HOST}:{port}/"
    with tempfile.TemporaryDirectory(prefix="ferroloop-bench-") as tmp:
        if http_client_kind() == "wrk":
            script = os.path.join(tmp, "report.lua")
            with open(script, "w", encoding="utf-8") as fh:
                fh.write(WRK_SCRIPT)
            cmd = [
                "wrk", f"-t{WRK_THREADS}", f"-c{HTTP_CONNECTIONS}", f"-d{seconds}s",
                "--timeout", "5s", "-s", script, url,
            ]  # fmt: skip
        else:
            cmd = [
                sys.executable, script, "--_http-client",
                str(port), str(HTTP_CONNECTIONS), str(seconds),
            ]  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(
            _pinned(cmd, cpus), capture_output=True, text=True, timeout=seconds + 30, check=False
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    for line in proc.stdout.splitlines():
        if line.startswith("@@WRK@@ "):
            requests, duration_us, *errors = (int(x) for x in line.split()[1:])
            if any(errors):
                names = ("connect", "read", "write", "status", "timeout")
                raise RuntimeError(f"wrk errors: {dict(zip(names, errors, strict=True))}")
            return {"requests": requests, "seconds": duration_us / 1e6, "client_cpu_s": cpu}
        if line.startswith("@@HTTP-CLIENT@@ "):
            doc = json.loads(line.split(" ", 1)[1])
            if doc["errors"]:
                raise RuntimeError(f"load client errors: {doc['errors']}")
            return {"requests": doc["requests"], "seconds": doc["seconds"], "client_cpu_s": cpu}
    raise RuntimeError(
        f"load client {cmd[0]!r} exited with {proc.returncode}: {proc.stderr.strip()[-500:]}"
    )


def _http_load(loop: asyncio.AbstractEventLoop, n: int) -> tuple[int, float, float, float]:
    """Serve HTTP on ``loop`` under the load client for ``n`` seconds.

    Return ``(requests, seconds, client_cpu_s, server_cpu_s)``: the requests and the
    duration counted by the load client, and the CPU time of each side over the load.
    """
    state = {"served": 0}
    open_transports: set = set()
    result: dict[str, object] = {}
    placement = http_placement()
    server_cpus, client_cpus = placement if placement else (None, None)

    async def main_coro() -> None:
        server = await loop.create_server(
            lambda: _HttpProtocol(state, open_transports), HOST, 0, backlog=1024
        )
        port = server.sockets[0].getsockname()[1]
        finished = loop.create_future()

        def drive() -> None:
            # A plain thread (not the loop's subprocess support, which is under test
            # elsewhere) waits for the load client; it holds no GIL while waiting.
            try:
                result["value"] = run_load_client(port, n, client_cpus)
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
        server.close()
        for transport in list(open_transports):
            transport.abort()
        for _ in range(10):
            if not open_transports:
                break
            await asyncio.sleep(0.01)
        await server.wait_closed()

    saved = os.sched_getaffinity(0) if server_cpus else None
    if server_cpus:
        os.sched_setaffinity(0, server_cpus)  # this thread: the one running the loop
    try:
        loop.run_until_complete(main_coro())
    finally:
        if saved:
            os.sched_setaffinity(0, saved)
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    value: dict[str, float] = result["value"]  # type: ignore[assignment]
    requests, seconds = int(value["requests"]), value["seconds"]
    if requests <= 0 or state["served"] < requests:
        raise AssertionError(f"client counted {requests} requests, server {state['served']}")
    server_cpu_s: float = result["server_cpu_s"]  # type: ignore[assignment]
    return requests, seconds, value["client_cpu_s"], server_cpu_s


def _http_info(requests: int, seconds: float, client_s: float, server_s: float) -> dict:
    """The CPU figures shown with an ``http_hello`` cell (per cent of one CPU)."""
    client, server = client_s / seconds, server_s / seconds
    info = {
        "client_cpu": f"{100 * client:.0f}%",
        "server_cpu": f"{100 * server:.0f}%",
        "server_us_per_req": f"{1e6 * server_s / requests:.2f}",
    }
    if client >= CLIENT_BOUND:
        info["bound"] = "load-client"
    elif client + server <= SHARED_CPU and max(client, server) < 0.75:
        # Both sides about half busy and together one CPU: they shared a CPU, with each
        # other (the scheduler's choice) or with some other busy process.
        info["bound"] = "shared-cpu"
    return info


def http_hello(loop: asyncio.AbstractEventLoop, n: int) -> Measured:
    """Requests/s of a keep-alive ``Hello, World!`` HTTP/1.1 server under a fixed load."""
    requests, seconds, client_s, server_s = _http_load(loop, n)
    return Measured(requests, seconds, _http_info(requests, seconds, client_s, server_s))


def _http_load_client(port: int, connections: int, seconds: float) -> dict[str, object]:
    """The fallback load client: keep-alive GETs on ``connections`` sockets for ``seconds``.

    One request in flight per connection (like wrk); a response is complete when its
    fixed length has arrived.  Single-threaded ``selectors`` loop, no asyncio.
    """
    sel = selectors.DefaultSelector()
    size = len(RESPONSE)
    socks = []
    for _ in range(connections):
        sock = socket.create_connection((HOST, port))
        _nodelay(sock)
        sock.setblocking(False)
        socks.append(sock)
        sel.register(sock, selectors.EVENT_READ, [0, True])  # [bytes pending, first reply]
    errors = 0
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    for sock in socks:
        sock.send(REQUEST)
    while (left := deadline - time.perf_counter()) > 0:
        for key, _ in sel.select(left):
            sock, state = key.fileobj, key.data
            data = sock.recv(65536)  # type: ignore[union-attr]
            if not data:
                errors += 1
                sel.unregister(sock)
                continue
            if state[1]:
                state[1] = False
                if not data.startswith(b"HTTP/1.1 200 "):
                    errors += 1
            state[0] += len(data)
            if state[0] >= size:
                state[0] -= size
                done += 1
                sock.send(REQUEST)  # type: ignore[union-attr]
    elapsed = time.perf_counter() - start
    for sock in socks:
        sock.close()
    sel.close()
    return {"requests": done, "seconds": elapsed, "errors": errors}


def http_ceiling(seconds: int) -> int:
    """Run the load client against ``http_ceiling.c`` (a C server) and print the figures.

    This is the check that the load client is not what limits ``http_hello``:
    a loop whose requests/s come close to this ceiling is measured against the client.
    """
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "http_ceiling.c")
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        print("--http-ceiling needs a C compiler (cc) on PATH", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ferroloop-bench-") as tmp:
        exe = os.path.join(tmp, "http_ceiling")
        subprocess.run([compiler, "-O2", "-o", exe, source], check=True)
        placement = http_placement()
        server_cpus, client_cpus = placement if placement else (None, None)
        server = subprocess.Popen(
            _pinned([exe, str(seconds + 30)], server_cpus), stdout=subprocess.PIPE, text=True
        )  # exits by itself after seconds + 30 s
        try:
            port = int(server.stdout.readline())  # type: ignore[union-attr]
            load = run_load_client(port, seconds, client_cpus)
        finally:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            server.terminate()
            server.wait()
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    requests, elapsed = int(load["requests"]), load["seconds"]
    info = _http_info(requests, elapsed, load["client_cpu_s"], server_s)
    print(
        f"{_http_client_description()} against http_ceiling.c (C, epoll, one thread): "
        f"{requests / elapsed:,.0f} requests/s over {elapsed:.1f} s; "
        + " ".join(f"{k}={v}" for k, v in info.items())
    )
    return 0


def _http_client_description() -> str:
    if http_client_kind() == "wrk":
        text = f"wrk -t{WRK_THREADS} -c{HTTP_CONNECTIONS}"
    else:
        text = f"python selectors load client, {HTTP_CONNECTIONS} connections"
    placement = http_placement()
    if placement:
        server_cpus, client_cpus = (",".join(map(str, sorted(c))) for c in placement)
        text += f" (server on CPU {server_cpus}, load client on CPU {client_cpus})"
    else:
        text += " (placement left to the scheduler)"
    return text


WORKLOADS = [
    Workload("sock_echo_1k", sock_echo_1k, 12_000, 800, sock_echo_1k.__doc__),
    Workload("sock_echo_64k", sock_echo_64k, 3_000, 200, sock_echo_64k.__doc__),
    Workload("streams_echo_1k", streams_echo_1k, 20_000, 1_000, streams_echo_1k.__doc__),
    Workload("streams_echo_64k", streams_echo_64k, 4_000, 200, streams_echo_64k.__doc__),
    Workload("protocol_echo_1k", protocol_echo_1k, 40_000, 2_000, protocol_echo_1k.__doc__),
    Workload("protocol_echo_64k", protocol_echo_64k, 12_000, 600, protocol_echo_64k.__doc__),
    Workload("udp_echo", udp_echo, 20_000, 1_000, udp_echo.__doc__),
    # n is the load duration in seconds (wrk takes whole seconds).
    Workload("http_hello", http_hello, 3, 1, http_hello.__doc__),
]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--_http-client"]:
        port, conns, secs = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
        print("@@HTTP-CLIENT@@ " + json.dumps(_http_load_client(port, conns, secs)), flush=True)
        raise SystemExit(0)
    if sys.argv[1:2] == ["--http-ceiling"]:
        raise SystemExit(http_ceiling(int(sys.argv[2]) if len(sys.argv) > 2 else 3))
    if "--_worker" not in sys.argv and "--list" not in sys.argv:
        print(f"http_hello load client: {_http_client_description()}", flush=True)
    raise SystemExit(main("net", WORKLOADS, os.path.abspath(__file__)))
