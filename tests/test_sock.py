"""loop.sock_* coroutines: recv, recv_into, recvfrom(_into), sendall, sendto, connect, accept."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import socket

import pytest
from io_testutil import refused_port, run, set_rst_on_close

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair():
    """A connected non-blocking AF_UNIX stream socket pair, closed at teardown."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def udp_pair():
    """Two non-blocking UDP sockets bound on 127.0.0.1."""
    socks = []
    for _ in range(2):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
    yield tuple(socks)
    for s in socks:
        s.close()


@pytest.fixture
def listener():
    """A non-blocking TCP listening socket on 127.0.0.1."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(10)
    s.setblocking(False)
    yield s
    s.close()


# -- receiving -------------------------------------------------------------------------


def test_sock_recv_ready_data(loop, pair):
    a, b = pair
    b.send(b"hello")
    assert run(loop, loop.sock_recv(a, 100)) == b"hello"


def test_sock_recv_waits_for_data(loop, pair):
    a, b = pair

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(a, 3))
        await asyncio.sleep(0.02)
        assert not task.done()
        b.send(b"abcdef")
        first = await task
        second = await loop.sock_recv(a, 100)
        return first, second

    assert run(loop, main()) == (b"abc", b"def")


def test_sock_recv_eof(loop, pair):
    a, b = pair

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0.01)
        b.close()
        return await task

    assert run(loop, main()) == b""


def test_sock_recv_results_are_independent_objects(loop, pair):
    """Every received ``bytes`` keeps its content: small and large results, results
    between waits that found nothing, and results of different buffer sizes
    (ferroloop reuses one receive buffer for small results: src/ffi.rs)."""
    a, b = pair
    sizes = [1, 100, 1024, 5000, 16 * 1024, 16 * 1024 + 1, 60000, 7, 0]

    async def main():
        got = []
        for i, size in enumerate(sizes):
            payload = bytes([i + 1]) * size
            if size:
                waiter = asyncio.ensure_future(loop.sock_recv(a, 65536))
                await asyncio.sleep(0)  # the receive found nothing and waits
                b.sendall(payload)
                data = await waiter
                while len(data) < size:
                    data += await loop.sock_recv(a, 65536)
                got.append(data)
            b.send(b"z" * (i + 1))
            got.append(await loop.sock_recv(a, 4096 if i % 2 else 65536))
        return got

    got = run(loop, main())
    expected = []
    for i, size in enumerate(sizes):
        if size:
            expected.append(bytes([i + 1]) * size)
        expected.append(b"z" * (i + 1))
    assert got == expected
    assert len({id(x) for x in got}) == len(got)


def test_sock_recv_into(loop, pair):
    a, b = pair
    buf = bytearray(8)

    async def main():
        task = asyncio.ensure_future(loop.sock_recv_into(a, buf))
        await asyncio.sleep(0.01)
        b.send(b"0123456789")
        n1 = await task
        view = memoryview(buf)[2:]
        n2 = await loop.sock_recv_into(a, view)
        return n1, n2

    assert run(loop, main()) == (8, 2)
    assert bytes(buf) == b"01894567"


def test_sock_recv_into_eof_returns_zero(loop, pair):
    a, b = pair
    b.close()
    assert run(loop, loop.sock_recv_into(a, bytearray(10))) == 0


@pytest.mark.parametrize(
    ("n", "exc_type", "message"),
    [
        (-1, ValueError, "negative buffersize in recv"),
        (1.5, TypeError, "'float' object cannot be interpreted as an integer"),
        ("10", TypeError, "'str' object cannot be interpreted as an integer"),
        (2**63, OverflowError, "Python int too large to convert to C ssize_t"),
    ],
)
def test_sock_recv_bad_size(loop, pair, n, exc_type, message):
    a, b = pair
    b.send(b"x")
    with pytest.raises(exc_type) as info:
        run(loop, loop.sock_recv(a, n))
    assert str(info.value) == message


def test_sock_recv_zero_and_exact_sizes(loop, pair):
    a, b = pair

    async def main():
        b.send(b"abcdef")
        await asyncio.sleep(0.01)
        empty = await loop.sock_recv(a, 0)
        two = await loop.sock_recv(a, 2)
        rest = await loop.sock_recv(a, 1 << 20)
        return empty, two, rest

    assert run(loop, main()) == (b"", b"ab", b"cdef")


def test_sock_recv_closed_socket(loop, pair):
    a, _ = pair
    a.close()
    with pytest.raises(OSError) as info:
        run(loop, loop.sock_recv(a, 10))
    assert info.value.errno == errno.EBADF


def test_sock_recv_socket_subclass_recv_is_called(loop, pair):
    """A socket subclass's own ``recv`` is what receives (asyncio calls ``sock.recv``)."""

    class Counting(socket.socket):
        calls = 0

        def recv(self, *args):
            type(self).calls += 1
            return super().recv(*args)

    a, b = pair
    sub = Counting(a.family, a.type, fileno=a.detach())
    sub.setblocking(False)
    try:

        async def main():
            task = asyncio.ensure_future(loop.sock_recv(sub, 10))
            await asyncio.sleep(0.01)
            b.send(b"hi")
            return await task

        assert run(loop, main()) == b"hi"
        assert Counting.calls >= 2  # the first try, then the one after readiness
    finally:
        sub.close()


