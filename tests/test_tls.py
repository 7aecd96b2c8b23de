"""TLS: create_connection / create_server / unix sockets / connect_accepted_socket /
start_tls with ``ssl=``, with the stdlib ``ssl`` module's full semantics.

Every test runs on stdlib asyncio (the reference) and on ferroloop.  The certificates
come from a throw-away ``trustme`` CA (see ``tls_testutil``); peers are on 127.0.0.1 or
on unix sockets in ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import socket
import ssl
import time

import pytest
from io_testutil import TIMEOUT, Recorder, open_fds, run, set_rst_on_close
from tls_testutil import (
    CLIENT_NAME,
    SERVER_NAME,
    BlockingTLSPeer,
    Echo,
    ServerProtocols,
    client_context,
    expired_server_cert,
    no_resource_warnings,
    server_context,
    wait_no_new_fds,
)

pytestmark = pytest.mark.timeout(30)

HOST = "127.0.0.1"


async def _tls_server(loop, protocols=None, **kwargs):
    """A TLS ``create_server`` on 127.0.0.1; returns ``(server, port, protocols)``."""
    protocols = protocols if protocols is not None else ServerProtocols(loop)
    kwargs.setdefault("ssl", server_context())
    server = await loop.create_server(protocols, HOST, 0, **kwargs)
    return server, server.sockets[0].getsockname()[1], protocols


async def _tls_connect(loop, port, factory=None, **kwargs):
    kwargs.setdefault("ssl", client_context())
    kwargs.setdefault("server_hostname", SERVER_NAME)
    factory = factory or (lambda: Recorder(loop))
    return await loop.create_connection(factory, HOST, port, **kwargs)


async def _close_server(server) -> None:
    server.close()
    await server.wait_closed()


def _unix_path(tmp_path, name="tls.sock") -> str:
    path = str(tmp_path / name)
    if len(path) > 100:  # sun_path is 108 bytes
        pytest.skip("tmp_path is too long for a unix socket path")
    return path


# --------------------------------------------------------------------------- happy paths


def test_create_connection_create_server_echo(loop):
    async def main():
        server, port, protos = await _tls_server(loop)
        tr, pr = await _tls_connect(loop, port)
        assert pr.events == ["made"]
        assert isinstance(tr, asyncio.Transport)
        assert not tr.can_write_eof()
        tr.write(b"hello ")
        tr.writelines([b"over ", bytearray(b"tls"), memoryview(b"!")])
        echoed = await pr.wait_data(15)
        (sp,) = protos
        tr.close()
        assert tr.is_closing()
        client_exc = await pr.lost
        server_exc = await sp.lost
        await _close_server(server)
        return echoed, bytes(sp.data), pr.events, client_exc, sp.events, server_exc

    echoed, received, cev, cexc, sev, sexc = run(loop, main())
    assert echoed == received == b"hello over tls!"
    # The client's close() sends close_notify; the server answers with its own, which
    # the client protocol sees as EOF before connection_lost.
    assert cev == ["made", "eof", "lost"] and cexc is None
    assert sev == ["made", "eof", "lost"] and sexc is None


def test_write_eof_not_supported(loop):
    async def main():
        server, port, _ = await _tls_server(loop)
        tr, pr = await _tls_connect(loop, port)
        try:
            with pytest.raises(NotImplementedError):
                tr.write_eof()
        finally:
            tr.close()
            await pr.lost
            await _close_server(server)

    run(loop, main())


def test_abort_and_server_side_close(loop):
    async def main():
        server, port, protos = await _tls_server(loop)
        # The client aborts: no close_notify, the server sees a bare EOF.
        tr, pr = await _tls_connect(loop, port)
        tr.write(b"x")
        await pr.wait_data(1)
        tr.abort()
        aborted = (await pr.lost, list(pr.events), await protos[0].lost, list(protos[0].events))
        # The server closes: close_notify reaches the client as EOF.
        tr, pr = await _tls_connect(loop, port)
        tr.write(b"y")
        await pr.wait_data(1)
        protos[1].transport.close()
        closed = (await pr.lost, list(pr.events), await protos[1].lost, list(protos[1].events))
        await _close_server(server)
        return aborted, closed

    aborted, closed = run(loop, main())
    assert aborted == (None, ["made", "lost"], None, ["made", "eof", "lost"])
    assert closed == (None, ["made", "eof", "lost"], None, ["made", "eof", "lost"])


def test_get_extra_info(loop):
    async def main():
        sctx = server_context()
        cctx = client_context()
        server, port, protos = await _tls_server(loop, ssl=sctx)
        tr, pr = await _tls_connect(loop, port, ssl=cctx)
        tr.write(b"ping")
        await pr.wait_data(4)
        str_ = protos[0].transport
        info = {}
        for side, t in (("client", tr), ("server", str_)):
            info[side] = {
                name: t.get_extra_info(name)
                for name in (
                    "ssl_object",
                    "peercert",
                    "cipher",
                    "compression",
                    "sslcontext",
                    "socket",
                    "sockname",
                    "peername",
                )
            }
            info[side]["missing"] = t.get_extra_info("no such key", "dflt")
        tr.close()
        await pr.lost
        await protos[0].lost
        await _close_server(server)
        return sctx, cctx, info

    sctx, cctx, info = run(loop, main())
    c, s = info["client"], info["server"]
    for side, ctx in ((c, cctx), (s, sctx)):
        obj = side["ssl_object"]
        assert isinstance(obj, ssl.SSLObject)
        assert side["sslcontext"] is ctx
        assert obj.context is ctx
        assert side["cipher"] == obj.cipher()
        assert isinstance(side["cipher"], tuple) and len(side["cipher"]) == 3
        assert side["compression"] == obj.compression()
        assert side["compression"] is None
        assert obj.version() == side["cipher"][1]
        assert side["missing"] == "dflt"
        assert isinstance(side["socket"], (socket.socket, asyncio.trsock.TransportSocket))
    assert c["ssl_object"].server_hostname == SERVER_NAME
    assert not c["ssl_object"].server_side and s["ssl_object"].server_side
    assert s["ssl_object"].server_hostname is None
    assert c["peername"] == s["sockname"] and c["sockname"] == s["peername"]
    assert c["peername"][0] == HOST
    # The client sees the server's (verified) certificate; the server asked for none.
    assert ("DNS", SERVER_NAME) in c["peercert"]["subjectAltName"]
    assert c["peercert"] == c["ssl_object"].getpeercert()
    assert s["peercert"] is None


def test_mutual_tls_peercert(loop):
    async def main():
        server, port, protos = await _tls_server(loop, ssl=server_context(require_client_cert=True))
        tr, pr = await _tls_connect(loop, port, ssl=client_context(with_client_cert=True))
        tr.write(b"who")
        await pr.wait_data(3)
        peercert = protos[0].transport.get_extra_info("peercert")
        tr.close()
        await pr.lost
        await protos[0].lost
        await _close_server(server)
        return peercert

    peercert = run(loop, main())
    assert ("DNS", CLIENT_NAME) in peercert["subjectAltName"]


def test_mutual_tls_missing_client_cert(loop):
    """TLS 1.3: the client's handshake completes before the server rejects it."""

    async def main():
        baseline = open_fds()
        server, port, protos = await _tls_server(loop, ssl=server_context(require_client_cert=True))
        _tr, pr = await _tls_connect(loop, port)
        exc = await pr.lost
        await _close_server(server)
        leaked = await wait_no_new_fds(baseline)
        return exc, pr.events, list(protos), leaked

    with no_resource_warnings():
        exc, events, protos, leaked = run(loop, main())
    # The server drops the connection without sending its alert (asyncio's SSLProtocol
    # force-closes on a failed handshake): the client sees a bare EOF.
    assert exc is None
    assert events == ["made", "eof", "lost"]
    assert [p.events for p in protos] == [[]]  # the server protocol never connected
    assert not leaked


