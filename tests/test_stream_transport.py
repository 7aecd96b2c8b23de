"""Socket stream transports: writing, buffering, flow control, EOF, close/abort, errors.

The client side is a transport made by ``create_connection``; the peer is a raw
non-blocking socket driven with ``loop.sock_*`` (or left unread, to fill buffers).
"""

from __future__ import annotations

import asyncio
import hashlib
import socket

import pytest
from ferro_testutil import asyncio_records
from io_testutil import (
    KeepOpen,
    Recorder,
    run,
    set_rst_on_close,
    sock_recv_all,
    tcp_connected,
)

pytestmark = pytest.mark.timeout(30)

SMALL = 32 * 1024  # small kernel buffers for flow-control tests


async def _settle(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def _until(pred, timeout: float = 5.0) -> None:
    """Poll ``pred()`` every 5 ms (bounded)."""
    for _ in range(int(timeout / 0.005)):
        if pred():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


# -- writing ---------------------------------------------------------------------------


def test_write_tries_the_socket_first(loop):
    """A write on an idle transport goes to the socket at once (no loop iteration needed)."""

    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            tr.write(b"immediate")
            assert tr.get_write_buffer_size() == 0
            peer.settimeout(5)
            data = peer.recv(100)  # blocking: the loop does not run meanwhile
            tr.close()
            await pr.lost
        return data

    assert run(loop, main()) == b"immediate"


def test_write_accepts_bytes_like(loop):
    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            tr.write(b"a")
            tr.write(bytearray(b"b"))
            tr.write(memoryview(b"xcx")[1:2])
            tr.writelines([b"d", bytearray(b"e"), memoryview(b"f")])
            tr.writelines(iter([b"g", b"h"]))
            tr.close()
            data = await sock_recv_all(loop, peer)
            await pr.lost
        return data

    assert run(loop, main()) == b"abcdefgh"


@pytest.mark.parametrize("data", ["text", 42, None, [b"x"]], ids=["str", "int", "None", "list"])
def test_write_rejects_non_bytes(loop, data):
    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            with pytest.raises(TypeError) as info:
                tr.write(data)
            tr.close()
            await pr.lost
        return str(info.value)

    msg = run(loop, main())
    assert msg == f"data argument must be a bytes-like object, not {type(data).__name__!r}"


def test_write_argument_shapes(loop):
    """``write(data=...)`` by keyword works as the stdlib's Python method does; no
    argument, two, or an unknown keyword is a TypeError naming ``write``."""

    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            tr.write(data=b"kw")
            for args, kwargs in [((), {}), ((b"a", b"b"), {}), ((), {"buf": b"x"})]:
                with pytest.raises(TypeError, match=r"write\(\)"):
                    tr.write(*args, **kwargs)
            tr.close()
            data = await sock_recv_all(loop, peer)
            await pr.lost
        return data

    assert run(loop, main()) == b"kw"


def test_transport_takes_new_attributes_and_weak_references(loop, impl):
    """A stream transport is an ordinary object to the code that holds it: a new
    attribute is kept (and listed by ``vars()``), a weak reference works. On ferroloop
    the instance dictionary is the interpreter's managed one (the native class has
    none of its own), which is what lets ``transport.write`` and the other method
    lookups from Python code be specialised."""
    import weakref

    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            tr.custom_tag = "mine"
            assert tr.custom_tag == "mine"
            assert vars(tr)["custom_tag"] == "mine"
            ref = weakref.ref(tr)
            assert ref() is tr
            if impl.name == "ferroloop":
                managed_dict = 1 << 4  # Py_TPFLAGS_MANAGED_DICT (3.11+)
                assert type(tr).__flags__ & managed_dict
            tr.close()
            await pr.lost

    run(loop, main())


def test_zero_length_writes(loop, asyncio_logger_caplog):
    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            tr.write(b"")
            tr.write(bytearray())
            tr.writelines([])
            tr.writelines([b"", b""])
            assert tr.get_write_buffer_size() == 0
            tr.write(b"x")
            tr.close()
            for _ in range(10):
                tr.write(b"")  # empty writes are ignored even when closed
            data = await sock_recv_all(loop, peer)
            await pr.lost
        return data

    assert run(loop, main()) == b"x"
    assert asyncio_records(asyncio_logger_caplog) == []


def test_huge_write(loop):
    """32 MiB in one write(): buffered, delivered intact, one pause/resume cycle."""
    payload = hashlib.sha256(b"seed").digest() * (32 * 1024 * 1024 // 32)

    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            tr.write(payload)
            buffered = tr.get_write_buffer_size()
            assert 0 < buffered <= len(payload)
            assert pr.events == ["made", "pause"]
            h = hashlib.sha256()
            total = 0
            while total < len(payload):
                data = await loop.sock_recv(peer, 1 << 20)
                assert data
                total += len(data)
                h.update(data)
            await _until(lambda: tr.get_write_buffer_size() == 0)
            await pr.resumed
            tr.close()
            assert await loop.sock_recv(peer, 10) == b""
            await pr.lost
        return total, h.hexdigest(), pr.events

    total, digest, events = run(loop, main(), timeout=60)
    assert total == len(payload)
    assert digest == hashlib.sha256(payload).hexdigest()
    assert events == ["made", "pause", "resume", "lost"]


def test_write_buffer_grows_when_peer_does_not_read(loop):
    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop), sndbuf=SMALL, rcvbuf=SMALL)
        with peer:
            chunk = b"z" * 65536
            for _ in range(200):
                tr.write(chunk)
                if tr.get_write_buffer_size():
                    break
            size1 = tr.get_write_buffer_size()
            assert size1 > 0
            tr.write(chunk)
            assert tr.get_write_buffer_size() == size1 + len(chunk)
            await asyncio.sleep(0.02)
            # Nobody reads: the buffer does not shrink (much).
            assert tr.get_write_buffer_size() > size1
            tr.abort()
            await pr.lost
        return tr.get_write_buffer_size()

    assert run(loop, main()) == 0