def test_sock_recv_many_waiting_sockets(loop):
    """Many sockets waiting at once each get their own data."""
    pairs = [socket.socketpair() for _ in range(50)]
    for x, y in pairs:
        x.setblocking(False)
        y.setblocking(False)

    async def main():
        tasks = [asyncio.ensure_future(loop.sock_recv(x, 100)) for x, _ in pairs]
        await asyncio.sleep(0.01)
        for i, (_, y) in enumerate(reversed(pairs)):
            y.send(b"%d" % i)
        return await asyncio.gather(*tasks)

    try:
        got = run(loop, main())
    finally:
        for x, y in pairs:
            x.close()
            y.close()
    assert got == [b"%d" % (len(pairs) - 1 - i) for i in range(len(pairs))]


def test_pending_recv_on_closed_socket_never_reads_a_reused_fd(impl, loop):
    """A sock_recv left pending on a socket that is then closed must not read from
    another socket that gets the same fd number: the new socket's data goes to the
    transport now reading it."""
    if impl.name == "asyncio":
        pytest.skip(
            "stdlib asyncio's selector keeps the closed socket's key and the new "
            "socket's reader never runs (a user error there); ferroloop must not "
            "hand the new socket's data to the stale recv"
        )

    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        stale = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0.01)
        fd = a.fileno()
        a.close()
        b.close()
        c, d = socket.socketpair()
        if fd not in (c.fileno(), d.fileno()):
            moved = os.dup2(c.fileno(), fd)  # make sure the number is reused
            c.close()
            c = socket.socket(fileno=moved)
        mine, other = (c, d) if c.fileno() == fd else (d, c)
        got = bytearray()
        arrived = loop.create_future()

        class Collect(asyncio.Protocol):
            def data_received(self, data):
                got.extend(data)
                if len(got) >= 5 and not arrived.done():
                    arrived.set_result(None)

        # The transport watches the same fd number the stale recv was waiting on;
        # while it is paused, only the stale recv's reader is watching the fd.
        tr, _ = await loop.connect_accepted_socket(Collect, mine)
        try:
            await asyncio.sleep(0)
            tr.pause_reading()
            other.send(b"hello")
            await asyncio.sleep(0.05)
            tr.resume_reading()
            await asyncio.wait_for(arrived, 5)
            await asyncio.sleep(0.01)
            if stale.done():
                assert isinstance(stale.exception(), OSError), stale
            else:
                stale.cancel()
            return bytes(got)
        finally:
            tr.close()
            other.close()

    assert run(loop, main()) == b"hello"


def test_sock_recv_connection_reset(loop, listener):
    async def main():
        c = socket.socket()
        c.setblocking(False)
        try:
            await loop.sock_connect(c, listener.getsockname())
            peer, _ = await loop.sock_accept(listener)
            set_rst_on_close(peer)
            task = asyncio.ensure_future(loop.sock_recv(c, 100))
            await asyncio.sleep(0.01)
            peer.close()
            with pytest.raises(ConnectionResetError) as info:
                await task
            return info.value.errno
        finally:
            c.close()

    assert run(loop, main()) == errno.ECONNRESET


