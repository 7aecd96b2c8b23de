"""add_reader / remove_reader / add_writer / remove_writer: level-triggered fd watching."""

from __future__ import annotations

import asyncio
import errno
import socket
import tempfile

import pytest
from ferro_testutil import run_briefly
from io_testutil import run

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


def _fill(sock: socket.socket) -> int:
    """Write into ``sock`` until the kernel buffer is full; return the byte count."""
    total = 0
    chunk = b"x" * 65536
    for _ in range(100_000):
        try:
            total += sock.send(chunk)
        except BlockingIOError:
            return total
    raise AssertionError("socket never became full")


def _drain(sock: socket.socket) -> int:
    total = 0
    for _ in range(100_000):
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return total
        if not data:
            return total
        total += len(data)
    raise AssertionError("socket never drained")


# -- level-triggered semantics -------------------------------------------------------


def test_reader_called_until_drained(loop, pair):
    """A reader that reads 1 byte of 10 is called again and again until the socket is empty."""
    a, b = pair
    b.send(b"0123456789")
    got = []
    done = loop.create_future()

    def on_readable():
        got.append(a.recv(1))
        if len(got) == 10:
            done.set_result(None)

    loop.add_reader(a.fileno(), on_readable)

    async def main():
        await done
        await asyncio.sleep(0.05)  # drained: no further calls

    run(loop, main())
    assert b"".join(got) == b"0123456789"
    assert len(got) == 10
    # New data re-arms it.
    b.send(b"ab")
    run(loop, asyncio.sleep(0.05))
    assert b"".join(got) == b"0123456789ab"
    assert loop.remove_reader(a.fileno()) is True


def test_reader_not_consuming_is_called_once_per_iteration(loop, pair):
    a, b = pair
    b.send(b"data")
    calls = []
    loop.add_reader(a, calls.append, "r")
    for i in range(1, 6):
        run_briefly(loop)
        assert len(calls) == i
    assert loop.remove_reader(a) is True
    run_briefly(loop)
    assert len(calls) == 5


def test_writer_called_while_writable(loop, pair):
    a, _ = pair
    calls = []
    loop.add_writer(a, calls.append, "w")
    for i in range(1, 4):
        run_briefly(loop)
        assert len(calls) == i
    assert loop.remove_writer(a) is True


def test_writer_waits_for_room(loop, pair):
    a, b = pair
    _fill(a)
    calls = []
    loop.add_writer(a.fileno(), calls.append, "w")
    run(loop, asyncio.sleep(0.05))
    assert calls == []
    _drain(b)

    async def until_called():
        for _ in range(500):
            if calls:
                return
            await asyncio.sleep(0.01)

    run(loop, until_called())
    assert calls[:1] == ["w"]
    assert loop.remove_writer(a.fileno()) is True


def test_reader_sees_eof_and_hangup(loop, pair):
    a, b = pair
    got = []
    done = loop.create_future()

    def on_readable():
        data = a.recv(100)
        got.append(data)
        if not data:
            loop.remove_reader(a)
            done.set_result(None)

    loop.add_reader(a, on_readable)
    b.send(b"last words")
    b.close()
    run(loop, done)
    assert got == [b"last words", b""]


def test_reader_callback_args(loop, pair):
    a, b = pair
    done = loop.create_future()

    def cb(*args):
        a.recv(100)
        loop.remove_reader(a)
        done.set_result(args)

    loop.add_reader(a, cb, 1, "two", None)
    b.send(b"x")
    assert run(loop, done) == (1, "two", None)


def test_writer_callback_args(loop, pair):
    a, _ = pair
    done = loop.create_future()

    def cb(*args):
        loop.remove_writer(a)
        done.set_result(args)

    loop.add_writer(a, cb, "w", 2)
    assert run(loop, done) == ("w", 2)


def test_add_reader_and_writer_return_none(loop, pair):
    a, _ = pair
    assert loop.add_reader(a, print) is None
    assert loop.add_writer(a, print) is None
    assert loop.remove_reader(a) is True
    assert loop.remove_writer(a) is True


# -- replacing and removing ----------------------------------------------------------