# -- flow control ----------------------------------------------------------------------


def test_default_write_buffer_limits(loop):
    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            limits = tr.get_write_buffer_limits()
            tr.close()
            await pr.lost
        return limits

    assert run(loop, main()) == (16 * 1024, 64 * 1024)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"high": 1000}, (250, 1000)),
        ({"low": 100}, (100, 400)),
        ({"high": 1000, "low": 10}, (10, 1000)),
        ({"high": 0}, (0, 0)),
        ({}, (16 * 1024, 64 * 1024)),
    ],
    ids=["high", "low", "both", "zero", "defaults"],
)
def test_set_write_buffer_limits(loop, kwargs, expected):
    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            tr.set_write_buffer_limits(**kwargs)
            limits = tr.get_write_buffer_limits()
            tr.close()
            await pr.lost
        return limits

    assert run(loop, main()) == expected


def test_set_write_buffer_limits_invalid(loop):
    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            with pytest.raises(ValueError) as info:
                tr.set_write_buffer_limits(high=10, low=20)
            msg1 = str(info.value)
            with pytest.raises(ValueError) as info:
                tr.set_write_buffer_limits(high=-1, low=-2)
            msg2 = str(info.value)
            tr.close()
            await pr.lost
        return msg1, msg2

    assert run(loop, main()) == (
        "high (10) must be >= low (20) must be >= 0",
        "high (-1) must be >= low (-2) must be >= 0",
    )


def test_pause_and_resume_writing(loop):
    """Above the high-water mark pause_writing() is called once; resume_writing() once the
    buffer drains to the low-water mark."""

    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop), sndbuf=SMALL, rcvbuf=SMALL)
        with peer:
            tr.set_write_buffer_limits(high=4096, low=1024)
            chunk = b"p" * 1024
            for _ in range(10_000):
                tr.write(chunk)
                if pr.paused.done():
                    break
            assert pr.events == ["made", "pause"]
            assert tr.get_write_buffer_size() > 4096
            tr.write(chunk)  # still paused: no second pause_writing()
            assert pr.events == ["made", "pause"]
            received = bytearray()
            while not pr.resumed.done():
                received += await loop.sock_recv(peer, 65536)
            assert pr.events == ["made", "pause", "resume"]
            assert tr.get_write_buffer_size() <= 1024
            tr.close()
            received += await sock_recv_all(loop, peer)
            await pr.lost
        return pr.events, set(received)

    events, contents = run(loop, main())
    assert events == ["made", "pause", "resume", "lost"]
    assert contents == {ord("p")}


