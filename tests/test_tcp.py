"""create_connection and connect_accepted_socket (TCP over 127.0.0.1 / ::1)."""

from __future__ import annotations

import asyncio
import errno
import socket
import sys

import pytest
from io_testutil import Recorder, refused_port, run

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def listener():
    """A blocking TCP listening socket on 127.0.0.1 (accept() with a timeout)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(10)
    s.settimeout(10)
    yield s
    s.close()


def _accept(listener):
    conn, _ = listener.accept()
    conn.settimeout(10)
    return conn


def test_create_connection_host_port(loop, listener):
    host, port = listener.getsockname()

    async def main():
        tr, pr = await loop.create_connection(lambda: Recorder(loop), host, port)
        assert pr.events == ["made"]
        assert pr.transport is tr
        peer = _accept(listener)
        with peer:
            assert tr.get_extra_info("peername") == (host, port)
            assert tr.get_extra_info("sockname") == peer.getpeername()
            tr.write(b"hello")
            assert peer.recv(100) == b"hello"
            peer.sendall(b"world")
            assert await pr.wait_data(5) == b"world"
            tr.close()
            await pr.lost
        return pr.events, pr.lost.result()

    assert run(loop, main()) == (["made", "lost"], None)


def test_create_connection_sets_nodelay(loop, listener):
    async def main():
        tr, pr = await loop.create_connection(lambda: Recorder(loop), *listener.getsockname())
        with _accept(listener):
            sock = tr.get_extra_info("socket")
            value = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            tr.close()
            await pr.lost
        return value

    assert run(loop, main()) != 0


def test_create_connection_ipv6(loop):
    with socket.socket(socket.AF_INET6) as lst:
        lst.bind(("::1", 0))
        lst.listen(1)
        lst.settimeout(10)
        port = lst.getsockname()[1]

        async def main():
            tr, pr = await loop.create_connection(lambda: Recorder(loop), "::1", port)
            conn, _ = lst.accept()
            conn.close()
            peer = tr.get_extra_info("peername")
            tr.close()
            await pr.lost
            return peer

        peer = run(loop, main())
    assert peer[:2] == ("::1", port)


def test_create_connection_host_name(loop, listener):
    async def main():
        tr, pr = await loop.create_connection(
            lambda: Recorder(loop), "localhost", listener.getsockname()[1]
        )
        _accept(listener).close()
        peer = tr.get_extra_info("peername")
        tr.close()
        await pr.lost
        return peer

    assert run(loop, main()) == listener.getsockname()


def test_create_connection_sock(loop, listener):
    sock = socket.create_connection(listener.getsockname(), timeout=10)
    assert sock.gettimeout() == 10

    async def main():
        tr, pr = await loop.create_connection(lambda: Recorder(loop), sock=sock)
        assert sock.gettimeout() == 0.0  # made non-blocking
        assert tr.get_extra_info("socket").fileno() == sock.fileno()
        with _accept(listener) as peer:
            peer.sendall(b"via sock")
            data = await pr.wait_data(8)
            tr.close()
            await pr.lost
        return data

    assert run(loop, main()) == b"via sock"
    assert sock.fileno() == -1  # the transport closed it


def test_create_connection_unix_sock_is_allowed(loop):
    a, b = socket.socketpair()

    async def main():
        tr, pr = await loop.create_connection(lambda: Recorder(loop), sock=a)
        b.sendall(b"unix")
        data = await pr.wait_data(4)
        tr.close()
        await pr.lost
        return data, tr.get_extra_info("peername"), tr.get_extra_info("sockname")

    with b:
        assert run(loop, main()) == (b"unix", "", "")


def test_create_connection_local_addr(loop, listener):
    local_port = refused_port()

    async def main():
        tr, pr = await loop.create_connection(
            lambda: Recorder(loop), *listener.getsockname(), local_addr=("127.0.0.1", local_port)
        )
        with _accept(listener) as peer:
            seen = peer.getpeername()
        name = tr.get_extra_info("sockname")
        tr.close()
        await pr.lost
        return name, seen

    name, seen = run(loop, main())
    assert name == ("127.0.0.1", local_port)
    assert seen == name


def test_create_connection_local_addr_in_use(loop, listener):
    taken = listener.getsockname()

    async def main():
        await loop.create_connection(asyncio.Protocol, *taken, local_addr=taken)

    with pytest.raises(OSError) as info:
        run(loop, main())
    assert info.value.errno == errno.EADDRINUSE
    assert str(info.value) == (
        f"[Errno {errno.EADDRINUSE}] error while attempting to bind on address {taken!r}: "
        + ("[errno 98] " if sys.version_info >= (3, 13) else "")  # 3.13: str(err).lower()
        + "address already in use"
    )


def test_create_connection_local_addr_family_mismatch(loop, listener):
    async def main():
        await loop.create_connection(
            asyncio.Protocol, *listener.getsockname(), local_addr=("::1", 0)
        )

    with pytest.raises(OSError) as info:
        run(loop, main())
    assert (
        str(info.value) == "no matching local address with family=<AddressFamily.AF_INET: 2> found"
    )


def test_create_connection_refused(loop):
    port = refused_port()
    with pytest.raises(ConnectionRefusedError) as info:
        run(loop, loop.create_connection(asyncio.Protocol, "127.0.0.1", port))
    assert info.value.errno == errno.ECONNREFUSED


@pytest.mark.parametrize(
    "kwargs",
    [
        {"happy_eyeballs_delay": 0.05},
        {"happy_eyeballs_delay": 0.05, "interleave": 2},
        {"interleave": 1},
    ],
    ids=["happy_eyeballs", "happy_eyeballs+interleave", "interleave"],
)
def test_create_connection_happy_eyeballs_and_interleave(loop, listener, kwargs):
    async def main():
        tr, pr = await loop.create_connection(
            lambda: Recorder(loop), "localhost", listener.getsockname()[1], **kwargs
        )
        with _accept(listener) as peer:
            tr.write(b"he")
            data = peer.recv(10)
        tr.close()
        await pr.lost
        return data

    assert run(loop, main()) == b"he"


def test_create_connection_happy_eyeballs_refused(loop):
    port = refused_port()
    with pytest.raises(ConnectionRefusedError):
        run(
            loop,
            loop.create_connection(asyncio.Protocol, "127.0.0.1", port, happy_eyeballs_delay=0.05),
        )


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="all_errors= exists on 3.12+")
def test_create_connection_all_errors_not_on_311(loop):
    """On 3.11, create_connection() has no all_errors parameter (added in 3.12)."""
    with pytest.raises(TypeError) as info:
        run(loop, loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, all_errors=True))
    assert "all_errors" in str(info.value)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="all_errors= was added in 3.12")
def test_create_connection_all_errors_exception_group(loop):  # pragma: no cover - 3.12+
    port = refused_port()
    with pytest.raises(ExceptionGroup) as info:
        run(loop, loop.create_connection(asyncio.Protocol, "127.0.0.1", port, all_errors=True))
    assert str(info.value).startswith("create_connection failed")
    assert all(isinstance(e, ConnectionRefusedError) for e in info.value.exceptions)


def test_create_connection_protocol_factory_error(loop, listener):
    def factory():
        raise ZeroDivisionError("no protocol")

    with pytest.raises(ZeroDivisionError):
        run(loop, loop.create_connection(factory, *listener.getsockname()))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"host": "127.0.0.1", "port": 1, "sock": "SOCK"},
            "host/port and sock can not be specified at the same time",
        ),
        ({}, "host and port was not specified and no sock specified"),
        (
            {"host": "127.0.0.1", "port": 1, "server_hostname": "x"},
            "server_hostname is only meaningful with ssl",
        ),
        (
            {"host": "127.0.0.1", "port": 1, "ssl_handshake_timeout": 1},
            "ssl_handshake_timeout is only meaningful with ssl",
        ),
        (
            {"host": "127.0.0.1", "port": 1, "ssl_shutdown_timeout": 1},
            "ssl_shutdown_timeout is only meaningful with ssl",
        ),
        (
            {"ssl": True, "sock": "SOCK"},
            "You must set server_hostname when using ssl without a host",
        ),
    ],
    ids=["host+sock", "nothing", "server_hostname", "handshake_timeout", "shutdown_timeout", "ssl"],
)
def test_create_connection_bad_arguments(loop, kwargs, message):
    with socket.socket() as s:
        kwargs = {k: (s if v == "SOCK" else v) for k, v in kwargs.items()}
        with pytest.raises(ValueError) as info:
            run(loop, loop.create_connection(asyncio.Protocol, **kwargs))
    assert str(info.value) == message


def test_create_connection_datagram_sock_rejected(loop):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        with pytest.raises(ValueError) as info:
            run(loop, loop.create_connection(asyncio.Protocol, sock=s))
        assert str(info.value) == f"A Stream Socket was expected, got {s!r}"


def test_create_connection_unresolvable_host(loop):
    with pytest.raises(socket.gaierror):
        run(
            loop,
            loop.create_connection(asyncio.Protocol, "not a host", 80, flags=socket.AI_NUMERICHOST),
        )


# -- connect_accepted_socket -----------------------------------------------------------


def test_connect_accepted_socket(loop, listener):
    client = socket.create_connection(listener.getsockname(), timeout=10)
    conn, _ = listener.accept()

    async def main():
        tr, pr = await loop.connect_accepted_socket(lambda: Recorder(loop), conn)
        assert conn.gettimeout() == 0.0
        assert tr.get_extra_info("peername") == client.getsockname()
        client.sendall(b"accepted")
        data = await pr.wait_data(8)
        tr.write(b"reply")
        tr.close()
        await pr.lost
        return data, pr.events

    with client:
        assert run(loop, main()) == (b"accepted", ["made", "lost"])
        assert client.recv(100) == b"reply"
        assert client.recv(100) == b""


def test_connect_accepted_socket_rejects_datagram(loop):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        with pytest.raises(ValueError) as info:
            run(loop, loop.connect_accepted_socket(asyncio.Protocol, s))
        assert str(info.value) == f"A Stream Socket was expected, got {s!r}"


def test_connect_accepted_socket_handshake_timeout_without_ssl(loop):
    a, b = socket.socketpair()
    with a, b, pytest.raises(ValueError) as info:
        run(loop, loop.connect_accepted_socket(asyncio.Protocol, a, ssl_handshake_timeout=1))
    assert str(info.value) == "ssl_handshake_timeout is only meaningful with ssl"
