"""loop.sock_sendfile() and loop.sendfile(): the os.sendfile path, the read/write
fallback, offset/count and the file position, TLS transports, argument errors.

Every test runs on stdlib asyncio (the reference) and on ferroloop.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import socket

import pytest
from io_testutil import Recorder, run, sock_recv_all
from tls_testutil import SERVER_NAME, ServerProtocols, client_context, server_context

pytestmark = pytest.mark.timeout(30)

HOST = "127.0.0.1"
SIZE = 256 * 1024 + 123  # not a multiple of any block size
BIG = 16 * 1024 * 1024


@pytest.fixture(scope="module")
def content() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def data_file(tmp_path, content):
    path = tmp_path / "data.bin"
    path.write_bytes(content)
    with open(path, "rb") as f:
        yield f


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """A 16 MiB file and its sha256."""
    path = tmp_path_factory.mktemp("sendfile") / "big.bin"
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(BIG >> 20):
            chunk = bytes([i]) + block[1:]
            f.write(chunk)
            digest.update(chunk)
    return path, digest.hexdigest()


async def _socket_pair(loop, family=socket.AF_INET, tmp_path=None):
    """A connected (sender, receiver) pair of non-blocking stream sockets."""
    if family == socket.AF_UNIX:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        a.setblocking(False)
        b.setblocking(False)
        return a, b
    with socket.socket() as lsock:
        lsock.bind((HOST, 0))
        lsock.listen(1)
        lsock.setblocking(False)
        sender = socket.socket()
        sender.setblocking(False)
        await loop.sock_connect(sender, lsock.getsockname())
        receiver, _ = await loop.sock_accept(lsock)
    receiver.setblocking(False)
    return sender, receiver


async def _sock_sendfile_received(loop, file, *args, family=socket.AF_INET, **kwargs):
    """sock_sendfile(sender, file, *args, **kwargs) while reading everything on the
    other end; returns ``(result, received bytes)``."""
    sender, receiver = await _socket_pair(loop, family)
    with sender, receiver:
        reader = loop.create_task(sock_recv_all(loop, receiver))
        try:
            result = await loop.sock_sendfile(sender, file, *args, **kwargs)
        finally:
            sender.shutdown(socket.SHUT_WR)
        return result, await reader


# --------------------------------------------------------------------------- sock_sendfile


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_UNIX], ids=["tcp", "unix"])
@pytest.mark.parametrize("fallback", [True, False])
def test_sock_sendfile_native(loop, data_file, content, family, fallback):
    """A regular file: os.sendfile is used, so ``fallback=False`` works too."""
    result, received = run(
        loop, _sock_sendfile_received(loop, data_file, fallback=fallback, family=family)
    )
    assert result == SIZE
    assert received == content
    assert data_file.tell() == SIZE


@pytest.mark.parametrize(
    ("offset", "count", "expected"),
    [
        (0, None, (0, SIZE)),
        (1000, None, (1000, SIZE)),
        (1000, 5000, (1000, 6000)),
        (0, 1, (0, 1)),
        (SIZE - 10, 1000, (SIZE - 10, SIZE)),  # count past EOF: stops at EOF
    ],
)
@pytest.mark.parametrize("native", [True, False], ids=["native", "fallback"])
def test_sock_sendfile_offset_count(loop, data_file, content, offset, count, expected, native):
    start, end = expected
    file = data_file if native else io.BytesIO(content)

    result, received = run(loop, _sock_sendfile_received(loop, file, offset, count))
    assert result == end - start
    assert received == content[start:end]
    assert file.tell() == end  # the file position is left just after the last byte sent


@pytest.mark.parametrize("native", [True, False], ids=["native", "fallback"])
def test_sock_sendfile_offset_past_eof(loop, data_file, content, native):
    file = data_file if native else io.BytesIO(content)
    file.seek(17)
    result, received = run(loop, _sock_sendfile_received(loop, file, SIZE + 100))
    assert (result, received) == (0, b"")
    # Nothing was sent, so the position was not touched (fallback: it was seeked).
    assert file.tell() == (17 if native else SIZE + 100)


def test_sock_sendfile_empty_file(loop, tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with open(path, "rb") as f:
        assert run(loop, _sock_sendfile_received(loop, f, fallback=False)) == (0, b"")
        assert f.tell() == 0


def test_sock_sendfile_fallback_for_non_regular_file(loop, content):
    """io.BytesIO has no fileno(): the read/sock_sendall fallback sends it."""
    file = io.BytesIO(content)
    result, received = run(loop, _sock_sendfile_received(loop, file))
    assert (result, received == content, file.tell()) == (SIZE, True, SIZE)


def test_sock_sendfile_fallback_disabled(loop, content):
    async def main():
        sender, receiver = await _socket_pair(loop)
        with sender, receiver:
            with pytest.raises(asyncio.SendfileNotAvailableError) as info:
                await loop.sock_sendfile(sender, io.BytesIO(content), fallback=False)
            return info.value

    exc = run(loop, main())
    assert type(exc) is asyncio.SendfileNotAvailableError
    assert isinstance(exc, RuntimeError)
    assert str(exc) == "not a regular file"


def test_sock_sendfile_large(loop, big_file):
    path, digest = big_file

    async def main(f):
        sender, receiver = await _socket_pair(loop)
        with sender, receiver:
            digest_ = hashlib.sha256()

            async def read():
                n = 0
                while data := await loop.sock_recv(receiver, 1 << 20):
                    digest_.update(data)
                    n += len(data)
                return n

            reader = loop.create_task(read())
            sent = await loop.sock_sendfile(sender, f, fallback=False)
            sender.shutdown(socket.SHUT_WR)
            return sent, await reader, digest_.hexdigest(), f.tell()

    with open(path, "rb") as f:
        assert run(loop, main(f), timeout=20) == (BIG, BIG, digest, BIG)


def test_sock_sendfile_peer_closed(loop, big_file):
    path, _ = big_file

    async def main(f):
        sender, receiver = await _socket_pair(loop)
        with sender, receiver:
            task = loop.create_task(loop.sock_sendfile(sender, f, fallback=False))
            await asyncio.sleep(0.05)
            receiver.close()  # unread data: the kernel answers with RST
            with pytest.raises(ConnectionError) as info:
                await task
            return info.value, f.tell()

    with open(path, "rb") as f:
        exc, pos = run(loop, main(f))
    assert isinstance(exc, ConnectionError)
    assert 0 < pos < BIG  # the position tells how much was sent


def test_sock_sendfile_cancel(loop, big_file):
    """Cancelled while blocked on a peer that does not read: the writer is unregistered."""
    path, _ = big_file

    async def main(f):
        sender, receiver = await _socket_pair(loop)
        with sender, receiver:
            task = loop.create_task(loop.sock_sendfile(sender, f, fallback=False))
            await asyncio.sleep(0.05)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0)
            registered = loop.remove_writer(sender.fileno())
            # The socket is still usable.
            await loop.sock_sendall(sender, b"after")
            return registered

    with open(path, "rb") as f:
        assert run(loop, main(f)) is False


def test_sock_sendfile_bad_args(loop, tmp_path, data_file):
    text_path = tmp_path / "text.txt"
    text_path.write_text("hello")

    async def main(text):
        sender, receiver = await _socket_pair(loop)
        results = {}

        async def check(name, *args, sock=sender, **kwargs):
            try:
                await loop.sock_sendfile(sock, *args, **kwargs)
            except (ValueError, TypeError) as exc:
                results[name] = (type(exc), str(exc))
            else:  # pragma: no cover - reported by the assertion below
                results[name] = None

        with sender, receiver, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            await check("text", text)
            await check("dgram", data_file, sock=udp)
            await check("count0", data_file, 0, 0)
            await check("count-1", data_file, 0, -1)
            await check("count_str", data_file, 0, "10")
            await check("offset-1", data_file, -1)
            await check("offset_float", data_file, 1.5)
        return results, data_file.tell()

    with open(text_path) as text:
        results, pos = run(loop, main(text))
    assert pos == 0
    assert results == {
        "text": (ValueError, "file should be opened in binary mode"),
        "dgram": (ValueError, "only SOCK_STREAM type sockets are supported"),
        "count0": (ValueError, "count must be a positive integer (got 0)"),
        "count-1": (ValueError, "count must be a positive integer (got -1)"),
        "count_str": (TypeError, "count must be a positive integer (got '10')"),
        "offset-1": (ValueError, "offset must be a non-negative integer (got -1)"),
        "offset_float": (TypeError, "offset must be a non-negative integer (got 1.5)"),
    }


def test_sock_sendfile_blocking_socket_in_debug(loop, data_file):
    loop.set_debug(True)

    async def main():
        sender, receiver = await _socket_pair(loop)
        with sender, receiver:
            sender.setblocking(True)
            with pytest.raises(ValueError) as info:
                await loop.sock_sendfile(sender, data_file)
            return str(info.value)

    assert run(loop, main()) == "the socket must be non-blocking"


def test_sock_sendfile_ssl_socket(loop, data_file):
    async def main():
        with socket.socket() as raw:
            tls = client_context().wrap_socket(
                raw, server_hostname=SERVER_NAME, do_handshake_on_connect=False
            )
            with tls, pytest.raises(TypeError) as info:
                await loop.sock_sendfile(tls, data_file)
            return str(info.value)

    assert run(loop, main()) == "Socket cannot be of type SSLSocket"


# --------------------------------------------------------------------------- loop.sendfile


async def _transport_pair(loop):
    """A create_connection transport (Recorder protocol) and its raw non-blocking peer."""
    with socket.socket() as lsock:
        lsock.bind((HOST, 0))
        lsock.listen(1)
        lsock.setblocking(False)
        connect = loop.create_task(
            loop.create_connection(lambda: Recorder(loop), *lsock.getsockname())
        )
        peer, _ = await loop.sock_accept(lsock)
        tr, pr = await connect
    peer.setblocking(False)
    return tr, pr, peer


@pytest.mark.parametrize("fallback", [True, False])
def test_sendfile_transport_native(loop, data_file, content, fallback):
    async def main():
        tr, pr, peer = await _transport_pair(loop)
        with peer:
            reader = loop.create_task(sock_recv_all(loop, peer))
            tr.write(b"HEAD")
            sent = await loop.sendfile(tr, data_file, fallback=fallback)
            tr.write(b"TAIL")
            # The transport still reads after sendfile().
            await loop.sock_sendall(peer, b"reply")
            reply = await pr.wait_data(5)
            tr.close()
            await pr.lost
            return sent, await reader, reply, data_file.tell(), pr.events

    sent, received, reply, pos, events = run(loop, main())
    assert sent == SIZE
    assert received == b"HEAD" + content + b"TAIL"
    assert reply == b"reply"
    assert pos == SIZE
    assert events == ["made", "lost"]


@pytest.mark.parametrize(("offset", "count"), [(1000, None), (1000, 5000), (SIZE - 3, 100)])
def test_sendfile_transport_offset_count(loop, data_file, content, offset, count):
    async def main():
        tr, pr, peer = await _transport_pair(loop)
        with peer:
            reader = loop.create_task(sock_recv_all(loop, peer))
            sent = await loop.sendfile(tr, data_file, offset, count)
            tr.close()
            await pr.lost
            return sent, await reader, data_file.tell()

    end = SIZE if count is None else min(SIZE, offset + count)
    assert run(loop, main()) == (end - offset, content[offset:end], end)


def test_sendfile_waits_for_buffered_writes(loop, data_file, content):
    """Data written before sendfile() goes first, even when it is still buffered."""
    head = os.urandom(4 * 1024 * 1024)

    async def main():
        tr, pr, peer = await _transport_pair(loop)
        with peer:
            tr.write(head)
            buffered = tr.get_write_buffer_size()
            reader = loop.create_task(sock_recv_all(loop, peer))
            sent = await loop.sendfile(tr, data_file)
            tr.close()
            await pr.lost
            return buffered, sent, await reader

    buffered, sent, received = run(loop, main())
    assert buffered > 0
    assert sent == SIZE
    assert received == head + content


def test_sendfile_transport_large(loop, big_file):
    path, digest = big_file

    async def main(f):
        tr, pr, peer = await _transport_pair(loop)
        with peer:
            digest_ = hashlib.sha256()

            async def read():
                n = 0
                while data := await loop.sock_recv(peer, 1 << 20):
                    digest_.update(data)
                    n += len(data)
                return n

            reader = loop.create_task(read())
            sent = await loop.sendfile(tr, f, fallback=False)
            tr.close()
            await pr.lost
            return sent, await reader, digest_.hexdigest(), f.tell()

    with open(path, "rb") as f:
        assert run(loop, main(f), timeout=20) == (BIG, BIG, digest, BIG)


def test_sendfile_transport_fallback(loop, content):
    """A file without fileno() on a plain transport: the write-through-transport fallback."""

    async def main():
        tr, pr, peer = await _transport_pair(loop)
        file = io.BytesIO(content)
        with peer:
            reader = loop.create_task(sock_recv_all(loop, peer))
            sent = await loop.sendfile(tr, file, 10, 100_000)
            tr.write(b"!")
            await loop.sock_sendall(peer, b"still reading")
            reply = await pr.wait_data(13)
            tr.close()
            await pr.lost
            return sent, await reader, file.tell(), reply, tr.is_closing()

    assert run(loop, main()) == (
        100_000,
        content[10:100_010] + b"!",
        100_010,
        b"still reading",
        True,
    )


def test_sendfile_transport_fallback_disabled(loop, content):
    async def main():
        tr, pr, peer = await _transport_pair(loop)
        with peer:
            with pytest.raises(asyncio.SendfileNotAvailableError) as info:
                await loop.sendfile(tr, io.BytesIO(content), fallback=False)
            # The transport is left working.
            tr.write(b"ok")
            got = await loop.sock_recv(peer, 2)
            tr.close()
            await pr.lost
            return str(info.value), got

    assert run(loop, main()) == ("not a regular file", b"ok")


def test_sendfile_transport_bad_args(loop, tmp_path, data_file):
    text_path = tmp_path / "text.txt"
    text_path.write_text("hello")

    async def main(text):
        tr, pr, peer = await _transport_pair(loop)
        results = []
        with peer:
            for args in ((text,), (data_file, -1), (data_file, 0, 0), (data_file, 0, "1")):
                with pytest.raises((ValueError, TypeError)) as info:
                    await loop.sendfile(tr, *args)
                results.append((type(info.value), str(info.value)))
            tr.write(b"ok")
            got = await loop.sock_recv(peer, 2)
            tr.close()
            await pr.lost
            with pytest.raises(RuntimeError) as info:
                await loop.sendfile(tr, data_file)
            results.append((RuntimeError, str(info.value)))
        return results, got

    with open(text_path) as text:
        results, got = run(loop, main(text))
    assert got == b"ok"
    assert results == [
        (ValueError, "file should be opened in binary mode"),
        (ValueError, "offset must be a non-negative integer (got -1)"),
        (ValueError, "count must be a positive integer (got 0)"),
        (TypeError, "count must be a positive integer (got '1')"),
        (RuntimeError, "Transport is closing"),
    ]


def test_sendfile_unsupported_transport(loop, data_file):
    async def main(pipe):
        tr, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, pipe)
        try:
            with pytest.raises(RuntimeError) as info:
                await loop.sendfile(tr, data_file)
        finally:
            tr.close()
            await asyncio.sleep(0)
        return str(info.value)

    rfd, wfd = os.pipe()
    with open(rfd, "rb", buffering=0), open(wfd, "wb", buffering=0) as pipe:
        message = run(loop, main(pipe))
    assert message.startswith("sendfile is not supported for transport ")


# --------------------------------------------------------------------------- over TLS


async def _tls_pair(loop):
    """A TLS client transport connected to a TLS server on the loop (Recorder protocols)."""
    protos = ServerProtocols(loop, Recorder)
    server = await loop.create_server(protos, HOST, 0, ssl=server_context())
    port = server.sockets[0].getsockname()[1]
    tr, pr = await loop.create_connection(
        lambda: Recorder(loop), HOST, port, ssl=client_context(), server_hostname=SERVER_NAME
    )
    while not protos:
        await asyncio.sleep(0.01)
    await protos[0].made
    return server, tr, pr, protos[0]


@pytest.mark.parametrize(("offset", "count"), [(0, None), (1000, 5000)])
def test_sendfile_tls_uses_fallback(loop, data_file, content, offset, count):
    async def main():
        server, tr, pr, sp = await _tls_pair(loop)
        tr.write(b"HEAD")
        sent = await loop.sendfile(tr, data_file, offset, count)
        tr.write(b"TAIL")
        end = SIZE if count is None else offset + count
        received = await sp.wait_data(4 + (end - offset) + 4)
        # Reading resumes after the fallback.
        sp.transport.write(b"pong")
        reply = await pr.wait_data(4)
        tr.close()
        await pr.lost
        await sp.lost
        server.close()
        await server.wait_closed()
        return sent, received, data_file.tell(), reply, end

    sent, received, pos, reply, end = run(loop, main())
    assert sent == end - offset
    assert received == b"HEAD" + content[offset:end] + b"TAIL"
    assert pos == end
    assert reply == b"pong"


def test_sendfile_tls_fallback_disabled(loop, data_file):
    async def main():
        server, tr, pr, sp = await _tls_pair(loop)
        with pytest.raises(RuntimeError) as info:
            await loop.sendfile(tr, data_file, fallback=False)
        tr.close()
        await pr.lost
        await sp.lost
        server.close()
        await server.wait_closed()
        return str(info.value), data_file.tell()

    message, pos = run(loop, main())
    assert message.startswith("fallback is disabled and native sendfile is not supported for ")
    assert pos == 0


def test_sendfile_tls_large(loop, big_file):
    path, digest = big_file

    async def main(f):
        server, tr, pr, sp = await _tls_pair(loop)
        sent = await loop.sendfile(tr, f)
        pos = f.tell()
        received = await sp.wait_data(BIG)
        tr.close()
        await pr.lost
        await sp.lost
        server.close()
        await server.wait_closed()
        return sent, pos, len(received), hashlib.sha256(received).hexdigest()

    with open(path, "rb") as f:
        assert run(loop, main(f), timeout=25) == (BIG, BIG, BIG, digest)