def test_lowering_high_water_pauses_at_once(loop):
    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop), sndbuf=SMALL, rcvbuf=SMALL)
        with peer:
            chunk = b"q" * 4096
            for _ in range(10_000):
                tr.write(chunk)
                if tr.get_write_buffer_size():
                    break
            assert 0 < tr.get_write_buffer_size() <= 64 * 1024
            assert pr.events == ["made"]
            tr.set_write_buffer_limits(high=0)
            assert pr.events == ["made", "pause"]
            tr.abort()
            await pr.lost
        return pr.events

    assert run(loop, main()) == ["made", "pause", "lost"]


# -- reading -----------------------------------------------------------------------------


def test_pause_resume_reading(loop):
    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            assert tr.is_reading() is True
            tr.pause_reading()
            assert tr.is_reading() is False
            tr.pause_reading()  # idempotent
            assert tr.is_reading() is False
            await loop.sock_sendall(peer, b"while paused")
            await asyncio.sleep(0.05)
            assert pr.data == b""
            tr.resume_reading()
            assert tr.is_reading() is True
            tr.resume_reading()  # idempotent
            data = await pr.wait_data(12)
            tr.close()
            assert tr.is_reading() is False
            tr.resume_reading()  # no-op on a closing transport
            assert tr.is_reading() is False
            await pr.lost
        return data

    assert run(loop, main()) == b"while paused"


def test_pause_reading_in_connection_made(loop):
    class PauseAtOnce(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.pause_reading()

    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: PauseAtOnce(loop))
        with peer:
            await loop.sock_sendall(peer, b"early")
            await asyncio.sleep(0.05)
            assert pr.data == b""
            tr.resume_reading()
            data = await pr.wait_data(5)
            tr.close()
            await pr.lost
        return data

    assert run(loop, main()) == b"early"


def test_buffered_protocol_small_buffer(loop):
    class Small(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(16)
            self.hints = set()
            self.sizes = []
            self.data = bytearray()
            self.done = loop.create_future()
            self.lost = loop.create_future()

        def connection_made(self, transport):
            self.transport = transport

        def get_buffer(self, sizehint):
            self.hints.add(sizehint)
            return memoryview(self.buf)

        def buffer_updated(self, nbytes):
            self.sizes.append(nbytes)
            self.data += self.buf[:nbytes]

        def eof_received(self):
            self.done.set_result(None)

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    payload = bytes(range(256)) * 40

    async def main():
        _tr, pr, peer = await tcp_connected(loop, Small)
        with peer:
            await loop.sock_sendall(peer, payload)
            peer.shutdown(socket.SHUT_WR)
            await pr.done
            exc = await pr.lost
        return pr, exc

    pr, exc = run(loop, main())
    assert bytes(pr.data) == payload
    assert max(pr.sizes) <= 16
    assert sum(pr.sizes) == len(payload)
    assert pr.hints == {-1}
    assert exc is None


def test_buffered_protocol_empty_buffer_is_fatal(loop, loop_errors):
    class Empty(asyncio.BufferedProtocol):
        def __init__(self):
            self.lost = loop.create_future()

        def get_buffer(self, sizehint):
            return bytearray()

        def buffer_updated(self, nbytes):
            raise AssertionError("not reached")

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    async def main():
        _tr, pr, peer = await tcp_connected(loop, Empty)
        with peer:
            await loop.sock_sendall(peer, b"x")
            return await pr.lost

    exc = run(loop, main())
    assert isinstance(exc, RuntimeError)
    assert str(exc) == "get_buffer() returned an empty buffer"
    assert len(loop_errors) == 1
    ctx = loop_errors.pop()
    assert ctx["message"] == "Fatal error: protocol.get_buffer() call failed."
    assert ctx["exception"] is exc
    assert {"transport", "protocol"} <= set(ctx)


def test_data_received_error_is_fatal(loop, loop_errors):
    class Bad(Recorder):
        def data_received(self, data):
            raise ZeroDivisionError("bad protocol")

    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Bad(loop))
        with peer:
            await loop.sock_sendall(peer, b"x")
            exc = await pr.lost
            assert tr.is_closing()
            # The transport closed its socket: the peer sees EOF.
            assert await sock_recv_all(loop, peer) == b""
        return exc

    exc = run(loop, main())
    assert isinstance(exc, ZeroDivisionError)
    assert len(loop_errors) == 1
    ctx = loop_errors.pop()
    assert ctx["message"] == "Fatal error: protocol.data_received() call failed."
    assert ctx["exception"] is exc