def test_sock_recvfrom_and_sendto(loop, udp_pair):
    a, b = udp_pair

    async def main():
        task = asyncio.ensure_future(loop.sock_recvfrom(a, 100))
        await asyncio.sleep(0.01)
        assert not task.done()
        sent = await loop.sock_sendto(b, b"datagram", a.getsockname())
        data, addr = await task
        return sent, data, addr

    sent, data, addr = run(loop, main())
    assert sent == 8
    assert data == b"datagram"
    assert addr == b.getsockname()


def test_sock_recvfrom_truncates_to_bufsize(loop, udp_pair):
    a, b = udp_pair
    b.sendto(b"0123456789", a.getsockname())
    data, addr = run(loop, loop.sock_recvfrom(a, 4))
    assert data == b"0123"
    assert addr == b.getsockname()


def test_sock_recvfrom_into(loop, udp_pair):
    a, b = udp_pair
    buf = bytearray(16)

    async def main():
        task = asyncio.ensure_future(loop.sock_recvfrom_into(a, buf))
        await asyncio.sleep(0.01)
        b.sendto(b"first", a.getsockname())
        r1 = await task
        b.sendto(b"second", a.getsockname())
        r2 = await loop.sock_recvfrom_into(a, memoryview(buf)[8:], 3)
        return r1, r2

    r1, r2 = run(loop, main())
    assert r1 == (5, b.getsockname())
    assert r2 == (3, b.getsockname())
    assert bytes(buf[:5]) == b"first"
    assert bytes(buf[8:11]) == b"sec"


# -- sending ---------------------------------------------------------------------------


