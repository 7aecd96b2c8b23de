"""connect_read_pipe / connect_write_pipe over os.pipe() (and socket pairs)."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile

import pytest
from ferro_testutil import asyncio_records
from io_testutil import KeepOpen, Recorder, run

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pipe():
    """(read_fd, write_fd) of an os.pipe(); whatever is still open is closed at teardown."""
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def _read_all_blocking(fd: int) -> bytes:
    os.set_blocking(fd, True)
    chunks = []
    while True:
        data = os.read(fd, 1 << 20)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


async def _read_fd_async(loop, fd: int) -> bytes:
    """Read ``fd`` until EOF with add_reader (keeps the loop running)."""
    os.set_blocking(fd, False)
    chunks = []
    done = loop.create_future()

    def on_readable():
        try:
            data = os.read(fd, 1 << 20)
        except BlockingIOError:
            return
        if data:
            chunks.append(data)
        else:
            loop.remove_reader(fd)
            done.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
    return b"".join(chunks)


# -- read pipes ------------------------------------------------------------------------


def test_read_pipe_data_eof_lost(loop, pipe):
    r, w = pipe
    rfile = os.fdopen(r, "rb", 0)

    async def main():
        tr, pr = await loop.connect_read_pipe(lambda: Recorder(loop), rfile)
        assert pr.events == ["made"]
        assert tr.get_extra_info("pipe") is rfile
        assert os.get_blocking(r) is False
        assert tr.is_reading()
        os.write(w, b"through ")
        os.write(w, b"the pipe")
        data = await pr.wait_data(16)
        os.close(w)
        exc = await pr.lost
        return data, pr.events, exc, tr.is_closing()

    data, events, exc, closing = run(loop, main())
    assert data == b"through the pipe"
    assert events == ["made", "eof", "lost"]
    assert exc is None
    assert closing is True
    assert rfile.closed


def test_read_pipe_eof_received_return_value_ignored(loop, pipe):
    """Unlike sockets, a read pipe closes on EOF even if eof_received() returns True."""
    r, w = pipe

    async def main():
        _tr, pr = await loop.connect_read_pipe(lambda: KeepOpen(loop), os.fdopen(r, "rb", 0))
        os.close(w)
        return await pr.lost, pr.events

    assert run(loop, main()) == (None, ["made", "eof", "lost"])


def test_read_pipe_pause_resume(loop, pipe):
    r, w = pipe

    async def main():
        tr, pr = await loop.connect_read_pipe(lambda: Recorder(loop), os.fdopen(r, "rb", 0))
        tr.pause_reading()
        assert tr.is_reading() is False
        tr.pause_reading()
        os.write(w, b"held")
        await asyncio.sleep(0.05)
        assert pr.data == b""
        tr.resume_reading()
        assert tr.is_reading() is True
        data = await pr.wait_data(4)
        tr.close()
        assert tr.is_closing() and not tr.is_reading()
        tr.resume_reading()  # no-op once closing
        exc = await pr.lost
        return data, exc, pr.events

    assert run(loop, main()) == (b"held", None, ["made", "lost"])


def test_read_pipe_close_closes_file(loop, pipe):
    r, w = pipe
    rfile = os.fdopen(r, "rb", 0)

    async def main():
        tr, pr = await loop.connect_read_pipe(lambda: Recorder(loop), rfile)
        tr.close()
        tr.close()
        await pr.lost
        await asyncio.sleep(0)
        return pr.events

    assert run(loop, main()) == ["made", "lost"]
    assert rfile.closed
    with pytest.raises(BrokenPipeError):
        os.write(w, b"x")


def test_read_pipe_large_transfer(loop, pipe):
    r, w = pipe
    payload = os.urandom(1024) * 2048  # 2 MiB

    async def main():
        _tr, pr = await loop.connect_read_pipe(lambda: Recorder(loop), os.fdopen(r, "rb", 0))
        wtr, wpr = await loop.connect_write_pipe(lambda: Recorder(loop), os.fdopen(w, "wb", 0))
        wtr.write(payload)
        wtr.close()
        await pr.lost
        await wpr.lost
        return bytes(pr.data), wpr.events

    data, wevents = run(loop, main())
    assert data == payload
    assert wevents == ["made", "pause", "resume", "lost"]


def test_read_pipe_rejects_regular_file(loop):
    with tempfile.TemporaryFile() as f, pytest.raises(ValueError) as info:
        run(loop, loop.connect_read_pipe(asyncio.Protocol, f))
    assert str(info.value) == "Pipe transport is for pipes/sockets only."


def test_read_pipe_on_socket(loop):
    a, b = socket.socketpair()
    with b:

        async def main():
            _tr, pr = await loop.connect_read_pipe(lambda: Recorder(loop), a)
            b.sendall(b"sock as pipe")
            data = await pr.wait_data(12)
            b.shutdown(socket.SHUT_WR)
            await pr.lost
            return data, pr.events

        assert run(loop, main()) == (b"sock as pipe", ["made", "eof", "lost"])


def test_read_pipe_data_received_error(loop, pipe, loop_errors):
    class Bad(Recorder):
        def data_received(self, data):
            raise ZeroDivisionError("bad pipe protocol")

    r, w = pipe

    async def main():
        tr, pr = await loop.connect_read_pipe(lambda: Bad(loop), os.fdopen(r, "rb", 0))
        os.write(w, b"x")
        await asyncio.sleep(0.05)
        closing = tr.is_closing()
        tr.close()
        await pr.lost
        return closing

    # Not caught by the pipe transport: a plain callback error, the pipe stays open.
    assert run(loop, main()) is False
    assert len(loop_errors) == 1
    ctx = loop_errors.pop()
    assert ctx["message"].startswith("Exception in callback")
    assert isinstance(ctx["exception"], ZeroDivisionError)


# -- write pipes -----------------------------------------------------------------------


def test_write_pipe_basic(loop, pipe):
    r, w = pipe
    wfile = os.fdopen(w, "wb", 0)

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop), wfile)
        assert tr.get_extra_info("pipe") is wfile
        assert os.get_blocking(w) is False
        assert tr.can_write_eof() is True
        tr.write(b"abc")
        assert tr.get_write_buffer_size() == 0
        assert os.read(r, 100) == b"abc"  # written synchronously
        tr.write(bytearray(b"def"))
        tr.write(memoryview(b"ghi"))
        tr.writelines([b"j", b"k"])
        tr.write(b"")
        tr.write_eof()
        assert tr.is_closing()
        exc = await pr.lost
        return exc, pr.events

    assert run(loop, main()) == (None, ["made", "lost"])
    assert _read_all_blocking(r) == b"defghijk"
    assert wfile.closed


def test_write_pipe_flow_control(loop, pipe):
    r, w = pipe

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop), os.fdopen(w, "wb", 0))
        tr.set_write_buffer_limits(high=1024, low=256)
        payload = b"f" * (1024 * 1024)
        tr.write(payload)
        size = tr.get_write_buffer_size()
        assert 0 < size < len(payload)
        assert pr.events == ["made", "pause"]
        reader = asyncio.ensure_future(_read_fd_async(loop, r))
        await pr.resumed
        assert tr.get_write_buffer_size() <= 256
        tr.close()
        await pr.lost
        data = await reader
        return len(data), pr.events

    n, events = run(loop, main())
    assert n == 1024 * 1024
    assert events == ["made", "pause", "resume", "lost"]


def test_write_pipe_close_flushes(loop, pipe):
    r, w = pipe
    payload = os.urandom(1024) * 512  # 512 KiB > pipe capacity

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop), os.fdopen(w, "wb", 0))
        tr.write(payload)
        assert tr.get_write_buffer_size() > 0
        tr.close()
        assert tr.is_closing()
        await asyncio.sleep(0.02)
        assert not pr.lost.done()
        data = await _read_fd_async(loop, r)
        exc = await pr.lost
        return data, exc

    data, exc = run(loop, main())
    assert data == payload
    assert exc is None


def test_write_pipe_abort_drops(loop, pipe):
    r, w = pipe

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop), os.fdopen(w, "wb", 0))
        tr.write(b"a" * (1024 * 1024))
        assert tr.get_write_buffer_size() > 0
        tr.abort()
        assert tr.get_write_buffer_size() == 0
        exc = await pr.lost
        data = await _read_fd_async(loop, r)
        return exc, len(data)

    exc, n = run(loop, main())
    assert exc is None
    assert 0 < n < 1024 * 1024


def test_write_pipe_reader_closed_empty_buffer(loop, pipe):
    r, w = pipe

    async def main():
        _tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop), os.fdopen(w, "wb", 0))
        os.close(r)
        exc = await pr.lost
        return exc, pr.events

    assert run(loop, main()) == (None, ["made", "lost"])


def test_write_pipe_reader_closed_with_buffer(loop, pipe):
    r, w = pipe

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop), os.fdopen(w, "wb", 0))
        tr.write(b"b" * (1024 * 1024))
        assert tr.get_write_buffer_size() > 0
        os.close(r)
        return await pr.lost

    exc = run(loop, main())
    assert isinstance(exc, BrokenPipeError)


def test_write_pipe_writes_after_close_are_logged(loop, pipe, asyncio_logger_caplog):
    _r, w = pipe

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop), os.fdopen(w, "wb", 0))
        tr.close()
        await pr.lost
        counts = []
        for _ in range(8):
            tr.write(b"late")
            counts.append(len(asyncio_records(asyncio_logger_caplog)))
        return counts

    assert run(loop, main()) == [0, 0, 0, 0, 0, 1, 2, 3]
    msgs = {r.getMessage() for r in asyncio_records(asyncio_logger_caplog)}
    assert msgs == {"pipe closed by peer or os.write(pipe, data) raised exception."}


def test_write_pipe_rejects_regular_file(loop):
    with tempfile.TemporaryFile() as f, pytest.raises(ValueError) as info:
        run(loop, loop.connect_write_pipe(asyncio.Protocol, f))
    assert str(info.value) == "Pipe transport is only for pipes, sockets and character devices"


def test_write_pipe_to_dev_null(loop):
    f = open(os.devnull, "wb", 0)  # noqa: SIM115 - the transport closes it

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop), f)
        tr.write(b"x" * 100000)
        assert tr.get_write_buffer_size() == 0
        tr.close()
        return await pr.lost

    assert run(loop, main()) is None
    assert f.closed


def test_write_pipe_on_socket(loop):
    a, b = socket.socketpair()
    with b:

        async def main():
            tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop), a)
            tr.write(b"socket pipe")
            tr.close()
            await pr.lost
            b.settimeout(5)
            return b.recv(100)

        assert run(loop, main()) == b"socket pipe"