def test_alpn(loop):
    async def main():
        results = []
        for server_alpn, client_alpn in (
            (["h2", "http/1.1"], ["http/1.1", "spdy/3"]),
            (["h2"], ["http/1.1"]),
            (None, ["h2"]),
        ):
            server, port, protos = await _tls_server(loop, ssl=server_context(alpn=server_alpn))
            tr, pr = await _tls_connect(loop, port, ssl=client_context(alpn=client_alpn))
            tr.write(b"a")
            await pr.wait_data(1)
            results.append(
                (
                    tr.get_extra_info("ssl_object").selected_alpn_protocol(),
                    protos[0].transport.get_extra_info("ssl_object").selected_alpn_protocol(),
                )
            )
            tr.close()
            await pr.lost
            await protos[0].lost
            await _close_server(server)
        return results

    assert run(loop, main()) == [("http/1.1", "http/1.1"), (None, None), (None, None)]


def test_sni_reaches_server_callback(loop):
    async def main():
        seen = []
        sctx = server_context()
        sctx.sni_callback = lambda sslobj, name, ctx: seen.append(name)
        server, port, protos = await _tls_server(loop, ssl=sctx)
        tr, pr = await _tls_connect(loop, port)
        tr.close()
        await pr.lost
        await protos[0].lost
        await _close_server(server)
        return seen

    assert run(loop, main()) == [SERVER_NAME]


def test_create_connection_sock(loop):
    async def main():
        server, port, protos = await _tls_server(loop)
        sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
        tr, pr = await loop.create_connection(
            lambda: Recorder(loop), sock=sock, ssl=client_context(), server_hostname=SERVER_NAME
        )
        assert tr.get_extra_info("socket").fileno() == sock.fileno()
        tr.write(b"via sock")
        data = await pr.wait_data(8)
        tr.close()
        await pr.lost
        await protos[0].lost
        await _close_server(server)
        return data, sock.fileno()

    assert run(loop, main()) == (b"via sock", -1)


def test_ssl_true_uses_default_context(loop):
    """``ssl=True``: a default context (system CAs) that does not trust the test CA."""

    async def main():
        server, port, _ = await _tls_server(loop)
        try:
            with pytest.raises(ssl.SSLCertVerificationError) as info:
                await loop.create_connection(lambda: Recorder(loop), HOST, port, ssl=True)
        finally:
            await _close_server(server)
        return info.value

    exc = run(loop, main())
    assert exc.verify_code == 20