def test_sock_sendall_large_payload(loop, pair):
    """8 MiB through a socket pair, with a concurrent sock_recv reader."""
    a, b = pair
    payload = bytes(range(256)) * (8 * 1024 * 1024 // 256)

    async def reader():
        h = hashlib.sha256()
        total = 0
        while total < len(payload):
            data = await loop.sock_recv(b, 1 << 18)
            if not data:
                break
            total += len(data)
            h.update(data)
        return total, h.hexdigest()

    async def main():
        rtask = asyncio.ensure_future(reader())
        result = await loop.sock_sendall(a, payload)
        return result, await rtask

    result, (total, digest) = run(loop, main(), timeout=30)
    assert result is None
    assert total == len(payload)
    assert digest == hashlib.sha256(payload).hexdigest()
    assert loop.remove_writer(a) is False
    assert loop.remove_reader(b) is False


def test_sock_sendall_accepts_buffers(loop, pair):
    a, b = pair

    async def main():
        assert await loop.sock_sendall(a, bytearray(b"ab")) is None
        assert await loop.sock_sendall(a, memoryview(b"xcdx")[1:3]) is None
        assert await loop.sock_sendall(a, b"") is None
        return await loop.sock_recv(b, 100)

    assert run(loop, main()) == b"abcd"


def test_sock_sendall_broken_pipe(loop, pair):
    a, b = pair
    b.close()
    with pytest.raises(BrokenPipeError):
        run(loop, loop.sock_sendall(a, b"x" * 100))


def test_sock_sendall_socket_subclass_send_is_called(loop, pair):
    """A socket subclass's own ``send`` is what sends (asyncio calls ``sock.send``)."""

    class Counting(socket.socket):
        calls = 0

        def send(self, *args):
            type(self).calls += 1
            return super().send(*args)

    a, b = pair
    sub = Counting(a.family, a.type, fileno=a.detach())
    sub.setblocking(False)
    try:
        run(loop, loop.sock_sendall(sub, b"hello"))
        assert Counting.calls == 1
        assert b.recv(10) == b"hello"
    finally:
        sub.close()


@pytest.mark.parametrize("size", [0, 1, 1024, 4 * 1024 * 1024])
def test_sock_sendall_delivers_everything_in_order(loop, pair, size):
    """All of ``data`` arrives, in order, whether the first send takes it all, part
    of it (the rest waits for the socket) or nothing is to be sent."""
    a, b = pair
    payload = os.urandom(size)

    async def main():
        received = bytearray()

        async def reader():
            while len(received) < size:
                received.extend(await loop.sock_recv(b, 65536))

        task = asyncio.ensure_future(reader())
        await loop.sock_sendall(a, payload)
        await asyncio.wait_for(task, 30)
        return bytes(received)

    assert run(loop, main()) == payload


def test_sock_sendall_on_a_closed_socket(loop, pair):
    """A closed socket gives the stdlib's OSError (EBADF)."""
    a, _ = pair
    a.close()
    with pytest.raises(OSError) as err:
        run(loop, loop.sock_sendall(a, b"x"))
    assert err.value.errno == errno.EBADF


def test_sock_sendto_returns_count(loop, udp_pair):
    a, b = udp_pair

    async def main():
        n = await loop.sock_sendto(a, memoryview(b"12345"), b.getsockname())
        return n, await loop.sock_recvfrom(b, 100)

    n, (data, addr) = run(loop, main())
    assert n == 5
    assert (data, addr) == (b"12345", a.getsockname())


# -- connect / accept ------------------------------------------------------------------


def test_sock_connect_and_accept(loop, listener):
    async def main():
        c = socket.socket()
        c.setblocking(False)
        try:
            accept_task = asyncio.ensure_future(loop.sock_accept(listener))
            await asyncio.sleep(0.01)
            assert not accept_task.done()
            assert await loop.sock_connect(c, listener.getsockname()) is None
            conn, addr = await accept_task
            with conn:
                assert conn.gettimeout() == 0.0  # accepted sockets are non-blocking
                assert addr == c.getsockname()
                assert conn.getpeername() == c.getsockname()
                await loop.sock_sendall(c, b"ping")
                return await loop.sock_recv(conn, 100)
        finally:
            c.close()

    assert run(loop, main()) == b"ping"


def test_sock_connect_resolves_host_names(loop, listener):
    async def main():
        c = socket.socket()
        c.setblocking(False)
        try:
            await loop.sock_connect(c, ("localhost", listener.getsockname()[1]))
            conn, _ = await loop.sock_accept(listener)
            conn.close()
            return c.getpeername()
        finally:
            c.close()

    assert run(loop, main()) == listener.getsockname()


def test_sock_connect_refused(loop):
    port = refused_port()

    async def main():
        c = socket.socket()
        c.setblocking(False)
        try:
            await loop.sock_connect(c, ("127.0.0.1", port))
        finally:
            c.close()

    with pytest.raises(ConnectionRefusedError) as info:
        run(loop, main())
    assert info.value.errno == errno.ECONNREFUSED
    assert str(info.value) in (
        f"[Errno 111] Connect call failed ('127.0.0.1', {port})",
        "[Errno 111] Connection refused",
    )


def test_sock_connect_unix(loop, tmp_path):
    path = str(tmp_path / "sock")

    async def main():
        with socket.socket(socket.AF_UNIX) as srv, socket.socket(socket.AF_UNIX) as c:
            srv.bind(path)
            srv.listen(1)
            srv.setblocking(False)
            c.setblocking(False)
            await loop.sock_connect(c, path)
            conn, addr = await loop.sock_accept(srv)
            with conn:
                await loop.sock_sendall(conn, b"unix")
                return addr, await loop.sock_recv(c, 10)

    assert run(loop, main()) == ("", b"unix")


def test_sock_connect_unix_missing_path(loop, tmp_path):
    async def main():
        with socket.socket(socket.AF_UNIX) as c:
            c.setblocking(False)
            await loop.sock_connect(c, str(tmp_path / "missing"))

    with pytest.raises(FileNotFoundError):
        run(loop, main())


def test_sock_accept_not_listening(loop):
    async def main():
        with socket.socket() as s:
            s.setblocking(False)
            await loop.sock_accept(s)

    with pytest.raises(OSError) as info:
        run(loop, main())
    assert info.value.errno == errno.EINVAL


# -- debug checks, cancellation --------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda lp, s: lp.sock_recv(s, 1), id="sock_recv"),
        pytest.param(lambda lp, s: lp.sock_recv_into(s, bytearray(1)), id="sock_recv_into"),
        pytest.param(lambda lp, s: lp.sock_recvfrom(s, 1), id="sock_recvfrom"),
        pytest.param(lambda lp, s: lp.sock_recvfrom_into(s, bytearray(1)), id="sock_recvfrom_into"),
        pytest.param(lambda lp, s: lp.sock_sendall(s, b"x"), id="sock_sendall"),
        pytest.param(lambda lp, s: lp.sock_sendto(s, b"x", ("127.0.0.1", 9)), id="sock_sendto"),
        pytest.param(lambda lp, s: lp.sock_connect(s, ("127.0.0.1", 9)), id="sock_connect"),
        pytest.param(lambda lp, s: lp.sock_accept(s), id="sock_accept"),
    ],
)
def test_blocking_socket_rejected_in_debug_mode(debug_loop, call):
    with socket.socket() as s:
        assert s.gettimeout() is None
        with pytest.raises(ValueError) as info:
            run(debug_loop, call(debug_loop, s))
        assert str(info.value) == "the socket must be non-blocking"


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda lp, s: lp.sock_recv(s, 10), id="sock_recv"),
        pytest.param(lambda lp, s: lp.sock_recv_into(s, bytearray(10)), id="sock_recv_into"),
    ],
)
def test_cancelled_recv_leaves_no_reader(loop, pair, call):
    a, b = pair

    async def main():
        task = asyncio.ensure_future(call(loop, a))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Data sent afterwards stays in the socket: nobody stole it.
        b.send(b"later")
        await asyncio.sleep(0.01)
        return await loop.sock_recv(a, 100)

    assert run(loop, main()) == b"later"
    assert loop.remove_reader(a) is False


