"""TLS benchmarks: echo over TLS on 127.0.0.1, and TLS handshakes.

Run ``python benches/tls.py`` to compare ferroloop with the stdlib asyncio loop, uvloop and
rloop; the options are those of every family (``--help``, ``--loops``, ``--workloads``,
``--quick``, ``--json PATH``, ...; see ``_common.py``).

The certificates come from a throw-away ``trustme`` CA made in each worker process before
anything is timed (a ``localhost`` server certificate; clients verify it and check the
host name, as a real client does).  The TLS server **and** its clients run on the loop
under test, in one process, over real TCP sockets on 127.0.0.1.

Echo workloads (``tls_protocol_echo_*``, ``tls_streams_echo_*``): ``CONNECTIONS`` clients,
connected and handshaken before the clock starts, each ping-pong ``size``-byte messages --
send one, wait until all of it has come back, send the next.  One operation is one
message's round trip (so every byte is encrypted and decrypted twice per direction).
Closing is not timed.

``tls_handshake``: ``CONNECTIONS`` clients at a time connect with ``create_connection(ssl=)``
to a ``create_server(ssl=)`` server, complete the handshake, exchange one byte and close;
one operation is one such connection (TCP connect + TLS 1.3 handshake + close_notify).

A loop that cannot do TLS at all gets an error cell with the exception it raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import ssl
import time

import net  # the echo workloads are net.py's, with TLS keyword arguments
from _common import Measured, Workload, main  # the script's own folder is first on sys.path
from net import _Countdown

HOST = "127.0.0.1"
SERVER_NAME = "localhost"
#: Concurrent client connections.
CONNECTIONS = 8


@functools.cache
def _contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """``(server_context, client_context)`` from a fresh trustme CA (made once per process)."""
    import trustme  # imported here: ``--list`` and the parent process do not need it

    ca = trustme.CA()
    cert = ca.issue_cert(SERVER_NAME, HOST)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(server)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client)
    return server, client


@contextlib.contextmanager
def _tls_call(loop: asyncio.AbstractEventLoop, what: str):
    """Turn a bare ``NotImplementedError`` (rloop 0.5 for any ``ssl=``) into a readable one."""
    try:
        yield
    except NotImplementedError as exc:
        if str(exc):
            raise
        raise NotImplementedError(
            f"{type(loop).__module__}: {what}(ssl=...) not implemented"
        ) from exc


async def _server_side_closed(
    closed: _Countdown, transports: list[asyncio.BaseTransport]
) -> dict[str, str] | None:
    """Wait for the server side of every connection to see its client's close.

    A loop whose client ``close()`` never reaches the server (no close_notify, no FIN)
    would hang the teardown: the server transports are then aborted (teardown is not
    timed) and the cell carries a note instead of failing.
    """
    await asyncio.wait([closed.done], timeout=2.0)
    if closed.done.done():
        return None
    for transport in transports:
        if not transport.is_closing():
            transport.abort()
    await asyncio.wait_for(closed.done, 5)
    return {"note": "server saw no close after the client's close(); aborted"}


# --------------------------------------------------------------------------- protocol echo


def _tls_kwargs() -> tuple[dict, dict]:
    """``start_server``/``create_server`` and ``open_connection``/``create_connection``
    keyword arguments that put TLS under net.py's echo workloads."""
    server_ctx, client_ctx = _contexts()
    return {"ssl": server_ctx}, {"ssl": client_ctx, "server_hostname": SERVER_NAME}


def _protocol_echo(loop: asyncio.AbstractEventLoop, n: int, size: int) -> Measured:
    """net.py's Protocol echo over TLS."""
    server_kwargs, client_kwargs = _tls_kwargs()
    with _tls_call(loop, "create_server"):
        return net._protocol_echo(
            loop,
            n,
            size,
            server_kwargs=server_kwargs,
            client_kwargs=client_kwargs,
            teardown=_server_side_closed,
        )


def tls_protocol_echo_1k(loop: asyncio.AbstractEventLoop, n: int) -> Measured:
    """1 KiB round trips over TLS: ``asyncio.Protocol`` server and clients."""
    return _protocol_echo(loop, n, 1024)


def tls_protocol_echo_64k(loop: asyncio.AbstractEventLoop, n: int) -> Measured:
    """64 KiB round trips over TLS: ``asyncio.Protocol`` server and clients."""
    return _protocol_echo(loop, n, 65536)


# --------------------------------------------------------------------------- streams echo


def _streams_echo(loop: asyncio.AbstractEventLoop, n: int, size: int) -> Measured:
    """net.py's streams echo over TLS."""
    server_kwargs, client_kwargs = _tls_kwargs()
    with _tls_call(loop, "create_server"):
        return net._streams_echo(
            loop,
            n,
            size,
            server_kwargs=server_kwargs,
            client_kwargs=client_kwargs,
            teardown=_server_side_closed,
        )


def tls_streams_echo_1k(loop: asyncio.AbstractEventLoop, n: int) -> Measured:
    """1 KiB round trips over TLS: ``open_connection`` clients, ``start_server`` handler."""
    return _streams_echo(loop, n, 1024)


def tls_streams_echo_64k(loop: asyncio.AbstractEventLoop, n: int) -> Measured:
    """64 KiB round trips over TLS: ``open_connection`` clients, ``start_server`` handler."""
    return _streams_echo(loop, n, 65536)


# --------------------------------------------------------------------------- handshakes


class _OneByteServer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


class _OneByteClient(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.got = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(b"!")  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self.got.done():
            self.got.set_result(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.got.done():
            self.got.set_exception(ConnectionError(f"connection lost early: {exc!r}"))
        if not self.lost.done():
            self.lost.set_result(exc)


def tls_handshake(loop: asyncio.AbstractEventLoop, n: int) -> Measured:
    """TLS connections per second: connect, handshake, one byte each way, close."""
    server_ctx, client_ctx = _contexts()
    per_worker = max(1, n // CONNECTIONS)

    async def worker(port: int) -> None:
        for _ in range(per_worker):
            transport, proto = await loop.create_connection(
                lambda: _OneByteClient(loop),
                HOST,
                port,
                ssl=client_ctx,
                server_hostname=SERVER_NAME,
            )
            if await proto.got != b"!":
                raise AssertionError("bad echo")
            transport.close()
            await proto.lost

    async def main_coro() -> float:
        with _tls_call(loop, "create_server"):
            server = await loop.create_server(_OneByteServer, HOST, 0, ssl=server_ctx, backlog=128)
        port = server.sockets[0].getsockname()[1]
        start = time.perf_counter()
        await asyncio.gather(*(worker(port) for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - start
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.05)  # let the server side of the last connections finish
        return elapsed

    elapsed = loop.run_until_complete(main_coro())
    return Measured(per_worker * CONNECTIONS, elapsed)


WORKLOADS = [
    Workload(
        "tls_protocol_echo_1k", tls_protocol_echo_1k, 10_000, 800, tls_protocol_echo_1k.__doc__
    ),
    Workload(
        "tls_protocol_echo_64k", tls_protocol_echo_64k, 1_600, 160, tls_protocol_echo_64k.__doc__
    ),
    Workload("tls_streams_echo_1k", tls_streams_echo_1k, 8_000, 800, tls_streams_echo_1k.__doc__),
    Workload(
        "tls_streams_echo_64k", tls_streams_echo_64k, 1_600, 160, tls_streams_echo_64k.__doc__
    ),
    Workload("tls_handshake", tls_handshake, 400, 40, tls_handshake.__doc__),
]


if __name__ == "__main__":
    raise SystemExit(main("tls", WORKLOADS, os.path.abspath(__file__)))
