"""create_unix_server / create_unix_connection: socket files, stale paths, errors."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import stat
import sys

import pytest
from io_testutil import Recorder, run

pytestmark = pytest.mark.timeout(30)


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data.upper())


async def _roundtrip(loop, path, payload=b"unix"):
    tr, pr = await loop.create_unix_connection(lambda: Recorder(loop), path)
    tr.write(payload)
    tr.write_eof()
    data = await pr.wait_data(len(payload))
    tr.close()
    await pr.lost
    return data


@pytest.fixture
def sock_path(tmp_path):
    return str(tmp_path / "server.sock")


def test_unix_server_and_connection(loop, sock_path):
    async def main():
        server = await loop.create_unix_server(Echo, sock_path)
        assert stat.S_ISSOCK(os.stat(sock_path).st_mode)
        (sock,) = server.sockets
        assert sock.family == socket.AF_UNIX
        assert sock.getsockname() == sock_path
        assert server.is_serving()
        reply = await _roundtrip(loop, sock_path)
        server.close()
        await server.wait_closed()
        return reply

    assert run(loop, main()) == b"UNIX"
    if sys.version_info < (3, 13):
        # 3.11/3.12 leave the socket file behind on close.
        assert stat.S_ISSOCK(os.stat(sock_path).st_mode)


def test_unix_transport_extra_info(loop, sock_path):
    async def main():
        server = await loop.create_unix_server(Echo, sock_path)
        tr, pr = await loop.create_unix_connection(lambda: Recorder(loop), sock_path)
        info = (
            tr.get_extra_info("peername"),
            tr.get_extra_info("sockname"),
            tr.get_extra_info("socket").family,
            tr.can_write_eof(),
        )
        tr.close()
        await pr.lost
        server.close()
        await server.wait_closed()
        return info

    assert run(loop, main()) == (sock_path, "", socket.AF_UNIX, True)


def test_unix_server_pathlike(loop, tmp_path):
    path = tmp_path / "pathlike.sock"

    async def main():
        server = await loop.create_unix_server(Echo, path)
        reply = await _roundtrip(loop, path)
        server.close()
        await server.wait_closed()
        return reply

    assert run(loop, main()) == b"UNIX"
    # 3.13+: create_unix_server(cleanup_socket=True) unlinks the path on close.
    assert path.exists() == (sys.version_info < (3, 13))


def test_unix_server_replaces_stale_socket_file(loop, sock_path):
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(sock_path)
    stale.close()
    assert stat.S_ISSOCK(os.stat(sock_path).st_mode)

    async def main():
        server = await loop.create_unix_server(Echo, sock_path)
        reply = await _roundtrip(loop, sock_path)
        server.close()
        await server.wait_closed()
        return reply

    assert run(loop, main()) == b"UNIX"


def test_unix_server_takes_over_live_socket_path(loop, sock_path):
    """The stale-socket check removes *any* socket file, even one a live server uses."""

    class Tag(asyncio.Protocol):
        def __init__(self, tag):
            self.tag = tag

        def connection_made(self, transport):
            transport.write(self.tag)
            transport.close()

    async def main():
        first = await loop.create_unix_server(lambda: Tag(b"first"), sock_path)
        second = await loop.create_unix_server(lambda: Tag(b"second"), sock_path)
        _tr, pr = await loop.create_unix_connection(lambda: Recorder(loop), sock_path)
        await pr.lost
        for s in (first, second):
            s.close()
            await s.wait_closed()
        return bytes(pr.data)

    assert run(loop, main()) == b"second"


def test_unix_server_path_is_regular_file(loop, sock_path):
    with open(sock_path, "w") as f:
        f.write("not a socket")
    with pytest.raises(OSError) as info:
        run(loop, loop.create_unix_server(Echo, sock_path))
    assert info.value.errno == errno.EADDRINUSE
    assert str(info.value) == f"[Errno {errno.EADDRINUSE}] Address {sock_path!r} is already in use"
    with open(sock_path) as f:
        assert f.read() == "not a socket"


def test_unix_server_abstract_namespace(loop):
    name = f"\0ferroloop-test-{os.getpid()}-{id(loop)}"

    async def main():
        server = await loop.create_unix_server(Echo, name)
        reply = await _roundtrip(loop, name)
        server.close()
        await server.wait_closed()
        return reply

    assert run(loop, main()) == b"UNIX"


def test_unix_server_sock_and_connection_sock(loop, sock_path):
    srv_sock = socket.socket(socket.AF_UNIX)
    srv_sock.bind(sock_path)

    async def main():
        server = await loop.create_unix_server(Echo, sock=srv_sock)
        assert srv_sock.gettimeout() == 0.0
        csock = socket.socket(socket.AF_UNIX)
        csock.connect(sock_path)
        tr, pr = await loop.create_unix_connection(lambda: Recorder(loop), sock=csock)
        assert csock.gettimeout() == 0.0
        tr.write(b"sock")
        data = await pr.wait_data(4)
        tr.close()
        await pr.lost
        server.close()
        await server.wait_closed()
        return data

    assert run(loop, main()) == b"SOCK"
    assert srv_sock.fileno() == -1


def test_unix_server_start_serving_false(loop, sock_path):
    async def main():
        server = await loop.create_unix_server(Echo, sock_path, start_serving=False)
        assert not server.is_serving()
        with pytest.raises(ConnectionRefusedError):
            await loop.create_unix_connection(asyncio.Protocol, sock_path)
        await server.start_serving()
        assert server.is_serving()
        reply = await _roundtrip(loop, sock_path)
        server.close()
        await server.wait_closed()
        return reply

    assert run(loop, main()) == b"UNIX"


def test_unix_connection_missing_path(loop, tmp_path):
    with pytest.raises(FileNotFoundError):
        run(loop, loop.create_unix_connection(asyncio.Protocol, str(tmp_path / "nope")))


def test_unix_connection_refused_on_stale_socket(loop, sock_path):
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(sock_path)
    stale.close()
    with pytest.raises(ConnectionRefusedError):
        run(loop, loop.create_unix_connection(asyncio.Protocol, sock_path))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"path": "P", "sock": "SOCK"}, "path and sock can not be specified at the same time"),
        ({}, "no path and sock were specified"),
        ({"path": "P", "server_hostname": "h"}, "server_hostname is only meaningful with ssl"),
        (
            {"path": "P", "ssl_handshake_timeout": 1},
            "ssl_handshake_timeout is only meaningful with ssl",
        ),
        (
            {"path": "P", "ssl_shutdown_timeout": 1},
            "ssl_shutdown_timeout is only meaningful with ssl",
        ),
        ({"path": "P", "ssl": True}, "you have to pass server_hostname when using ssl"),
    ],
    ids=["path+sock", "nothing", "server_hostname", "handshake", "shutdown", "ssl"],
)
def test_unix_connection_bad_arguments(loop, sock_path, kwargs, message):
    with socket.socket(socket.AF_UNIX) as s:
        repl = {"P": sock_path, "SOCK": s}
        kwargs = {k: repl.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}
        with pytest.raises(ValueError) as info:
            run(loop, loop.create_unix_connection(asyncio.Protocol, **kwargs))
    assert str(info.value) == message


def test_unix_connection_wrong_socket_kind(loop):
    for family, type_ in (
        (socket.AF_INET, socket.SOCK_STREAM),
        (socket.AF_UNIX, socket.SOCK_DGRAM),
    ):
        with socket.socket(family, type_) as s:
            with pytest.raises(ValueError) as info:
                run(loop, loop.create_unix_connection(asyncio.Protocol, sock=s))
            assert str(info.value) == f"A UNIX Domain Stream Socket was expected, got {s!r}"
            with pytest.raises(ValueError) as info:
                run(loop, loop.create_unix_server(asyncio.Protocol, sock=s))
            assert str(info.value) == f"A UNIX Domain Stream Socket was expected, got {s!r}"


@pytest.mark.parametrize(
    "kwargs, exc_type, message",
    [
        ({"path": "P", "sock": "SOCK"}, ValueError,
         "path and sock can not be specified at the same time"),
        ({}, ValueError, "path was not specified, and no sock specified"),
        ({"path": "P", "ssl": True}, TypeError, "ssl argument must be an SSLContext or None"),
        ({"path": "P", "ssl_handshake_timeout": 1}, ValueError,
         "ssl_handshake_timeout is only meaningful with ssl"),
    ],
    ids=["path+sock", "nothing", "ssl-bool", "handshake"],
)  # fmt: skip
def test_unix_server_bad_arguments(loop, sock_path, kwargs, exc_type, message):
    with socket.socket(socket.AF_UNIX) as s:
        repl = {"P": sock_path, "SOCK": s}
        kwargs = {k: repl.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}
        with pytest.raises(exc_type) as info:
            run(loop, loop.create_unix_server(asyncio.Protocol, **kwargs))
    assert str(info.value) == message
