"""Helpers shared by the I/O tests (sockets, transports, pipes, subprocesses, signals).

Every helper only uses the public loop API, so the same code drives stdlib asyncio
(the reference) and ferroloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct

# Generous per-operation timeout: a hang fails the test quickly instead of
# waiting for the suite-wide pytest-timeout.
TIMEOUT = 5.0


def run(loop: asyncio.AbstractEventLoop, coro, timeout: float = TIMEOUT):
    """``loop.run_until_complete(coro)`` bounded by ``timeout`` seconds."""
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def open_fds() -> set[int]:
    """The file descriptors currently open in this process."""
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def refused_port() -> int:
    """A 127.0.0.1 TCP port with (almost certainly) nobody listening on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_rst_on_close(sock: socket.socket) -> None:
    """SO_LINGER (on, 0): ``close()`` then sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Recorder(asyncio.Protocol):
    """A stream protocol that records every call it receives.

    ``events`` lists the calls in order, except ``data_received`` (chunking is not
    part of the contract): received bytes accumulate in ``data``.
    """

    eof_result = None  # what eof_received() returns

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.events: list[str] = []
        self.data = bytearray()
        self.transport = None
        self.made = loop.create_future()
        self.eof = loop.create_future()
        self.lost = loop.create_future()
        self.paused = loop.create_future()
        self.resumed = loop.create_future()
        self._waiters: list[tuple[int, asyncio.Future]] = []

    def connection_made(self, transport) -> None:
        self.events.append("made")
        self.transport = transport
        self.made.set_result(transport)

    def data_received(self, data) -> None:
        assert isinstance(data, bytes), type(data)
        assert data, "data_received() with empty data"
        self.data += data
        self._wake()

    def eof_received(self):
        self.events.append("eof")
        self.eof.set_result(None)
        self._wake()
        return self.eof_result

    def connection_lost(self, exc) -> None:
        self.events.append("lost")
        self.lost.set_result(exc)
        self._wake()

    def pause_writing(self) -> None:
        self.events.append("pause")
        if not self.paused.done():
            self.paused.set_result(None)

    def resume_writing(self) -> None:
        self.events.append("resume")
        if not self.resumed.done():
            self.resumed.set_result(None)

    def _wake(self) -> None:
        for n, fut in list(self._waiters):
            if not fut.done() and (len(self.data) >= n or self.eof.done() or self.lost.done()):
                fut.set_result(None)

    async def wait_data(self, n: int) -> bytes:
        """Wait until at least ``n`` bytes arrived (or EOF / connection lost)."""
        if len(self.data) < n and not self.eof.done() and not self.lost.done():
            fut = self.loop.create_future()
            self._waiters.append((n, fut))
            await fut
        return bytes(self.data)


class KeepOpen(Recorder):
    """A ``Recorder`` whose ``eof_received`` returns True (half-closed connection)."""

    eof_result = True


async def sock_recv_all(loop, sock: socket.socket, n: int | None = None) -> bytes:
    """Read from a non-blocking socket with ``loop.sock_recv`` until EOF (or ``n`` bytes)."""
    chunks = bytearray()
    while n is None or len(chunks) < n:
        data = await loop.sock_recv(sock, 1 << 20)
        if not data:
            break
        chunks += data
    return bytes(chunks)


async def tcp_connected(
    loop,
    factory,
    *,
    sndbuf: int | None = None,
    rcvbuf: int | None = None,
):
    """Connect a transport (via ``create_connection``) to a raw 127.0.0.1 peer socket.

    Returns ``(transport, protocol, peer)``; ``peer`` is the non-blocking accepted
    socket.  ``sndbuf``/``rcvbuf`` shrink the client send / peer receive buffers so
    that little data fills the kernel buffers (for flow-control tests).
    """
    with socket.socket() as lsock:
        if rcvbuf is not None:
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        if sndbuf is None:
            tr, pr = await loop.create_connection(factory, *lsock.getsockname())
        else:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, lsock.getsockname())
            except BaseException:
                sock.close()
                raise
            tr, pr = await loop.create_connection(factory, sock=sock)
        lsock.settimeout(TIMEOUT)
        peer, _ = lsock.accept()
    peer.setblocking(False)
    return tr, pr, peer


async def close_transport(tr, pr=None) -> None:
    """Close ``tr`` and wait for ``connection_lost`` (if ``pr`` is a ``Recorder``)."""
    tr.close()
    if pr is not None and isinstance(pr, Recorder):
        await pr.lost
    else:
        await asyncio.sleep(0)
        await asyncio.sleep(0)


@contextlib.contextmanager
def closing_all(*objs):
    """Close every object (socket, transport, file) on exit, ignoring errors."""
    try:
        yield objs
    finally:
        for obj in objs:
            with contextlib.suppress(Exception):
                obj.close()