def test_unix_server_and_connection(loop, tmp_path):
    path = _unix_path(tmp_path)

    async def main():
        protos = ServerProtocols(loop)
        server = await loop.create_unix_server(protos, path, ssl=server_context())
        tr, pr = await loop.create_unix_connection(
            lambda: Recorder(loop), path, ssl=client_context(), server_hostname=SERVER_NAME
        )
        tr.write(b"unix tls")
        data = await pr.wait_data(8)
        obj = tr.get_extra_info("ssl_object")
        peer = (
            obj.server_hostname,
            ("DNS", SERVER_NAME) in tr.get_extra_info("peercert")["subjectAltName"],
        )
        server_side = protos[0].transport.get_extra_info("ssl_object").server_side
        tr.close()
        lost = await pr.lost
        await protos[0].lost
        await _close_server(server)
        return data, bytes(protos[0].data), peer, server_side, lost, pr.events

    data, sdata, peer, server_side, lost, events = run(loop, main())
    assert data == sdata == b"unix tls"
    assert peer == (SERVER_NAME, True)
    assert server_side is True
    assert lost is None and events == ["made", "eof", "lost"]


def test_unix_connection_sock(loop, tmp_path):
    path = _unix_path(tmp_path)

    async def main():
        protos = ServerProtocols(loop)
        server = await loop.create_unix_server(protos, path, ssl=server_context())
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        tr, pr = await loop.create_unix_connection(
            lambda: Recorder(loop), sock=sock, ssl=client_context(), server_hostname=SERVER_NAME
        )
        tr.write(b"abc")
        data = await pr.wait_data(3)
        tr.close()
        await pr.lost
        await protos[0].lost
        await _close_server(server)
        return data

    assert run(loop, main()) == b"abc"


def test_connect_accepted_socket(loop):
    async def main():
        with socket.socket() as lsock:
            lsock.bind((HOST, 0))
            lsock.listen(1)
            lsock.setblocking(False)
            port = lsock.getsockname()[1]
            client = loop.create_task(_tls_connect(loop, port))
            conn, _ = await loop.sock_accept(lsock)
            str_, spr = await loop.connect_accepted_socket(
                lambda: Echo(loop), conn, ssl=server_context()
            )
            tr, pr = await client
        assert spr.events == ["made"]
        assert str_.get_extra_info("ssl_object").server_side
        assert str_.get_extra_info("socket").fileno() == conn.fileno()
        tr.write(b"accepted")
        data = await pr.wait_data(8)
        tr.close()
        await pr.lost
        await spr.lost
        return data, spr.events, conn.fileno()

    assert run(loop, main()) == (b"accepted", ["made", "eof", "lost"], -1)


# --------------------------------------------------------------------------- start_tls


class _StartTLSServer(Recorder):
    """Plain-text until ``STARTTLS\\n``; answers ``OK\\n`` and upgrades (server side)."""

    def __init__(self, loop) -> None:
        super().__init__(loop)
        self.tls_transport = loop.create_future()

    def data_received(self, data) -> None:
        if self.tls_transport.done():  # already upgraded: echo
            super().data_received(data)
            self.transport.write(data)
            return
        assert data == b"STARTTLS\n", data
        self.transport.write(b"OK\n")
        # Nothing may be read as plain text any more (the ClientHello follows).
        self.transport.pause_reading()
        self.loop.create_task(self._upgrade())

    async def _upgrade(self) -> None:
        try:
            new = await self.loop.start_tls(
                self.transport, self, server_context(), server_side=True
            )
        except BaseException as exc:
            self.tls_transport.set_exception(exc)
            raise
        self.transport = new
        self.tls_transport.set_result(new)


