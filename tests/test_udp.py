"""create_datagram_endpoint and datagram transports (UDP on 127.0.0.1 / ::1, AF_UNIX)."""

from __future__ import annotations

import asyncio
import errno
import socket
import sys

import pytest
from ferro_testutil import asyncio_records
from io_testutil import run

pytestmark = pytest.mark.timeout(30)


class DgRecorder(asyncio.DatagramProtocol):
    """Records datagrams, errors and the connection lifecycle."""

    def __init__(self, loop):
        self.loop = loop
        self.events = []
        self.datagrams = []
        self.errors = []
        self.transport = None
        self.lost = loop.create_future()
        self._waiters = []

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport

    def datagram_received(self, data, addr):
        assert isinstance(data, bytes)
        self.datagrams.append((data, addr))
        self._wake()

    def error_received(self, exc):
        self.errors.append(exc)
        self._wake()

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)

    def _wake(self):
        for pred, fut in list(self._waiters):
            if not fut.done() and pred():
                fut.set_result(None)

    async def wait(self, pred):
        if not pred():
            fut = self.loop.create_future()
            self._waiters.append((pred, fut))
            await fut


@pytest.fixture
def udp_peer():
    """A plain non-blocking UDP socket on 127.0.0.1."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    yield s
    s.close()


def _closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _close(tr, pr):
    tr.close()
    return await pr.lost


def test_local_addr_endpoint(loop, udp_peer):
    async def main():
        tr, pr = await loop.create_datagram_endpoint(
            lambda: DgRecorder(loop), local_addr=("127.0.0.1", 0)
        )
        assert pr.events == ["made"]
        addr = tr.get_extra_info("sockname")
        assert addr[0] == "127.0.0.1"
        assert tr.get_extra_info("peername") is None
        sock = tr.get_extra_info("socket")
        assert type(sock) is asyncio.trsock.TransportSocket
        assert sock.type == socket.SOCK_DGRAM
        udp_peer.sendto(b"one", addr)
        udp_peer.sendto(b"two", addr)
        await pr.wait(lambda: len(pr.datagrams) == 2)
        tr.sendto(b"back", udp_peer.getsockname())
        reply = await loop.sock_recvfrom(udp_peer, 100)
        exc = await _close(tr, pr)
        return pr.datagrams, reply, addr, exc, pr.events

    datagrams, reply, addr, exc, events = run(loop, main())
    peer = udp_peer.getsockname()
    assert datagrams == [(b"one", peer), (b"two", peer)]
    assert reply == (b"back", addr)
    assert exc is None
    assert events == ["made", "lost"]


def test_remote_addr_endpoint(loop, udp_peer):
    remote = udp_peer.getsockname()

    async def main():
        tr, pr = await loop.create_datagram_endpoint(lambda: DgRecorder(loop), remote_addr=remote)
        assert tr.get_extra_info("peername") == remote
        tr.sendto(b"no addr")
        tr.sendto(b"same addr", remote)
        got = [await loop.sock_recvfrom(udp_peer, 100) for _ in range(2)]
        with pytest.raises(ValueError) as info:
            tr.sendto(b"x", ("127.0.0.1", 1))
        assert str(info.value) == f"Invalid address: must be None or {remote}"
        udp_peer.sendto(b"reply", tr.get_extra_info("sockname"))
        await pr.wait(lambda: pr.datagrams)
        await _close(tr, pr)
        return got, pr.datagrams, tr.get_extra_info("sockname")

    got, datagrams, local = run(loop, main())
    assert got == [(b"no addr", local), (b"same addr", local)]
    assert datagrams == [(b"reply", remote)]


def test_local_and_remote_addr(loop, udp_peer):
    async def main():
        tr, pr = await loop.create_datagram_endpoint(
            lambda: DgRecorder(loop),
            local_addr=("127.0.0.1", 0),
            remote_addr=udp_peer.getsockname(),
        )
        tr.sendto(b"both")
        data = await loop.sock_recvfrom(udp_peer, 100)
        local = tr.get_extra_info("sockname")
        await _close(tr, pr)
        return data, local

    data, local = run(loop, main())
    assert data == (b"both", local)


def test_error_received_on_refused_port(loop):
    port = _closed_udp_port()

    async def main():
        tr, pr = await loop.create_datagram_endpoint(
            lambda: DgRecorder(loop), remote_addr=("127.0.0.1", port)
        )
        for _ in range(50):
            tr.sendto(b"anyone?")
            await asyncio.sleep(0.01)
            if pr.errors:
                break
        exc = pr.errors[0]
        assert not tr.is_closing()  # errors do not close the endpoint
        await _close(tr, pr)
        return exc

    exc = run(loop, main())
    assert isinstance(exc, ConnectionRefusedError)
    assert exc.errno == errno.ECONNREFUSED


def test_error_received_on_oversized_datagram(loop, udp_peer):
    async def main():
        tr, pr = await loop.create_datagram_endpoint(
            lambda: DgRecorder(loop), local_addr=("127.0.0.1", 0)
        )
        tr.sendto(b"x" * 70000, udp_peer.getsockname())
        errors = list(pr.errors)  # reported synchronously from sendto()
        assert tr.get_write_buffer_size() == 0
        await _close(tr, pr)
        return errors

    errors = run(loop, main())
    assert len(errors) == 1
    assert type(errors[0]) is OSError
    assert errors[0].errno == errno.EMSGSIZE


def test_sendto_rejects_non_bytes(loop, udp_peer):
    async def main():
        tr, pr = await loop.create_datagram_endpoint(
            lambda: DgRecorder(loop), local_addr=("127.0.0.1", 0)
        )
        with pytest.raises(TypeError) as info:
            tr.sendto("text", udp_peer.getsockname())
        await _close(tr, pr)
        return str(info.value)

    assert run(loop, main()) == "data argument must be a bytes-like object, not 'str'"


def test_sendto_bytes_like(loop, udp_peer):
    async def main():
        tr, pr = await loop.create_datagram_endpoint(
            lambda: DgRecorder(loop), remote_addr=udp_peer.getsockname()
        )
        tr.sendto(bytearray(b"ba"))
        tr.sendto(memoryview(b"xmvx")[1:3])
        got = [(await loop.sock_recvfrom(udp_peer, 100))[0] for _ in range(2)]
        await _close(tr, pr)
        return got

    assert run(loop, main()) == [b"ba", b"mv"]


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12+ sends empty datagrams")
def test_empty_datagram_is_not_sent_on_311(loop, udp_peer):
    async def main():
        tr, pr = await loop.create_datagram_endpoint(
            lambda: DgRecorder(loop), remote_addr=udp_peer.getsockname()
        )
        tr.sendto(b"")
        tr.sendto(b"marker")
        data, _ = await loop.sock_recvfrom(udp_peer, 100)
        await _close(tr, pr)
        return data

    assert run(loop, main()) == b"marker"


def test_write_buffer_size_and_limits(loop, udp_peer):
    async def main():
        tr, pr = await loop.create_datagram_endpoint(
            lambda: DgRecorder(loop), remote_addr=udp_peer.getsockname()
        )
        tr.sendto(b"x" * 1000)
        size = tr.get_write_buffer_size()
        limits = tr.get_write_buffer_limits()
        tr.set_write_buffer_limits(high=100)
        limits2 = tr.get_write_buffer_limits()
        await _close(tr, pr)
        return size, limits, limits2

    assert run(loop, main()) == (0, (16384, 65536), (25, 100))


def test_sendto_after_close_connected(loop, udp_peer, asyncio_logger_caplog):
    async def main():
        tr, pr = await loop.create_datagram_endpoint(
            lambda: DgRecorder(loop), remote_addr=udp_peer.getsockname()
        )
        await _close(tr, pr)
        counts = []
        for _ in range(7):
            tr.sendto(b"late")
            counts.append(len(asyncio_records(asyncio_logger_caplog)))
        return counts

    assert run(loop, main()) == [0, 0, 0, 0, 1, 2, 3]
    msgs = {r.getMessage() for r in asyncio_records(asyncio_logger_caplog)}
    assert msgs == {"socket.send() raised exception."}


def test_abort_and_is_closing(loop):
    async def main():
        tr, pr = await loop.create_datagram_endpoint(
            lambda: DgRecorder(loop), local_addr=("127.0.0.1", 0)
        )
        assert tr.is_closing() is False
        tr.abort()
        assert tr.is_closing() is True
        exc = await pr.lost
        return exc, pr.events

    assert run(loop, main()) == (None, ["made", "lost"])


def test_reuse_port(loop):
    async def main():
        tr1, pr1 = await loop.create_datagram_endpoint(
            lambda: DgRecorder(loop), local_addr=("127.0.0.1", 0), reuse_port=True
        )
        addr = tr1.get_extra_info("sockname")
        s1 = tr1.get_extra_info("socket")
        assert s1.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        tr2, pr2 = await loop.create_datagram_endpoint(
            lambda: DgRecorder(loop), local_addr=addr, reuse_port=True
        )
        assert tr2.get_extra_info("sockname") == addr
        await _close(tr1, pr1)
        await _close(tr2, pr2)

    run(loop, main())


def test_port_in_use_without_reuse_port(loop, udp_peer):
    with pytest.raises(OSError) as info:
        run(
            loop,
            loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=udp_peer.getsockname()
            ),
        )
    assert info.value.errno == errno.EADDRINUSE


def test_allow_broadcast(loop, udp_peer):
    remote = udp_peer.getsockname()

    async def main():
        tr, pr = await loop.create_datagram_endpoint(
            lambda: DgRecorder(loop), remote_addr=remote, allow_broadcast=True
        )
        sock = tr.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST) == 1
        # With allow_broadcast the socket is not connected; sendto() still defaults
        # to remote_addr and rejects other addresses.
        assert tr.get_extra_info("peername") is None
        tr.sendto(b"bcast")
        got = await loop.sock_recvfrom(udp_peer, 100)
        with pytest.raises(ValueError):
            tr.sendto(b"x", ("127.0.0.1", 1))
        await _close(tr, pr)
        return got[0]

    assert run(loop, main()) == b"bcast"


def test_family_only_ipv6(loop):
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as peer:
        peer.bind(("::1", 0))
        peer.setblocking(False)

        async def main():
            tr, pr = await loop.create_datagram_endpoint(
                lambda: DgRecorder(loop), family=socket.AF_INET6
            )
            sock = tr.get_extra_info("socket")
            assert sock.family == socket.AF_INET6
            tr.sendto(b"v6", peer.getsockname())
            data, _ = await loop.sock_recvfrom(peer, 100)
            await _close(tr, pr)
            return data

        assert run(loop, main()) == b"v6"


def test_ipv6_local_addr(loop):
    async def main():
        tr, pr = await loop.create_datagram_endpoint(
            lambda: DgRecorder(loop), local_addr=("::1", 0)
        )
        addr = tr.get_extra_info("sockname")
        await _close(tr, pr)
        return addr

    addr = run(loop, main())
    assert addr[0] == "::1"


def test_sock_argument(loop, udp_peer):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    async def main():
        tr, pr = await loop.create_datagram_endpoint(lambda: DgRecorder(loop), sock=sock)
        assert sock.gettimeout() == 0.0
        udp_peer.sendto(b"to sock", sock.getsockname())
        await pr.wait(lambda: pr.datagrams)
        await _close(tr, pr)
        return pr.datagrams

    assert run(loop, main()) == [(b"to sock", udp_peer.getsockname())]
    assert sock.fileno() == -1


def test_sock_argument_with_modifiers(loop):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    coro = loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, sock=sock, local_addr=("127.0.0.1", 0), reuse_port=True
    )
    with sock, pytest.raises(ValueError) as info:
        run(loop, coro)
    assert str(info.value) == (
        "socket modifier keyword arguments can not be used when sock is specified. "
        "(local_addr=('127.0.0.1', 0), reuse_port=True)"
    )


def test_stream_sock_rejected(loop):
    with socket.socket() as sock:
        with pytest.raises(ValueError) as info:
            run(loop, loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=sock))
        kind = "datagram socket" if sys.version_info >= (3, 13) else "UDP Socket"
        assert str(info.value) == f"A {kind} was expected, got {sock!r}"


def test_no_address_no_family(loop):
    with pytest.raises(ValueError) as info:
        run(loop, loop.create_datagram_endpoint(asyncio.DatagramProtocol))
    assert str(info.value) == "unexpected address family"


def test_address_must_be_2_tuple(loop):
    with pytest.raises(TypeError) as info:
        run(loop, loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr="127.0.0.1"))
    assert str(info.value) == "2-tuple is expected"


def test_reuse_address_not_accepted(loop):
    with pytest.raises(TypeError) as info:
        run(
            loop,
            loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0), reuse_address=True
            ),
        )
    assert "reuse_address" in str(info.value)


def test_unix_datagram(loop, tmp_path):
    a_path = str(tmp_path / "a.sock")
    b_path = str(tmp_path / "b.sock")

    async def main():
        tra, pra = await loop.create_datagram_endpoint(
            lambda: DgRecorder(loop), local_addr=a_path, family=socket.AF_UNIX
        )
        trb, prb = await loop.create_datagram_endpoint(
            lambda: DgRecorder(loop), local_addr=b_path, remote_addr=a_path, family=socket.AF_UNIX
        )
        trb.sendto(b"unix dgram")
        await pra.wait(lambda: pra.datagrams)
        tra.sendto(b"reply", b_path)
        await prb.wait(lambda: prb.datagrams)
        await _close(tra, pra)
        await _close(trb, prb)
        return pra.datagrams, prb.datagrams

    assert run(loop, main()) == ([(b"unix dgram", b_path)], [(b"reply", a_path)])


def test_unix_datagram_requires_str(loop):
    with pytest.raises(TypeError) as info:
        run(
            loop,
            loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=("x", 1), family=socket.AF_UNIX
            ),
        )
    assert str(info.value) == "string is expected"


def test_datagram_received_error_goes_to_handler(loop, loop_errors, udp_peer):
    """An exception in datagram_received() is not fatal: it reaches the loop's handler as a
    callback error and the endpoint keeps receiving."""

    class Bad(DgRecorder):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            if data == b"bad":
                raise ZeroDivisionError("bad datagram protocol")

    async def main():
        tr, pr = await loop.create_datagram_endpoint(lambda: Bad(loop), local_addr=("127.0.0.1", 0))
        udp_peer.sendto(b"bad", tr.get_extra_info("sockname"))
        udp_peer.sendto(b"good", tr.get_extra_info("sockname"))
        await pr.wait(lambda: len(pr.datagrams) == 2)
        assert not tr.is_closing()
        await _close(tr, pr)
        return [d for d, _ in pr.datagrams]

    assert run(loop, main()) == [b"bad", b"good"]
    assert len(loop_errors) == 1
    ctx = loop_errors.pop()
    assert ctx["message"].startswith("Exception in callback")
    assert isinstance(ctx["exception"], ZeroDivisionError)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_received_address_is_the_senders_sockname(loop, host):
    """The address handed to datagram_received is what the socket module reports for
    the sender: ``(host, port)`` for IPv4, ``(host, port, flowinfo, scope_id)`` for IPv6."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6")

    async def main():
        tr, pr = await loop.create_datagram_endpoint(lambda: DgRecorder(loop), local_addr=(host, 0))
        sender = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sender.bind((host, 0))
            sender.sendto(b"ping", tr.get_extra_info("sockname"))
            await pr.wait(lambda: pr.datagrams)
            return pr.datagrams[0], sender.getsockname()
        finally:
            sender.close()
            await _close(tr, pr)

    (data, addr), expected = run(loop, main())
    assert data == b"ping"
    assert addr == expected
    assert type(addr) is tuple and [type(x) for x in addr] == [type(x) for x in expected]


