"""create_server and the Server object; accepting connections, including under EMFILE."""

from __future__ import annotations

import asyncio
import errno
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest
from ferro_testutil import clean_env
from io_testutil import Recorder, refused_port, run, sock_recv_all

pytestmark = pytest.mark.timeout(30)


class Echo(asyncio.Protocol):
    """Echoes data back upper-cased; closes on EOF."""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data.upper())


async def _echo_roundtrip(loop, addr, family=socket.AF_INET, payload=b"ping"):
    with socket.socket(family) as c:
        c.setblocking(False)
        await loop.sock_connect(c, addr)
        await loop.sock_sendall(c, payload)
        c.shutdown(socket.SHUT_WR)
        return await sock_recv_all(loop, c)


def _connect_refused(addr, family=socket.AF_INET) -> bool:
    with socket.socket(family) as c:
        c.settimeout(5)
        try:
            c.connect(addr)
        except ConnectionRefusedError:
            return True
        return False


def test_create_server_basic(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        assert server.is_serving() is True
        assert server.get_loop() is loop
        socks = server.sockets
        assert isinstance(socks, tuple) and len(socks) == 1
        assert type(socks[0]) is asyncio.trsock.TransportSocket
        assert socks[0].family == socket.AF_INET
        assert socks[0].type == socket.SOCK_STREAM
        addr = socks[0].getsockname()
        assert addr[0] == "127.0.0.1"
        assert repr(server).startswith("<Server sockets=(")
        reply = await _echo_roundtrip(loop, addr)
        server.close()
        assert server.is_serving() is False
        assert server.sockets == ()
        await server.wait_closed()
        return reply, addr

    reply, addr = run(loop, main())
    assert reply == b"PING"
    assert _connect_refused(addr)


def test_create_server_ipv6(loop):
    async def main():
        server = await loop.create_server(Echo, "::1", 0)
        (sock,) = server.sockets
        assert sock.family == socket.AF_INET6
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        reply = await _echo_roundtrip(loop, sock.getsockname()[:2], socket.AF_INET6)
        server.close()
        await server.wait_closed()
        return reply

    assert run(loop, main()) == b"PING"


def test_create_server_multiple_hosts(loop):
    hosts = ["127.0.0.1", "localhost", "::1"]
    expected = set()
    for host in hosts:
        for fam, _, _, _, sa in socket.getaddrinfo(
            host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        ):
            expected.add((fam, sa[0]))

    async def main():
        server = await loop.create_server(Echo, hosts, 0)
        got = {(s.family, s.getsockname()[0]) for s in server.sockets}
        replies = []
        for s in server.sockets:
            replies.append(await _echo_roundtrip(loop, s.getsockname()[:2], s.family))
        server.close()
        await server.wait_closed()
        return got, replies, len(server.sockets)

    got, replies, after = run(loop, main())
    # Duplicates (localhost -> 127.0.0.1) are bound once.
    assert got == expected
    assert replies == [b"PING"] * len(expected)
    assert after == 0


def test_create_server_duplicate_hosts_bound_once(loop):
    async def main():
        server = await loop.create_server(Echo, ["127.0.0.1", "127.0.0.1"], refused_port())
        n = len(server.sockets)
        server.close()
        await server.wait_closed()
        return n

    assert run(loop, main()) == 1


@pytest.mark.parametrize("reuse_address, expected", [(None, True), (True, True), (False, False)])
def test_create_server_reuse_address(loop, reuse_address, expected):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0, reuse_address=reuse_address)
        value = server.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        server.close()
        await server.wait_closed()
        return value

    assert bool(run(loop, main())) is expected


def test_create_server_reuse_port(loop):
    async def main():
        s1 = await loop.create_server(Echo, "127.0.0.1", 0, reuse_port=True)
        port = s1.sockets[0].getsockname()[1]
        assert s1.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        s2 = await loop.create_server(Echo, "127.0.0.1", port, reuse_port=True)
        assert s2.sockets[0].getsockname()[1] == port
        reply = await _echo_roundtrip(loop, ("127.0.0.1", port))
        for s in (s1, s2):
            s.close()
            await s.wait_closed()
        return reply

    assert run(loop, main()) == b"PING"


def test_create_server_address_in_use(loop):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        addr = taken.getsockname()
        with pytest.raises(OSError) as info:
            run(loop, loop.create_server(Echo, *addr))
    assert info.value.errno == errno.EADDRINUSE
    assert str(info.value) == (
        f"[Errno {errno.EADDRINUSE}] error while attempting to bind on address {addr!r}: "
        + ("[errno 98] " if sys.version_info >= (3, 13) else "")  # 3.13: str(err).lower()
        + "address already in use"
    )


def _run_stdout(cmd) -> str:
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=10).stdout


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss(8) to read the listen backlog")
def test_create_server_backlog(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0, backlog=7)
        port = server.sockets[0].getsockname()[1]
        cmd = ["ss", "-ltnH", f"sport = :{port}"]
        out = await loop.run_in_executor(None, _run_stdout, cmd)
        server.close()
        await server.wait_closed()
        return out

    out = run(loop, main())
    fields = out.split()
    assert fields[0] == "LISTEN"
    assert fields[2] == "7"  # Send-Q of a listening socket is its backlog