def test_loop_start_tls(loop):
    async def main():
        protos = ServerProtocols(loop, _StartTLSServer)
        server = await loop.create_server(protos, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        tr, pr = await loop.create_connection(lambda: Recorder(loop), HOST, port)
        tr.write(b"STARTTLS\n")
        assert await pr.wait_data(3) == b"OK\n"
        pr.data.clear()
        new_tr = await loop.start_tls(tr, pr, client_context(), server_hostname=SERVER_NAME)
        assert new_tr is not tr
        assert new_tr.get_extra_info("ssl_object").server_hostname == SERVER_NAME
        assert tr.get_extra_info("ssl_object") is None
        # The raw transport now belongs to the TLS layer; the app protocol is unchanged.
        assert new_tr.get_protocol() is pr
        sp = protos[0]
        server_tr = await sp.tls_transport
        new_tr.write(b"secret")
        data = await pr.wait_data(6)
        new_tr.close()
        await pr.lost
        await sp.lost
        await _close_server(server)
        return data, bytes(sp.data), pr.events, sp.events, server_tr.get_extra_info("cipher")

    data, sdata, cev, sev, cipher = run(loop, main())
    assert data == sdata == b"secret"
    # start_tls() does not call connection_made() again.
    assert cev == ["made", "eof", "lost"]
    assert sev == ["made", "eof", "lost"]
    assert cipher is not None


def test_stream_writer_start_tls(loop):
    async def main():
        async def handle(reader, writer):
            assert await reader.readline() == b"STARTTLS\n"
            writer.write(b"OK\n")
            await writer.drain()
            await writer.start_tls(server_context())
            while data := await reader.read(65536):
                writer.write(data.upper())
                await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handle, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(HOST, port)
        assert writer.get_extra_info("ssl_object") is None
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"OK\n"
        await writer.start_tls(client_context(), server_hostname=SERVER_NAME)
        obj = writer.get_extra_info("ssl_object")
        writer.write(b"upgraded stream\n")
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        await _close_server(server)
        return line, obj.server_hostname

    assert run(loop, main()) == (b"UPGRADED STREAM\n", SERVER_NAME)


def test_start_tls_bad_args(loop):
    async def main():
        server, port, protos = await _tls_server(loop, ssl=None)
        tr, pr = await loop.create_connection(lambda: Recorder(loop), HOST, port)
        with pytest.raises(TypeError) as e1:
            await loop.start_tls(tr, pr, True)
        udp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=(HOST, 0))
        with pytest.raises(TypeError) as e2:
            await loop.start_tls(udp, pr, client_context())
        udp.close()
        tr.close()
        await pr.lost
        await protos[0].lost
        await _close_server(server)
        return str(e1.value), str(e2.value)

    m1, m2 = run(loop, main())
    assert m1 == "sslcontext is expected to be an instance of ssl.SSLContext, got True"
    assert m2.startswith("transport ") and m2.endswith(" is not supported by start_tls()")


# --------------------------------------------------------------------------- verification


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("untrusted", 20, "unable to get local issuer certificate"),
        ("hostname", 62, "Hostname mismatch, certificate is not valid for 'example.com'."),
        ("expired", 10, "certificate has expired"),
    ],
)
def test_certificate_verification_failure(loop, case, code, message):
    async def main():
        baseline = open_fds()
        sctx = server_context(cert=expired_server_cert() if case == "expired" else None)
        server, port, protos = await _tls_server(loop, ssl=sctx)
        kwargs = {}
        if case == "untrusted":
            kwargs["ssl"] = client_context(trust=False)
        if case == "hostname":
            kwargs["server_hostname"] = "example.com"
        made = []
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            await _tls_connect(
                loop, port, factory=lambda: made.append(1) or Recorder(loop), **kwargs
            )
        await asyncio.sleep(0.05)
        await _close_server(server)
        leaked = await wait_no_new_fds(baseline)
        return info.value, made, list(protos), leaked

    with no_resource_warnings():
        exc, made, protos, leaked = run(loop, main())
    assert type(exc) is ssl.SSLCertVerificationError
    assert isinstance(exc, ssl.SSLError) and isinstance(exc, ValueError)
    assert exc.reason == "CERTIFICATE_VERIFY_FAILED" and exc.library == "SSL"
    assert exc.verify_code == code
    assert exc.verify_message == message
    assert exc.args[0] == 1
    assert f"certificate verify failed: {message}" in exc.args[1]
    assert made == [1]  # the protocol was created, but never connected
    assert [p.events for p in protos] == [[]]  # nor was the server's
    assert not leaked


# --------------------------------------------------------------------------- timeouts


def test_client_handshake_timeout(loop):
    """A server that accepts TCP but never speaks TLS."""

    async def main():
        baseline = open_fds()
        with socket.socket() as lsock:
            lsock.bind((HOST, 0))
            lsock.listen(1)
            lsock.setblocking(False)
            port = lsock.getsockname()[1]
            made = []
            start = loop.time()
            task = loop.create_task(
                _tls_connect(
                    loop,
                    port,
                    factory=lambda: made.append(1) or Recorder(loop),
                    ssl_handshake_timeout=0.3,
                )
            )
            conn, _ = await loop.sock_accept(lsock)
            with conn:
                with pytest.raises(ConnectionAbortedError) as info:
                    await task
                elapsed = loop.time() - start
                # The client aborted: the silent server sees the ClientHello, then EOF.
                hello = await asyncio.wait_for(_recv_until_eof(loop, conn), TIMEOUT)
        leaked = await wait_no_new_fds(baseline)
        return info.value, elapsed, made, hello, leaked

    with no_resource_warnings():
        exc, elapsed, made, hello, leaked = run(loop, main())
    assert type(exc) is ConnectionAbortedError
    assert exc.args == ("SSL handshake is taking longer than 0.3 seconds: aborting the connection",)
    assert 0.25 <= elapsed < 5
    assert made == [1]
    assert hello[:1] == b"\x16"  # a TLS handshake record
    assert not leaked


async def _recv_until_eof(loop, sock) -> bytes:
    data = bytearray()
    while chunk := await loop.sock_recv(sock, 65536):
        data += chunk
    return bytes(data)