def test_replacing_reader_only_calls_new_one(loop, pair):
    a, b = pair
    calls = []
    done = loop.create_future()

    def new(tag):
        calls.append(tag)
        a.recv(100)
        loop.remove_reader(a)
        done.set_result(None)

    loop.add_reader(a, calls.append, "old")
    loop.add_reader(a, new, "new")
    b.send(b"x")
    run(loop, done)
    run(loop, asyncio.sleep(0.02))
    assert calls == ["new"]


def test_replacing_writer_only_calls_new_one(loop, pair):
    a, _ = pair
    calls = []
    loop.add_writer(a, calls.append, "old")
    loop.add_writer(a, calls.append, "new")
    run_briefly(loop)
    run_briefly(loop)
    assert calls == ["new", "new"]
    assert loop.remove_writer(a) is True


def test_private_add_reader_returns_handle_and_replacement_cancels_old(impl, loop, pair):
    """The transports rely on ``_add_reader`` returning the Handle and cancelling the old one."""
    a, _ = pair
    h1 = loop._add_reader(a.fileno(), print)
    assert isinstance(h1, impl.handle_class)
    assert not h1.cancelled()
    h2 = loop._add_reader(a.fileno(), print)
    assert h1.cancelled()
    assert not h2.cancelled()
    w1 = loop._add_writer(a.fileno(), print)
    w2 = loop._add_writer(a.fileno(), print)
    assert w1.cancelled() and not w2.cancelled()
    assert not h2.cancelled()  # the writer did not touch the reader
    assert loop._remove_reader(a.fileno()) is True
    assert h2.cancelled()
    assert loop._remove_writer(a.fileno()) is True
    assert w2.cancelled()
    assert loop._remove_reader(a.fileno()) is False
    assert loop._remove_writer(a.fileno()) is False


def test_remove_returns_true_then_false(loop, pair):
    a, _ = pair
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a) is False
    loop.add_reader(a, print)
    assert loop.remove_writer(a) is False
    assert loop.remove_reader(a) is True
    assert loop.remove_reader(a) is False
    loop.add_writer(a, print)
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a) is True
    assert loop.remove_writer(a) is False


def test_socket_object_and_fd_are_the_same_key(loop, pair):
    a, _ = pair
    loop.add_reader(a, print)
    assert loop.remove_reader(a.fileno()) is True
    loop.add_writer(a.fileno(), print)
    assert loop.remove_writer(a) is True


def test_removing_reader_keeps_writer(loop, pair):
    a, b = pair
    b.send(b"pending")
    reads, writes = [], []
    loop.add_reader(a, reads.append, "r")
    loop.add_writer(a, writes.append, "w")
    run_briefly(loop)
    assert reads == ["r"] and writes == ["w"]
    assert loop.remove_reader(a) is True
    run_briefly(loop)
    assert reads == ["r"] and writes == ["w", "w"]
    loop.add_reader(a, reads.append, "r2")
    assert loop.remove_writer(a) is True
    run_briefly(loop)
    assert reads == ["r", "r2"] and writes == ["w", "w"]
    assert loop.remove_reader(a) is True


def test_reader_removing_itself(loop, pair):
    a, b = pair
    calls = []

    def once():
        calls.append(1)
        assert loop.remove_reader(a) is True

    loop.add_reader(a, once)
    b.send(b"xyz")  # never read: a level-triggered reader would fire forever
    run(loop, asyncio.sleep(0.05))
    assert calls == [1]


def test_reader_exception_goes_to_handler_and_stays_registered(loop, pair, loop_errors):
    a, b = pair
    calls = []

    def boom():
        calls.append(1)
        if len(calls) == 1:
            raise ZeroDivisionError("reader failed")
        a.recv(100)

    loop.add_reader(a, boom)
    b.send(b"x")
    run_briefly(loop)
    run_briefly(loop)
    assert len(calls) == 2
    assert len(loop_errors) == 1
    ctx = loop_errors.pop()
    assert isinstance(ctx["exception"], ZeroDivisionError)
    assert ctx["message"].startswith("Exception in callback")
    assert "handle" in ctx
    assert loop.remove_reader(a) is True