# -- EOF and half-closed connections ---------------------------------------------------


def test_can_write_eof_and_write_eof(loop):
    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            assert tr.can_write_eof() is True
            tr.write(b"before eof")
            tr.write_eof()
            tr.write_eof()  # idempotent
            assert tr.is_closing() is False
            got = await sock_recv_all(loop, peer)
            with pytest.raises(RuntimeError) as info:
                tr.write(b"after")
            assert str(info.value) == "Cannot call write() after write_eof()"
            with pytest.raises(RuntimeError):
                tr.write(b"")  # the eof check comes before the empty-data shortcut
            # The read side still works.
            await loop.sock_sendall(peer, b"still reading")
            data = await pr.wait_data(13)
            tr.close()
            await pr.lost
        return got, data

    assert run(loop, main()) == (b"before eof", b"still reading")


def test_write_eof_after_buffered_data(loop):
    """write_eof() with data buffered: the FIN goes out after the buffer drains."""
    payload = b"w" * (4 * 1024 * 1024)

    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop), sndbuf=SMALL, rcvbuf=SMALL)
        with peer:
            tr.write(payload)
            assert tr.get_write_buffer_size() > 0
            tr.write_eof()
            got = await sock_recv_all(loop, peer)
            tr.close()
            await pr.lost
        return len(got)

    assert run(loop, main()) == len(payload)


def test_peer_eof_closes_transport_by_default(loop):
    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            await loop.sock_sendall(peer, b"bye")
            peer.shutdown(socket.SHUT_WR)
            exc = await pr.lost
            assert tr.is_closing()
            assert await sock_recv_all(loop, peer) == b""
        return pr.events, bytes(pr.data), exc

    assert run(loop, main()) == (["made", "eof", "lost"], b"bye", None)


def test_eof_received_true_keeps_transport_open(loop):
    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: KeepOpen(loop))
        with peer:
            peer.shutdown(socket.SHUT_WR)
            await pr.eof
            await asyncio.sleep(0.02)
            assert not tr.is_closing()
            assert not pr.lost.done()
            tr.write(b"reply after eof")
            tr.close()
            got = await sock_recv_all(loop, peer)
            exc = await pr.lost
        return got, pr.events, exc

    assert run(loop, main()) == (b"reply after eof", ["made", "eof", "lost"], None)


def test_eof_received_error_is_fatal(loop, loop_errors):
    class Bad(Recorder):
        def eof_received(self):
            raise ZeroDivisionError("eof failed")

    async def main():
        _tr, pr, peer = await tcp_connected(loop, lambda: Bad(loop))
        with peer:
            peer.shutdown(socket.SHUT_WR)
            return await pr.lost

    exc = run(loop, main())
    assert isinstance(exc, ZeroDivisionError)
    ctx = loop_errors.pop()
    assert ctx["message"] == "Fatal error: protocol.eof_received() call failed."
    assert loop_errors == []


# -- close / abort / connection loss ---------------------------------------------------