def test_server_handshake_timeout(loop):
    """A client that connects but never sends a ClientHello is dropped by the server."""

    async def main():
        server, port, protos = await _tls_server(loop, ssl_handshake_timeout=0.3)
        baseline = open_fds()
        sock = socket.socket()
        sock.setblocking(False)
        with sock:
            await loop.sock_connect(sock, (HOST, port))
            start = loop.time()
            data = await asyncio.wait_for(_recv_until_eof(loop, sock), TIMEOUT)
            elapsed = loop.time() - start
        leaked = await wait_no_new_fds(baseline)
        await _close_server(server)
        return data, elapsed, list(protos), leaked

    with no_resource_warnings():
        data, elapsed, protos, leaked = run(loop, main())
    assert data == b""
    assert 0.25 <= elapsed < 5
    assert [p.events for p in protos] == [[]]
    assert not leaked


def test_client_shutdown_timeout(loop):
    """The peer never answers close_notify: the transport is force-closed."""
    peer = BlockingTLSPeer.server()
    try:

        async def main():
            tr, pr = await loop.create_connection(
                lambda: Recorder(loop),
                *peer.address,
                ssl=client_context(),
                server_hostname=SERVER_NAME,
                ssl_shutdown_timeout=0.3,
            )
            start = loop.time()
            tr.close()
            exc = await pr.lost
            return exc, loop.time() - start, pr.events

        exc, elapsed, events = run(loop, main())
    finally:
        peer.close()
    assert peer.error is None
    assert type(exc) is TimeoutError
    assert exc.args == ("SSL shutdown timed out",)
    assert 0.25 <= elapsed < 5
    assert events == ["made", "lost"]


def test_server_shutdown_timeout(loop):
    async def main():
        server, port, protos = await _tls_server(loop, ssl_shutdown_timeout=0.3)
        peer = BlockingTLSPeer.client((HOST, port))
        try:
            while not protos:
                await asyncio.sleep(0.01)
            sp = protos[0]
            await sp.made
            start = loop.time()
            sp.transport.close()
            exc = await sp.lost
            elapsed = loop.time() - start
        finally:
            peer.close()
        await _close_server(server)
        return exc, elapsed, sp.events, peer.error

    exc, elapsed, events, peer_error = run(loop, main())
    assert peer_error is None
    assert type(exc) is TimeoutError and exc.args == ("SSL shutdown timed out",)
    assert 0.25 <= elapsed < 5
    assert events == ["made", "lost"]


# --------------------------------------------------------------------------- broken peers


@pytest.mark.parametrize("how", ["fin", "rst", "garbage"])
def test_server_breaks_handshake(loop, how):
    """The server reads the ClientHello, then closes (FIN / RST) or answers with garbage."""

    async def main():
        baseline = open_fds()
        with socket.socket() as lsock:
            lsock.bind((HOST, 0))
            lsock.listen(1)
            lsock.setblocking(False)
            port = lsock.getsockname()[1]
            made = []
            task = loop.create_task(
                _tls_connect(loop, port, factory=lambda: made.append(1) or Recorder(loop))
            )
            conn, _ = await loop.sock_accept(lsock)
            with conn:
                hello = await loop.sock_recv(conn, 65536)
                if how == "rst":
                    set_rst_on_close(conn)
                elif how == "garbage":
                    await loop.sock_sendall(conn, b"HTTP/1.1 400 Bad Request\r\n\r\n")
            with pytest.raises(OSError) as info:
                await task
        leaked = await wait_no_new_fds(baseline)
        return hello, info.value, made, leaked

    with no_resource_warnings():
        hello, exc, made, leaked = run(loop, main())
    assert hello[:1] == b"\x16"
    if how == "fin":
        assert type(exc) is ConnectionResetError and exc.args == ()
    elif how == "rst":
        assert type(exc) is ConnectionResetError
        assert exc.errno == 104
    else:
        assert type(exc) is ssl.SSLError
        assert exc.reason == "WRONG_VERSION_NUMBER"
    assert made == [1]
    assert not leaked