def test_start_serving_false(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0, start_serving=False)
        addr = server.sockets[0].getsockname()
        assert server.is_serving() is False
        # Not even listening yet.
        assert _connect_refused(addr)
        assert await server.start_serving() is None
        assert server.is_serving() is True
        await server.start_serving()  # idempotent
        reply = await _echo_roundtrip(loop, addr)
        server.close()
        await server.wait_closed()
        return reply

    assert run(loop, main()) == b"PING"


def test_serve_forever(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0, start_serving=False)
        addr = server.sockets[0].getsockname()
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        assert server.is_serving() is True
        reply = await _echo_roundtrip(loop, addr)
        with pytest.raises(RuntimeError) as info:
            await server.serve_forever()
        assert str(info.value) == f"server {server!r} is already being awaited on serve_forever()"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Cancelling serve_forever() closes the server.
        assert server.is_serving() is False
        assert server.sockets == ()
        with pytest.raises(RuntimeError) as info:
            await server.serve_forever()
        assert str(info.value) == f"server {server!r} is closed"
        return reply, addr

    reply, addr = run(loop, main())
    assert reply == b"PING"
    assert _connect_refused(addr)


def test_close_cancels_serve_forever(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        server.close()
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled()

    assert run(loop, main()) is True


def test_server_async_with(loop):
    async def main():
        async with await loop.create_server(Echo, "127.0.0.1", 0) as server:
            assert server.is_serving()
            addr = server.sockets[0].getsockname()
            reply = await _echo_roundtrip(loop, addr)
        assert server.is_serving() is False
        assert server.sockets == ()
        return reply, addr

    reply, addr = run(loop, main())
    assert reply == b"PING"
    assert _connect_refused(addr)


def test_server_close_keeps_connections_and_wait_closed_waits_for_them(loop):
    protos = []

    def factory():
        p = Recorder(loop)
        protos.append(p)
        return p

    async def main():
        server = await loop.create_server(factory, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        c = socket.socket()
        c.setblocking(False)
        with c:
            await loop.sock_connect(c, addr)
            for _ in range(200):
                if protos:
                    break
                await asyncio.sleep(0.005)
            (sp,) = protos
            await sp.made
            waiter = asyncio.ensure_future(server.wait_closed())
            await asyncio.sleep(0.01)
            assert not waiter.done()  # wait_closed() before close(): waits for close()
            server.close()
            await asyncio.sleep(0.01)
            assert not waiter.done()  # ... and for the live connection
            # The accepted connection still works after close().
            await loop.sock_sendall(c, b"after close")
            await sp.wait_data(11)
            sp.transport.write(b"reply")
            assert await loop.sock_recv(c, 100) == b"reply"
            if sys.version_info < (3, 12):
                # 3.11: wait_closed() called *after* close() returns at once.
                await asyncio.wait_for(server.wait_closed(), 1)
            sp.transport.close()
            await sp.lost
            await asyncio.wait_for(waiter, 5)
        return bytes(sp.data)

    assert run(loop, main()) == b"after close"


def test_server_side_transport_extra_info(loop):
    protos = []

    def factory():
        p = Recorder(loop)
        protos.append(p)
        return p

    async def main():
        server = await loop.create_server(factory, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        with socket.socket() as c:
            c.setblocking(False)
            await loop.sock_connect(c, addr)
            for _ in range(200):
                if protos:
                    break
                await asyncio.sleep(0.005)
            tr = await protos[0].made
            info = (
                tr.get_extra_info("peername"),
                tr.get_extra_info("sockname"),
                c.getsockname(),
                tr.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
            )
            c.close()
            await protos[0].lost
        server.close()
        await server.wait_closed()
        return info, addr

    (peername, sockname, client_name, nodelay), addr = run(loop, main())
    assert peername == client_name
    assert sockname == addr
    assert nodelay != 0


def test_create_server_sock(loop):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    addr = sock.getsockname()

    async def main():
        server = await loop.create_server(Echo, sock=sock)
        assert sock.gettimeout() == 0.0
        assert server.sockets[0].fileno() == sock.fileno()
        reply = await _echo_roundtrip(loop, addr)
        server.close()
        await server.wait_closed()
        return reply

    assert run(loop, main()) == b"PING"
    assert sock.fileno() == -1


def test_many_concurrent_clients(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        replies = await asyncio.gather(
            *(_echo_roundtrip(loop, addr, payload=b"c%d" % i) for i in range(60))
        )
        server.close()
        await server.wait_closed()
        return replies

    assert run(loop, main()) == [b"C%d" % i for i in range(60)]


def test_protocol_factory_error_keeps_serving(loop):
    calls = []

    def factory():
        calls.append(1)
        if len(calls) == 1:
            raise ZeroDivisionError("factory failed")
        return Echo()

    async def main():
        server = await loop.create_server(factory, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        with socket.socket() as c:
            c.setblocking(False)
            await loop.sock_connect(c, addr)
            for _ in range(200):
                if calls:
                    break
                await asyncio.sleep(0.005)
        reply = await _echo_roundtrip(loop, addr)
        server.close()
        await server.wait_closed()
        return reply

    assert run(loop, main()) == b"PING"
    assert len(calls) == 2


def test_protocol_factory_error_reported_in_debug_mode(debug_loop, loop_errors):
    loop = debug_loop

    def factory():
        raise ZeroDivisionError("factory failed")

    async def main():
        server = await loop.create_server(factory, "127.0.0.1", 0)
        with socket.socket() as c:
            c.setblocking(False)
            await loop.sock_connect(c, server.sockets[0].getsockname())
            for _ in range(200):
                if loop_errors:
                    break
                await asyncio.sleep(0.005)
        server.close()
        await server.wait_closed()

    run(loop, main())
    assert len(loop_errors) == 1
    ctx = loop_errors.pop()
    assert ctx["message"] == "Error on transport creation for incoming connection"
    assert isinstance(ctx["exception"], ZeroDivisionError)


@pytest.mark.parametrize(
    "kwargs, exc_type, message",
    [
        ({"host": "127.0.0.1", "port": 0, "sock": "SOCK"}, ValueError,
         "host/port and sock can not be specified at the same time"),
        ({}, ValueError, "Neither host/port nor sock were specified"),
        ({"host": "127.0.0.1", "port": 0, "ssl": True}, TypeError,
         "ssl argument must be an SSLContext or None"),
        ({"host": "127.0.0.1", "port": 0, "ssl_handshake_timeout": 1}, ValueError,
         "ssl_handshake_timeout is only meaningful with ssl"),
        ({"host": "127.0.0.1", "port": 0, "ssl_shutdown_timeout": 1}, ValueError,
         "ssl_shutdown_timeout is only meaningful with ssl"),
    ],
    ids=["host+sock", "nothing", "ssl-bool", "handshake_timeout", "shutdown_timeout"],
)  # fmt: skip
def test_create_server_bad_arguments(loop, kwargs, exc_type, message):
    with socket.socket() as s:
        kwargs = {k: (s if v == "SOCK" else v) for k, v in kwargs.items()}
        with pytest.raises(exc_type) as info:
            run(loop, loop.create_server(Echo, **kwargs))
    assert str(info.value) == message


def test_create_server_datagram_sock_rejected(loop):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        with pytest.raises(ValueError) as info:
            run(loop, loop.create_server(Echo, sock=s))
        assert str(info.value) == f"A Stream Socket was expected, got {s!r}"


# -- EMFILE on accept (own process: the fd limit is lowered) ---------------------------

EMFILE_SCRIPT = textwrap.dedent(
    """
    import asyncio, errno, os, resource, sys
    impl = sys.argv[1]
    if impl == "ferroloop":
        import ferroloop
        loop = ferroloop.new_event_loop()
    else:
        loop = asyncio.SelectorEventLoop()
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
        def data_received(self, data):
            self.transport.write(data.upper())
            served.set_result(data)

    async def main():
        global served
        served = loop.create_future()
        server = await loop.create_server(Echo, "127.0.0.1", 0, backlog=3)
        port = server.sockets[0].getsockname()[1]
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 16, hard))
        fillers = []
        try:
            for _ in range(1000):
                fillers.append(os.open(os.devnull, os.O_RDONLY))
        except OSError as exc:
            assert exc.errno == errno.EMFILE, exc
        print("PORT", port, flush=True)
        for _ in range(1000):  # until the failed accept() was reported
            if errors:
                break
            await asyncio.sleep(0.01)
        for fd in fillers:
            os.close(fd)
        data = await asyncio.wait_for(served, 10)
        print("SERVED", data.decode(), flush=True)
        print("ERRORS", [(c["message"], type(c["exception"]).__name__,
                          c["exception"].errno, sorted(c)) for c in errors], flush=True)
        await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())
    loop.close()
    """
)


def test_emfile_on_accept_keeps_serving(impl):
    proc = subprocess.Popen(
        [sys.executable, "-c", EMFILE_SCRIPT, impl.name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=clean_env(),
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("PORT "), (line, proc.stderr.read() if proc.poll() else "")
        port = int(line.split()[1])
        with socket.create_connection(("127.0.0.1", port), timeout=15) as c:
            c.sendall(b"emfile")
            reply = c.recv(100)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert reply == b"EMFILE"
    assert "SERVED emfile" in out
    errors_line = next(ln for ln in out.splitlines() if ln.startswith("ERRORS "))
    # asyncio retries accept() up to `backlog` (3) times in the failing tick and
    # reports every EMFILE, then re-arms the listener after ACCEPT_RETRY_DELAY.
    one = (
        "('socket.accept() out of system resource', 'OSError', 24, "
        "['exception', 'message', 'socket'])"
    )
    assert errors_line == "ERRORS [" + ", ".join([one] * 3) + "]"