def test_close_flushes_buffered_data(loop):
    payload = bytes(range(256)) * (4 * 1024 * 1024 // 256)

    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop), sndbuf=SMALL, rcvbuf=SMALL)
        with peer:
            tr.write(payload)
            assert tr.get_write_buffer_size() > 0
            tr.close()
            assert tr.is_closing()
            tr.close()  # idempotent
            await asyncio.sleep(0.02)
            assert not pr.lost.done()  # waits for the buffer to drain
            got = await sock_recv_all(loop, peer)
            exc = await pr.lost
        return got, exc, pr.events

    got, exc, events = run(loop, main())
    assert got == payload
    assert exc is None
    assert events == ["made", "pause", "resume", "lost"]


def test_close_is_reported_on_next_iteration(loop):
    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            tr.close()
            assert tr.is_closing()
            assert pr.events == ["made"]
            await asyncio.sleep(0)
            return pr.events

    assert run(loop, main()) == ["made", "lost"]


def test_abort_drops_buffered_data(loop):
    payload = b"a" * (8 * 1024 * 1024)

    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop), sndbuf=SMALL, rcvbuf=SMALL)
        with peer:
            tr.write(payload)
            assert tr.get_write_buffer_size() > 0
            tr.abort()
            assert tr.is_closing()
            assert tr.get_write_buffer_size() == 0
            exc = await pr.lost
            got = bytearray()
            try:
                got += await sock_recv_all(loop, peer)
            except ConnectionResetError:
                pass
        return len(got), exc, pr.events

    n, exc, events = run(loop, main())
    assert n < len(payload)
    assert exc is None
    assert events == ["made", "pause", "lost"]


def test_abort_twice_and_close_after_abort(loop):
    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            tr.abort()
            tr.abort()
            tr.close()
            await pr.lost
            await _settle()
        return pr.events

    assert run(loop, main()) == ["made", "lost"]


def test_peer_reset_gives_connection_lost_oserror(loop):
    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        set_rst_on_close(peer)
        peer.close()
        exc = await pr.lost
        return exc, pr.events, tr.is_closing()

    exc, events, closing = run(loop, main())
    assert isinstance(exc, ConnectionResetError)
    assert events == ["made", "lost"]
    assert closing is True


def test_peer_clean_close_gives_connection_lost_none(loop):
    async def main():
        _tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        peer.close()
        return await pr.lost, pr.events

    assert run(loop, main()) == (None, ["made", "eof", "lost"])


@pytest.mark.parametrize("how", ["close", "abort", "peer_reset"])
def test_writes_after_connection_lost_are_logged(loop, asyncio_logger_caplog, how):
    """Writes to a lost connection are dropped; from the 5th on, each logs a warning."""

    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            if how == "close":
                tr.close()
            elif how == "abort":
                tr.abort()
            else:
                set_rst_on_close(peer)
                peer.close()
            await pr.lost
            counts = []
            for _ in range(8):
                tr.write(b"lost")
                counts.append(len(asyncio_records(asyncio_logger_caplog)))
        return counts

    counts = run(loop, main())
    assert counts == [0, 0, 0, 0, 1, 2, 3, 4]
    records = asyncio_records(asyncio_logger_caplog)
    assert {r.getMessage() for r in records} == {"socket.send() raised exception."}
    assert {r.levelname for r in records} == {"WARNING"}


def test_writes_right_after_close_are_dropped(loop, asyncio_logger_caplog):
    """close() with an empty buffer: later writes are dropped (not sent), silently at first."""

    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            tr.write(b"sent")
            tr.close()
            tr.write(b"dropped")
            got = await sock_recv_all(loop, peer)
            await pr.lost
        return got

    assert run(loop, main()) == b"sent"
    assert asyncio_records(asyncio_logger_caplog) == []


# -- extra info, protocol switching ----------------------------------------------------