@pytest.mark.parametrize("debug", [False, True], ids=["nodebug", "debug"])
@pytest.mark.parametrize("how", ["fin", "rst", "garbage"])
def test_client_breaks_handshake(loop, loop_errors, how, debug):
    """A client that closes mid-handshake or sends garbage to a TLS server: the server
    drops it; only in debug mode does the loop's exception handler hear of it."""
    loop.set_debug(debug)

    async def main():
        server, port, protos = await _tls_server(loop)
        baseline = open_fds()
        sock = socket.socket()
        sock.setblocking(False)
        with sock:
            await loop.sock_connect(sock, (HOST, port))
            if how == "garbage":
                await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                reply = await asyncio.wait_for(_recv_until_eof(loop, sock), TIMEOUT)
            else:
                # Half a ClientHello, then FIN / RST.
                await loop.sock_sendall(sock, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
                await asyncio.sleep(0.05)
                if how == "rst":
                    set_rst_on_close(sock)
                reply = None
        leaked = await wait_no_new_fds(baseline)
        await asyncio.sleep(0.05)
        await _close_server(server)
        return reply, list(protos), leaked

    with no_resource_warnings():
        reply, protos, leaked = run(loop, main())
    assert [p.events for p in protos] == [[]]
    assert not leaked
    if how == "garbage":
        assert reply == b""
    seen = [(c.get("message"), type(c.get("exception"))) for c in loop_errors]
    loop_errors.clear()
    if not debug:
        assert seen == []
    else:
        expected_exc = {
            "fin": ConnectionResetError,
            "rst": ConnectionResetError,
            "garbage": ssl.SSLError,
        }[how]
        assert seen == [("Error on transport creation for incoming connection", expected_exc)]


def test_server_peer_resets_after_handshake(loop):
    """RST from the client on an established TLS connection: connection_lost(exc)."""

    async def main():
        server, port, protos = await _tls_server(loop)
        tr, pr = await _tls_connect(loop, port)
        tr.write(b"x")
        await pr.wait_data(1)
        set_rst_on_close(tr.get_extra_info("socket"))
        tr.abort()
        await pr.lost
        exc = await protos[0].lost
        await _close_server(server)
        return exc, protos[0].events

    exc, events = run(loop, main())
    assert type(exc) is ConnectionResetError and exc.errno == 104
    assert events == ["made", "lost"]


# --------------------------------------------------------------------------- volume


def test_streams_echo_10mb(loop):
    size = 10 * 1024 * 1024
    payload = os.urandom(1 << 16) * (size >> 16)

    async def main():
        async def handle(reader, writer):
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handle, HOST, 0, ssl=server_context())
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=client_context(), server_hostname=SERVER_NAME
        )

        async def send():
            view = memoryview(payload)
            for i in range(0, size, 1 << 18):
                writer.write(view[i : i + (1 << 18)])
                await writer.drain()

        sender = loop.create_task(send())
        echoed = await reader.readexactly(size)
        await sender
        writer.close()
        await writer.wait_closed()
        await _close_server(server)
        return hashlib.sha256(echoed).hexdigest()

    start = time.monotonic()
    assert run(loop, main(), timeout=25) == hashlib.sha256(payload).hexdigest()
    assert time.monotonic() - start < 25


def test_flow_control(loop):
    """A TLS transport pauses its writer when the peer stops reading, resumes after."""

    async def main():
        server, port, protos = await _tls_server(loop, protocols=ServerProtocols(loop, Recorder))
        tr, pr = await _tls_connect(loop, port)
        tr.set_write_buffer_limits(high=64 * 1024)
        assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        while not protos:
            await asyncio.sleep(0.01)
        sp = protos[0]
        await sp.made
        sp.transport.pause_reading()
        assert not sp.transport.is_reading()
        chunk = b"z" * 65536
        sent = 0
        while not pr.paused.done() and sent < 64 * 1024 * 1024:
            tr.write(chunk)
            sent += len(chunk)
            await asyncio.sleep(0)
        assert pr.paused.done()
        assert tr.get_write_buffer_size() > 0
        sp.transport.resume_reading()
        await pr.resumed
        await sp.wait_data(sent)
        tr.close()
        await pr.lost
        await sp.lost
        await _close_server(server)
        return len(sp.data) == sent, pr.events

    ok, events = run(loop, main())
    assert ok
    assert events[:3] == ["made", "pause", "resume"]


# --------------------------------------------------------------------------- bad arguments