def test_non_callable_callback_accepted_at_registration(loop, pair, loop_errors):
    """asyncio does not validate the callback of add_reader; the call fails when it fires."""
    a, b = pair
    loop.add_reader(a, None)
    b.send(b"x")
    run_briefly(loop)
    assert loop.remove_reader(a) is True
    assert len(loop_errors) == 1
    ctx = loop_errors.pop()
    assert isinstance(ctx["exception"], TypeError)
    assert ctx["message"].startswith("Exception in callback")


# -- invalid file descriptors --------------------------------------------------------


@pytest.mark.parametrize("method", ["add_reader", "add_writer", "remove_reader", "remove_writer"])
@pytest.mark.parametrize(
    "fd, message",
    [
        (-1, "Invalid file descriptor: -1"),
        ("abc", "Invalid file object: 'abc'"),
        (1.5, "Invalid file object: 1.5"),
        (None, "Invalid file object: None"),
    ],
    ids=["negative", "str", "float", "None"],
)
def test_invalid_fd_value_error(loop, method, fd, message):
    args = (fd, print) if method.startswith("add") else (fd,)
    with pytest.raises(ValueError) as info:
        getattr(loop, method)(*args)
    assert str(info.value) == message


def test_fileno_returning_garbage(loop):
    class Bad:
        def fileno(self):
            return None

    bad = Bad()
    for call in (
        lambda: loop.add_reader(bad, print),
        lambda: loop.add_writer(bad, print),
        lambda: loop.remove_reader(bad),
        lambda: loop.remove_writer(bad),
    ):
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == f"Invalid file object: {bad!r}"


def test_fd_too_large_for_c_int(loop):
    with pytest.raises(OverflowError) as info:
        loop.add_reader(2**40, print)
    assert str(info.value) == "Python int too large to convert to C int"


def test_closed_fd_is_ebadf(loop):
    s = socket.socket()
    fd = s.fileno()
    s.close()
    for method in ("add_reader", "add_writer"):
        with pytest.raises(OSError) as info:
            getattr(loop, method)(fd, print)
        assert type(info.value) is OSError
        assert info.value.errno == errno.EBADF
        assert str(info.value) == "[Errno 9] Bad file descriptor"
    # The failed registration left nothing behind.
    assert loop.remove_reader(fd) is False
    assert loop.remove_writer(fd) is False


def test_regular_file_is_not_pollable(loop):
    """epoll refuses regular files with EPERM; asyncio surfaces it as PermissionError."""
    with tempfile.TemporaryFile() as f:
        with pytest.raises(PermissionError) as info:
            loop.add_reader(f.fileno(), print)
        assert info.value.errno == errno.EPERM
        assert loop.remove_reader(f.fileno()) is False


def test_missing_callback_is_type_error(loop, pair):
    a, _ = pair
    with pytest.raises(TypeError):
        loop.add_reader(a)
    with pytest.raises(TypeError):
        loop.add_writer(a)


# -- fds owned by a transport, closed loop -------------------------------------------


def test_fd_used_by_transport(loop, pair):
    a, _ = pair

    async def main():
        return await loop.create_connection(asyncio.Protocol, sock=a)

    tr, _ = run(loop, main())
    fd = a.fileno()
    for call, target in (
        (lambda t: loop.add_reader(t, print), fd),
        (lambda t: loop.add_writer(t, print), fd),
        (loop.remove_reader, fd),
        (loop.remove_writer, fd),
        (loop.remove_reader, a),
    ):
        with pytest.raises(RuntimeError) as info:
            call(target)
        assert str(info.value).startswith(f"File descriptor {target!r} is used by transport ")
        assert str(info.value).endswith(">")
    tr.close()
    # A closing transport no longer owns the fd.
    assert loop.remove_reader(fd) is False
    run_briefly(loop)


def test_closed_loop(loop, pair):
    a, _ = pair
    loop.close()
    for method in ("add_reader", "add_writer"):
        with pytest.raises(RuntimeError) as info:
            getattr(loop, method)(a, print)
        assert str(info.value) == "Event loop is closed"
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a) is False
    # Invalid values are still validated before the closed check.
    with pytest.raises(ValueError):
        loop.add_reader("abc", print)


def test_readers_removed_at_close_do_not_leak_calls(loop, pair):
    a, b = pair
    calls = []
    loop.add_reader(a, calls.append, 1)
    loop.add_writer(a, calls.append, 2)
    loop.close()
    b.send(b"x")
    assert calls == []