def test_get_extra_info(loop):
    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            sock = tr.get_extra_info("socket")
            info = {
                "socket_type": type(sock),
                "family": sock.family,
                "type": sock.type,
                "fileno_ok": sock.fileno() >= 0,
                "sockname": tr.get_extra_info("sockname"),
                "peername": tr.get_extra_info("peername"),
                "sock_sockname": sock.getsockname(),
                "sock_peername": sock.getpeername(),
                "peer_view": (peer.getpeername(), peer.getsockname()),
                "missing": tr.get_extra_info("no such key"),
                "default": tr.get_extra_info("no such key", "dflt"),
                "sslcontext": tr.get_extra_info("sslcontext"),
            }
            tr.close()
            await pr.lost
        return info

    info = run(loop, main())
    assert info["socket_type"] is asyncio.trsock.TransportSocket
    assert info["family"] == socket.AF_INET
    assert info["type"] == socket.SOCK_STREAM
    assert info["fileno_ok"]
    assert info["sockname"] == info["sock_sockname"] == info["peer_view"][0]
    assert info["peername"] == info["sock_peername"] == info["peer_view"][1]
    assert info["missing"] is None
    assert info["default"] == "dflt"
    assert info["sslcontext"] is None


def test_set_protocol_get_protocol(loop):
    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            assert tr.get_protocol() is pr
            await loop.sock_sendall(peer, b"one")
            await pr.wait_data(3)
            other = Recorder(loop)
            tr.set_protocol(other)
            assert tr.get_protocol() is other
            await loop.sock_sendall(peer, b"two")
            await other.wait_data(3)
            tr.close()
            await other.lost
        return bytes(pr.data), bytes(other.data), pr.events, other.events

    # The new protocol gets no connection_made(); connection_lost() goes to it.
    assert run(loop, main()) == (b"one", b"two", ["made"], ["lost"])


def test_set_protocol_to_buffered_protocol(loop):
    class Buf(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(64)
            self.data = bytearray()
            self.got = loop.create_future()

        def get_buffer(self, sizehint):
            return self.buf

        def buffer_updated(self, nbytes):
            self.data += self.buf[:nbytes]
            if len(self.data) >= 8 and not self.got.done():
                self.got.set_result(None)

        def connection_lost(self, exc):
            pass

    async def main():
        tr, _pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            other = Buf()
            tr.set_protocol(other)
            await loop.sock_sendall(peer, b"buffered")
            await other.got
            tr.close()
            await _settle()
        return bytes(other.data)

    assert run(loop, main()) == b"buffered"


def test_transport_is_closing_and_repr_does_not_fail(loop):
    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            assert tr.is_closing() is False
            r1 = repr(tr)
            tr.close()
            assert tr.is_closing() is True
            r2 = repr(tr)
            await pr.lost
            r3 = repr(tr)
        return r1, r2, r3

    for r in run(loop, main()):
        assert r.startswith("<") and r.endswith(">")


# -- callbacks driving the transport -----------------------------------------------------


def test_pause_reading_inside_data_received(loop):
    """pause_reading() from data_received() stops delivery at once, even with more data
    already waiting in the socket; each chunk is at most 256 KiB (asyncio's max_size)."""

    class PauseFirst(Recorder):
        def __init__(self, loop):
            super().__init__(loop)
            self.chunks = []

        def data_received(self, data):
            self.chunks.append(len(data))
            super().data_received(data)
            if len(self.chunks) == 1:
                self.transport.pause_reading()

    payload = b"r" * (1024 * 1024)

    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: PauseFirst(loop))
        with peer:
            tr.pause_reading()
            await loop.sock_sendall(peer, payload)
            await asyncio.sleep(0.05)  # everything is queued in the kernel
            tr.resume_reading()
            await pr.wait_data(1)
            await asyncio.sleep(0.05)
            assert len(pr.chunks) == 1
            assert not tr.is_reading()
            tr.resume_reading()
            data = await pr.wait_data(len(payload))
            tr.close()
            await pr.lost
        return pr.chunks, len(data)

    chunks, n = run(loop, main())
    assert n == len(payload)
    assert max(chunks) <= 256 * 1024
    assert sum(chunks) == len(payload)