def test_burst_of_datagrams_arrives_in_order(loop, udp_peer):
    """Datagrams queued before the loop reads are all delivered, in order, one
    datagram per call, including empty ones."""
    payloads = [b"%d" % i for i in range(200)] + [b""]

    async def main():
        tr, pr = await loop.create_datagram_endpoint(
            lambda: DgRecorder(loop), local_addr=("127.0.0.1", 0)
        )
        try:
            for p in payloads:
                udp_peer.sendto(p, tr.get_extra_info("sockname"))
            await pr.wait(lambda: len(pr.datagrams) == len(payloads))
            return pr.datagrams
        finally:
            await _close(tr, pr)

    got = run(loop, main())
    assert [d for d, _ in got] == payloads
    assert {a for _, a in got} == {udp_peer.getsockname()}


def test_echo_round_trips_connected_and_unconnected(loop):
    """A server echoing with ``sendto(data, addr)`` and clients connected with
    ``remote_addr`` (``sendto(data)``) keep many round trips going."""

    class EchoServer(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

    async def main():
        st, _ = await loop.create_datagram_endpoint(EchoServer, local_addr=("127.0.0.1", 0))
        server_addr = st.get_extra_info("sockname")
        clients = []
        for _ in range(4):
            tr, pr = await loop.create_datagram_endpoint(
                lambda: DgRecorder(loop), remote_addr=server_addr
            )
            clients.append((tr, pr))
        for round_ in range(50):
            for i, (tr, _) in enumerate(clients):
                tr.sendto(b"%d:%d" % (i, round_))
            for _, pr in clients:
                await pr.wait(lambda pr=pr, n=round_ + 1: len(pr.datagrams) >= n)
        with pytest.raises(ValueError, match="Invalid address: must be None or"):
            clients[0][0].sendto(b"x", ("127.0.0.1", 1))
        result = [[d for d, _ in pr.datagrams] for _, pr in clients]
        for tr, pr in clients:
            await _close(tr, pr)
        st.close()
        return result

    result = run(loop, main())
    assert result == [[b"%d:%d" % (i, r) for r in range(50)] for i in range(4)]


def test_closed_transport_is_freed(loop, udp_peer):
    """After close, nothing keeps the transport (or its protocol) alive."""
    import gc
    import weakref

    async def main():
        tr, pr = await loop.create_datagram_endpoint(
            lambda: DgRecorder(loop), local_addr=("127.0.0.1", 0)
        )
        udp_peer.sendto(b"x", tr.get_extra_info("sockname"))
        await pr.wait(lambda: pr.datagrams)
        tr.sendto(b"y", udp_peer.getsockname())
        await _close(tr, pr)
        await asyncio.sleep(0)
        return weakref.ref(tr)

    ref = run(loop, main())
    gc.collect()
    assert ref() is None


def test_close_in_datagram_received_stops_delivery(loop, udp_peer):
    """A protocol that closes its transport on the first of several queued datagrams
    gets no more (ferroloop reads several datagrams per readiness event, as uvloop does;
    it stops as soon as the transport is closing)."""

    class ClosesOnFirst(DgRecorder):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            self.transport.close()

    async def main():
        tr, pr = await loop.create_datagram_endpoint(
            lambda: ClosesOnFirst(loop), local_addr=("127.0.0.1", 0)
        )
        for i in range(10):
            udp_peer.sendto(b"%d" % i, tr.get_extra_info("sockname"))
        await asyncio.sleep(0.05)  # all ten are queued before the loop reads
        await pr.lost
        await asyncio.sleep(0.01)
        return [d for d, _ in pr.datagrams]

    assert run(loop, main()) == [b"0"]


def test_queued_datagrams_after_an_exception_are_delivered(loop, loop_errors, udp_peer):
    """Each of several queued datagrams whose handler raises reaches the handler once;
    the datagrams behind it are still delivered, in order."""

    class RaisesOnOdd(DgRecorder):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            if int(data) % 2:
                raise ValueError(data)

    async def main():
        tr, pr = await loop.create_datagram_endpoint(
            lambda: RaisesOnOdd(loop), local_addr=("127.0.0.1", 0)
        )
        for i in range(40):
            udp_peer.sendto(b"%d" % i, tr.get_extra_info("sockname"))
        await pr.wait(lambda: len(pr.datagrams) == 40)
        await _close(tr, pr)
        return [d for d, _ in pr.datagrams]

    assert run(loop, main()) == [b"%d" % i for i in range(40)]
    assert sorted(int(c["exception"].args[0]) for c in loop_errors) == list(range(1, 40, 2))
    loop_errors.clear()


@pytest.mark.parametrize("connected", [False, True])
def test_socket_closed_behind_the_transport_and_its_fd_reused(loop, udp_peer, connected):
    """The transport's socket is closed by its owner and a new socket gets the same fd
    number: ``sendto`` reports the closed socket's EBADF through ``error_received`` (as
    asyncio does) and nothing reaches the new socket or the peer -- also to a peer whose
    address tuple the transport has seen before."""
    peer_addr = udp_peer.getsockname()

    async def main():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        if connected:
            sock.connect(peer_addr)
        tr, pr = await loop.create_datagram_endpoint(lambda: DgRecorder(loop), sock=sock)
        udp_peer.sendto(b"hello", sock.getsockname())
        await pr.wait(lambda: pr.datagrams)
        seen_addr = pr.datagrams[0][1]
        fd = sock.fileno()
        sock.close()
        reused = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if reused.fileno() != fd:
                pytest.skip("the fd number was not reused")
            reused.bind(("127.0.0.1", 0))
            if not connected:
                reused.connect(peer_addr)  # whatever is sent on it goes to the peer
            tr.sendto(b"lost", None if connected else seen_addr)
            await asyncio.sleep(0.05)
            with pytest.raises(BlockingIOError):
                udp_peer.recv(100)
            return [e.errno for e in pr.errors]
        finally:
            reused.close()
            tr.abort()

    assert run(loop, main()) == [errno.EBADF]


def test_set_protocol_redirects_datagrams_and_errors(loop, udp_peer):
    """After ``set_protocol`` the next datagrams and errors reach the new protocol, and
    ``get_protocol``/``is_closing``/the write buffer answer from the same state."""

    async def main():
        first = DgRecorder(loop)
        tr, _ = await loop.create_datagram_endpoint(lambda: first, local_addr=("127.0.0.1", 0))
        addr = tr.get_extra_info("sockname")
        udp_peer.sendto(b"one", addr)
        await first.wait(lambda: len(first.datagrams) == 1)
        second = DgRecorder(loop)
        tr.set_protocol(second)
        assert tr.get_protocol() is second
        udp_peer.sendto(b"two", addr)
        await second.wait(lambda: len(second.datagrams) == 1)
        tr.sendto(b"x" * 100_000, udp_peer.getsockname())  # EMSGSIZE
        await second.wait(lambda: len(second.errors) == 1)
        assert [d for d, _ in first.datagrams] == [b"one"]
        assert [d for d, _ in second.datagrams] == [b"two"]
        assert first.errors == [] and isinstance(second.errors[0], OSError)
        assert (tr.is_closing(), tr.get_write_buffer_size()) == (False, 0)
        tr.close()
        assert tr.is_closing()
        assert await second.lost is None
        assert first.events == ["made"] and second.events == ["lost"]

    run(loop, main())