def test_cancelled_recvfrom_leaves_no_reader(loop, udp_pair):
    a, _b = udp_pair

    async def main():
        task = asyncio.ensure_future(loop.sock_recvfrom(a, 10))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(loop, main())
    assert loop.remove_reader(a) is False


def test_cancelled_accept_leaves_no_reader(loop, listener):
    async def main():
        task = asyncio.ensure_future(loop.sock_accept(listener))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(loop, main())
    assert loop.remove_reader(listener) is False


def test_cancelled_sendall_leaves_no_writer(loop, pair):
    a, _b = pair

    async def main():
        task = asyncio.ensure_future(loop.sock_sendall(a, b"x" * (16 * 1024 * 1024)))
        await asyncio.sleep(0.02)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(loop, main())
    assert loop.remove_writer(a) is False


def test_sock_recv_on_transport_socket(loop, pair):
    """A socket owned by a transport cannot be used with sock_recv once it would block."""
    a, _ = pair
    fd = a.fileno()

    async def main():
        tr, _ = await loop.create_connection(asyncio.Protocol, sock=a)
        try:
            with pytest.raises(RuntimeError) as info:
                await loop.sock_recv(a, 10)
            return str(info.value)
        finally:
            tr.close()
            await asyncio.sleep(0)

    msg = run(loop, main())
    assert msg.startswith(f"File descriptor {fd} is used by transport ")


def test_pending_recv_on_socket_closed_by_user_stays_pending(loop):
    """Closing a socket under a pending sock_recv: as asyncio, the call stays pending
    (nothing wakes it) until it is cancelled, which then completes cleanly. (uvloop
    ends such a call; ferroloop keeps asyncio's behaviour, see the README.)"""

    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        pending = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0.01)
        a.close()
        await asyncio.sleep(0.05)
        still_pending = not pending.done()
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        b.close()
        return still_pending

    assert run(loop, main()) is True


# -- a finished sock_recv wait and the fd's registration --------------------------------
# (ferroloop leaves the fd registered after a native sock_recv wait, for the same socket's
# next wait; none of that may show, whatever happens to the fd in between.)