def test_close_inside_data_received_drops_later_data(loop):
    class CloseOnFirst(Recorder):
        def data_received(self, data):
            super().data_received(data)
            self.transport.write(b"ack")
            self.transport.close()
            self.transport.write(b"dropped")

    async def main():
        _tr, pr, peer = await tcp_connected(loop, lambda: CloseOnFirst(loop))
        with peer:
            await loop.sock_sendall(peer, b"first")
            exc = await pr.lost
            got = await sock_recv_all(loop, peer)
        return exc, got, bytes(pr.data), pr.events

    assert run(loop, main()) == (None, b"ack", b"first", ["made", "lost"])


def test_connection_made_error_is_a_callback_error(loop, loop_errors):
    """An exception in connection_made() reaches the handler; the connection still works."""

    class BadMade(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            raise ZeroDivisionError("connection_made failed")

    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: BadMade(loop))
        with peer:
            assert not tr.is_closing()
            await loop.sock_sendall(peer, b"still works")
            data = await pr.wait_data(11)
            tr.close()
            await pr.lost
        return data

    assert run(loop, main()) == b"still works"
    assert len(loop_errors) == 1
    ctx = loop_errors.pop()
    assert ctx["message"].startswith("Exception in callback")
    assert isinstance(ctx["exception"], ZeroDivisionError)


def test_bidirectional_echo_with_backpressure(loop):
    """Two transports of the loop under test echo 8 MiB; the echo side pauses reading
    while its writes are paused (protocol-level backpressure)."""
    payload = hashlib.sha256(b"echo").digest() * (8 * 1024 * 1024 // 32)

    class EchoBack(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            transport.set_write_buffer_limits(high=64 * 1024)

        def data_received(self, data):
            self.transport.write(data)

        def pause_writing(self):
            self.transport.pause_reading()

        def resume_writing(self):
            self.transport.resume_reading()

        def eof_received(self):
            return None  # close once the echo is flushed

    class Sender(Recorder):
        def __init__(self, loop):
            super().__init__(loop)
            self.can_write = asyncio.Event()
            self.can_write.set()

        def pause_writing(self):
            super().pause_writing()
            self.can_write.clear()

        def resume_writing(self):
            super().resume_writing()
            self.can_write.set()

    async def main():
        server = await loop.create_server(EchoBack, "127.0.0.1", 0)
        tr, pr = await loop.create_connection(
            lambda: Sender(loop), *server.sockets[0].getsockname()
        )
        view = memoryview(payload)
        for i in range(0, len(payload), 256 * 1024):
            await pr.can_write.wait()
            tr.write(view[i : i + 256 * 1024])
        tr.write_eof()
        await pr.lost
        server.close()
        await server.wait_closed()
        return hashlib.sha256(pr.data).hexdigest(), len(pr.data), pr.events[-2:]

    digest, n, tail = run(loop, main(), timeout=60)
    assert n == len(payload)
    assert digest == hashlib.sha256(payload).hexdigest()
    assert tail == ["eof", "lost"]


def test_reads_follow_changing_transfer_sizes(loop):
    """Bursts of very different sizes arrive whole and in order, then the EOF: small
    messages, then 40 KiB ones (the transport reads large transfers into a buffer sized
    from its last read), then 6 MiB at once (more than any one read asks for), then small
    ones again."""
    chunks = [b"a" * 100, b"b" * 900]
    chunks += [bytes([i]) * (40 * 1024) for i in range(5)]
    chunks += [hashlib.sha256(b"big").digest() * (6 * 1024 * 1024 // 32)]
    chunks += [b"c" * 10, b"d" * 5000, b"e" * 17]

    async def main():
        tr, pr, peer = await tcp_connected(loop, lambda: Recorder(loop))
        with peer:
            for chunk in chunks:
                await loop.sock_sendall(peer, chunk)
                await _settle(2)
            peer.shutdown(socket.SHUT_WR)
            await pr.eof
            tr.close()
            await pr.lost
        return bytes(pr.data), pr.events

    data, events = run(loop, main(), timeout=60)
    assert data == b"".join(chunks)
    assert events == ["made", "eof", "lost"]