def test_bad_ssl_arguments(loop, tmp_path):
    path = _unix_path(tmp_path)

    async def main():
        server, port, _ = await _tls_server(loop)
        cases = {}

        async def check(name, coro):
            try:
                await coro
            except (ValueError, TypeError) as exc:
                cases[name] = (type(exc), str(exc))
            else:  # pragma: no cover - reported by the assertion below
                cases[name] = None

        def factory():
            return Recorder(loop)

        with socket.create_connection((HOST, port)) as sock:
            await check(
                "ssl_true_sock_no_hostname", loop.create_connection(factory, sock=sock, ssl=True)
            )
        await check(
            "hostname_without_ssl",
            loop.create_connection(factory, HOST, port, server_hostname=SERVER_NAME),
        )
        await check(
            "handshake_timeout_without_ssl",
            loop.create_connection(factory, HOST, port, ssl_handshake_timeout=1),
        )
        await check(
            "shutdown_timeout_without_ssl",
            loop.create_connection(factory, HOST, port, ssl_shutdown_timeout=1),
        )
        await check(
            "server_handshake_timeout_without_ssl",
            loop.create_server(factory, HOST, 0, ssl_handshake_timeout=1),
        )
        await check(
            "server_shutdown_timeout_without_ssl",
            loop.create_server(factory, HOST, 0, ssl_shutdown_timeout=1),
        )
        await check("server_ssl_true", loop.create_server(factory, HOST, 0, ssl=True))
        await check(
            "unix_no_hostname", loop.create_unix_connection(factory, path, ssl=client_context())
        )
        await check(
            "unix_hostname_without_ssl",
            loop.create_unix_connection(factory, path, server_hostname=SERVER_NAME),
        )
        await check(
            "unix_handshake_timeout_without_ssl",
            loop.create_unix_connection(factory, path, ssl_handshake_timeout=1),
        )
        await check(
            "unix_server_handshake_timeout_without_ssl",
            loop.create_unix_server(factory, path, ssl_handshake_timeout=1),
        )
        with socket.socket() as s:
            await check(
                "accepted_handshake_timeout_without_ssl",
                loop.connect_accepted_socket(factory, s, ssl_handshake_timeout=1),
            )
            await check(
                "accepted_shutdown_timeout_without_ssl",
                loop.connect_accepted_socket(factory, s, ssl_shutdown_timeout=1),
            )
        await _close_server(server)
        return cases

    with no_resource_warnings():
        cases = run(loop, main())
    assert cases == {
        "ssl_true_sock_no_hostname": (
            ValueError,
            "You must set server_hostname when using ssl without a host",
        ),
        "hostname_without_ssl": (ValueError, "server_hostname is only meaningful with ssl"),
        "handshake_timeout_without_ssl": (
            ValueError,
            "ssl_handshake_timeout is only meaningful with ssl",
        ),
        "shutdown_timeout_without_ssl": (
            ValueError,
            "ssl_shutdown_timeout is only meaningful with ssl",
        ),
        "server_handshake_timeout_without_ssl": (
            ValueError,
            "ssl_handshake_timeout is only meaningful with ssl",
        ),
        "server_shutdown_timeout_without_ssl": (
            ValueError,
            "ssl_shutdown_timeout is only meaningful with ssl",
        ),
        "server_ssl_true": (TypeError, "ssl argument must be an SSLContext or None"),
        "unix_no_hostname": (ValueError, "you have to pass server_hostname when using ssl"),
        "unix_hostname_without_ssl": (ValueError, "server_hostname is only meaningful with ssl"),
        "unix_handshake_timeout_without_ssl": (
            ValueError,
            "ssl_handshake_timeout is only meaningful with ssl",
        ),
        "unix_server_handshake_timeout_without_ssl": (
            ValueError,
            "ssl_handshake_timeout is only meaningful with ssl",
        ),
        "accepted_handshake_timeout_without_ssl": (
            ValueError,
            "ssl_handshake_timeout is only meaningful with ssl",
        ),
        "accepted_shutdown_timeout_without_ssl": (
            ValueError,
            "ssl_shutdown_timeout is only meaningful with ssl",
        ),
    }


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_non_positive_ssl_timeouts(loop):
    """Checked only once connected, by SSLProtocol (asyncio 3.11 then leaves the socket
    to the garbage collector, hence the ResourceWarning filter)."""

    async def main():
        server, port, _ = await _tls_server(loop)
        baseline = open_fds()
        errors = []
        for kwargs in ({"ssl_handshake_timeout": 0}, {"ssl_shutdown_timeout": -1}):
            with pytest.raises(ValueError) as info:
                await _tls_connect(loop, port, **kwargs)
            errors.append(str(info.value))
        del info
        gc.collect()
        # Once the client sockets are gone, the server's pending handshakes fail.
        assert not await wait_no_new_fds(baseline)
        await asyncio.sleep(0.05)
        await _close_server(server)
        return errors

    assert run(loop, main()) == [
        "ssl_handshake_timeout should be a positive number, got 0",
        "ssl_shutdown_timeout should be a positive number, got -1",
    ]


# --------------------------------------------------------------------------- more semantics


def test_many_concurrent_clients(loop):
    async def main():
        server, port, protos = await _tls_server(loop)

        async def client(i):
            tr, pr = await _tls_connect(loop, port)
            msg = f"client {i}".encode()
            tr.write(msg)
            data = await pr.wait_data(len(msg))
            tr.close()
            await pr.lost
            return data == msg

        results = await asyncio.gather(*(client(i) for i in range(20)))
        await asyncio.gather(*(p.lost for p in protos))
        await _close_server(server)
        return results, len(protos)

    assert run(loop, main()) == ([True] * 20, 20)


class _BufferedRecorder(asyncio.BufferedProtocol):
    def __init__(self, loop) -> None:
        self.buf = bytearray(1000)
        self.data = bytearray()
        self.lost = loop.create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint):
        # A memoryview: asyncio's SSLProtocol slices the buffer to fill it in several
        # reads, and slicing a bytearray would copy.
        return memoryview(self.buf)

    def buffer_updated(self, nbytes) -> None:
        self.data += self.buf[:nbytes]

    def eof_received(self):
        return None

    def connection_lost(self, exc) -> None:
        self.lost.set_result(exc)


def test_buffered_protocol_over_tls(loop):
    payload = os.urandom(300_000)

    async def main():
        server, port, protos = await _tls_server(loop)
        tr, pr = await _tls_connect(loop, port, factory=lambda: _BufferedRecorder(loop))
        tr.write(payload)
        while len(pr.data) < len(payload):
            await asyncio.sleep(0.01)
        tr.close()
        exc = await pr.lost
        await protos[0].lost
        await _close_server(server)
        return bytes(pr.data), exc

    data, exc = run(loop, main())
    assert data == payload and exc is None