def _wait_then_recv(loop, sock, peer, payload=b"ping"):
    """One sock_recv that has to wait (the peer sends after a tick)."""

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(sock, 100))
        await asyncio.sleep(0.005)
        assert not task.done()
        peer.send(payload)
        return await task

    return run(loop, main())


def test_finished_recv_wait_leaves_no_reader(loop, pair):
    a, b = pair
    assert _wait_then_recv(loop, a, b) == b"ping"
    assert loop.remove_reader(a) is False
    with pytest.raises(KeyError):
        loop._selector.get_key(a.fileno())


def test_data_arriving_between_waits_is_received(loop, pair):
    a, b = pair

    async def main():
        got = []
        for i in range(50):
            task = asyncio.ensure_future(loop.sock_recv(a, 100))
            await asyncio.sleep(0)
            b.send(b"x%d;" % i)
            got.append(await task)
            b.send(b"y%d;" % i)  # arrives while nobody waits
            await asyncio.sleep(0)
            got.append(await loop.sock_recv(a, 100))
        return b"".join(got)

    expected = b"".join(b"x%d;y%d;" % (i, i) for i in range(50))
    assert run(loop, main()) == expected


def test_reader_added_after_recv_wait_is_called(loop, pair):
    """add_reader on an fd a sock_recv wait used: level-triggered, called again while
    data stays unread, and removable."""
    a, b = pair
    assert _wait_then_recv(loop, a, b) == b"ping"

    async def main():
        calls = []
        done = loop.create_future()

        def on_readable():
            calls.append(1)
            if len(calls) == 3:  # data left unread: reported on every iteration
                loop.remove_reader(a)
                done.set_result(a.recv(100))

        loop.add_reader(a, on_readable)
        b.send(b"level")
        return await asyncio.wait_for(done, 5), len(calls)

    assert run(loop, main()) == (b"level", 3)


@pytest.mark.parametrize("reuse_by", ["sock_recv", "add_reader"])
def test_recv_wait_then_close_and_fd_reuse(loop, reuse_by):
    """The socket a finished sock_recv wait used is closed, and its fd number goes to
    a new socket: the new socket's wait (or reader) still sees its data."""
    a, b = socket.socketpair()
    a.setblocking(False)
    assert _wait_then_recv(loop, a, b) == b"ping"
    fd = a.fileno()
    a.close()
    b.close()
    for _ in range(20):  # take the freed fd number again
        c, d = socket.socketpair()
        if c.fileno() == fd or d.fileno() == fd:
            break
        c.close()
        d.close()
    if d.fileno() == fd:
        c, d = d, c
    assert c.fileno() == fd
    c.setblocking(False)
    try:
        if reuse_by == "sock_recv":
            assert _wait_then_recv(loop, c, d, b"again") == b"again"
        else:

            async def main():
                done = loop.create_future()

                def on_readable():
                    loop.remove_reader(c)
                    done.set_result(c.recv(100))

                loop.add_reader(c, on_readable)
                await asyncio.sleep(0.005)
                d.send(b"again")
                return await asyncio.wait_for(done, 5)

            assert run(loop, main()) == b"again"
    finally:
        c.close()
        d.close()


def test_recv_waits_alternate_with_sendall_waits(loop):
    """A socket whose recv waits alternate with sendall waits (a writer on the same fd)."""
    a, b = socket.socketpair()
    for s in (a, b):
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    big = os.urandom(1 << 20)

    async def main():
        for _ in range(3):
            reader = asyncio.ensure_future(_drain(loop, b, len(big)))
            await loop.sock_sendall(a, big)  # has to wait for the writer
            assert await reader == hashlib.sha256(big).hexdigest()
            back = asyncio.ensure_future(loop.sock_recv(a, 10))
            await asyncio.sleep(0.005)
            b.send(b"ok")
            assert await back == b"ok"

    try:
        run(loop, main())
    finally:
        a.close()
        b.close()


async def _drain(loop, sock, size):
    h = hashlib.sha256()
    got = 0
    while got < size:
        data = await loop.sock_recv(sock, 65536)
        assert data
        h.update(data)
        got += len(data)
    return h.hexdigest()