def test_close_flushes_buffered_data(loop):
    """close() right after a large write: every byte arrives before close_notify."""
    payload = os.urandom(3 * 1024 * 1024)

    async def main():
        server, port, protos = await _tls_server(loop, protocols=ServerProtocols(loop, Recorder))
        tr, pr = await _tls_connect(loop, port)
        tr.write(payload)
        tr.close()
        await pr.lost
        sp = protos[0]
        exc = await sp.lost
        await _close_server(server)
        return bytes(sp.data), sp.events, exc

    data, events, exc = run(loop, main())
    assert data == payload
    assert events == ["made", "eof", "lost"] and exc is None


def test_tls12(loop):
    async def main():
        cctx = client_context()
        cctx.maximum_version = ssl.TLSVersion.TLSv1_2
        server, port, protos = await _tls_server(loop)
        tr, pr = await _tls_connect(loop, port, ssl=cctx)
        tr.write(b"1.2")
        data = await pr.wait_data(3)
        versions = (
            tr.get_extra_info("ssl_object").version(),
            protos[0].transport.get_extra_info("cipher")[1],
        )
        tr.close()
        await pr.lost
        await protos[0].lost
        await _close_server(server)
        return data, versions

    assert run(loop, main()) == (b"1.2", ("TLSv1.2", "TLSv1.2"))


def test_tls12_missing_client_cert(loop):
    """TLS 1.2: the server rejects the client before the client's handshake completes."""

    async def main():
        baseline = open_fds()
        cctx = client_context()
        cctx.maximum_version = ssl.TLSVersion.TLSv1_2
        server, port, protos = await _tls_server(loop, ssl=server_context(require_client_cert=True))
        made = []
        with pytest.raises(OSError) as info:
            await _tls_connect(
                loop, port, ssl=cctx, factory=lambda: made.append(1) or Recorder(loop)
            )
        await _close_server(server)
        leaked = await wait_no_new_fds(baseline)
        return info.value, made, [p.events for p in protos], leaked

    with no_resource_warnings():
        exc, made, server_events, leaked = run(loop, main())
    assert type(exc) is ConnectionResetError and exc.args == ()
    assert made == [1]
    assert server_events == [[]]
    assert not leaked


def test_start_tls_handshake_timeout(loop):
    async def main():
        with socket.socket() as lsock:
            lsock.bind((HOST, 0))
            lsock.listen(1)
            lsock.setblocking(False)
            connect = loop.create_task(
                loop.create_connection(lambda: Recorder(loop), *lsock.getsockname())
            )
            peer, _ = await loop.sock_accept(lsock)
            tr, pr = await connect
        with peer:
            start = loop.time()
            with pytest.raises(ConnectionAbortedError) as info:
                await loop.start_tls(
                    tr,
                    pr,
                    client_context(),
                    server_hostname=SERVER_NAME,
                    ssl_handshake_timeout=0.3,
                )
            elapsed = loop.time() - start
            hello = await asyncio.wait_for(_recv_until_eof(loop, peer), TIMEOUT)
        await asyncio.sleep(0.05)
        return str(info.value), elapsed, hello[:1], tr.is_closing(), pr.events

    message, elapsed, hello, closing, events = run(loop, main())
    assert message == "SSL handshake is taking longer than 0.3 seconds: aborting the connection"
    assert 0.25 <= elapsed < 5
    assert hello == b"\x16"
    assert closing
    # The TLS layer owned the raw transport: the app protocol is not told.
    assert events == ["made"]


class _Raises(Recorder):
    """Raises RuntimeError from the callback named ``where``."""

    where = "data_received"

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if self.where == "connection_made":
            raise RuntimeError("boom in connection_made")

    def data_received(self, data) -> None:
        super().data_received(data)
        if self.where == "data_received":
            raise RuntimeError("boom in data_received")


@pytest.mark.parametrize("where", ["data_received", "connection_made"])
def test_app_protocol_error_reaches_handler(loop, loop_errors, where):
    """An exception from the app protocol under TLS: the handler's context as asyncio's."""

    async def main():
        class Proto(_Raises):
            pass

        Proto.where = where
        server, port, protos = await _tls_server(loop, protocols=ServerProtocols(loop, Proto))
        tr, pr = await _tls_connect(loop, port)
        tr.write(b"x")
        client_exc = await pr.lost
        sp = protos[0]
        server_exc = await sp.lost
        await _close_server(server)
        return client_exc, sp.events, server_exc

    client_exc, server_events, server_exc = run(loop, main())
    contexts = list(loop_errors)
    loop_errors.clear()
    assert len(contexts) == 1, contexts
    (ctx,) = contexts
    exc = ctx["exception"]
    assert type(exc) is RuntimeError and str(exc) == f"boom in {where}"
    if where == "data_received":
        assert ctx["message"] == "Fatal error on SSL protocol"
        assert isinstance(ctx["protocol"], asyncio.sslproto.SSLProtocol)
    else:
        assert ctx["message"] == "Fatal error: protocol.buffer_updated() call failed."
        assert isinstance(ctx["protocol"], asyncio.sslproto.SSLProtocol)
    assert sorted(ctx) == ["exception", "message", "protocol", "transport"]
    assert server_exc is exc
    assert server_events == ["made", "lost"]
    # The client sees the server's abort as a bare EOF.
    assert client_exc is None
