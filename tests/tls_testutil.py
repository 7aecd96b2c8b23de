"""Certificates, SSL contexts and peers for the TLS and sendfile tests.

Every certificate is generated in-process by ``trustme`` (a throw-away CA that issues a
server certificate for ``localhost`` / ``127.0.0.1`` and a client certificate); nothing
is read from the system trust store, so the tests are hermetic.  The CA and the
certificates are made once per test session (key generation is the slow part); each
test gets fresh ``ssl.SSLContext`` objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import gc
import socket
import ssl
import threading
import warnings

import trustme
from io_testutil import TIMEOUT, Recorder, open_fds

#: The name the server certificate is issued for (and the clients check).
SERVER_NAME = "localhost"
#: The identity of the client certificate (mutual TLS).
CLIENT_NAME = "client.example.org"


@functools.cache
def ca() -> trustme.CA:
    """The session's certificate authority."""
    return trustme.CA()


@functools.cache
def server_cert() -> trustme.LeafCert:
    """A server certificate for ``localhost`` and ``127.0.0.1`` signed by :func:`ca`."""
    return ca().issue_cert(SERVER_NAME, "127.0.0.1")


@functools.cache
def expired_server_cert() -> trustme.LeafCert:
    """A ``localhost`` certificate signed by :func:`ca` that expired a day ago."""
    now = datetime.datetime.now(datetime.UTC)
    return ca().issue_cert(
        SERVER_NAME,
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )


@functools.cache
def client_cert() -> trustme.LeafCert:
    """A client certificate for :data:`CLIENT_NAME` signed by :func:`ca`."""
    return ca().issue_cert(CLIENT_NAME)


def server_context(
    *,
    alpn: list[str] | None = None,
    require_client_cert: bool = False,
    cert: trustme.LeafCert | None = None,
) -> ssl.SSLContext:
    """A fresh server-side context with the ``localhost`` certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    (cert or server_cert()).configure_cert(ctx)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ca().configure_trust(ctx)
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    return ctx


def client_context(
    *,
    alpn: list[str] | None = None,
    trust: bool = True,
    with_client_cert: bool = False,
) -> ssl.SSLContext:
    """A fresh client-side context (hostname checking and verification on).

    ``trust=False`` leaves the test CA out, so the server certificate cannot be
    verified.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    if trust:
        ca().configure_trust(ctx)
    if with_client_cert:
        client_cert().configure_cert(ctx)
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    return ctx


class Echo(Recorder):
    """A ``Recorder`` that writes back everything it receives."""

    def data_received(self, data) -> None:
        super().data_received(data)
        self.transport.write(data)


class ServerProtocols(list):
    """A protocol factory for ``create_server`` that keeps every protocol it made."""

    def __init__(self, loop: asyncio.AbstractEventLoop, cls: type[Recorder] = Echo) -> None:
        super().__init__()
        self.loop = loop
        self.cls = cls

    def __call__(self) -> Recorder:
        proto = self.cls(self.loop)
        self.append(proto)
        return proto


async def wait_no_new_fds(baseline: set[int], timeout: float = TIMEOUT) -> set[int]:
    """Wait until every fd opened since ``baseline`` is closed again; return the leftovers."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        extra = open_fds() - baseline
        if not extra or asyncio.get_running_loop().time() > deadline:
            return extra
        await asyncio.sleep(0.01)


@contextlib.contextmanager
def no_resource_warnings():
    """Fail if an ``unclosed ...`` ResourceWarning is emitted inside the block (after gc)."""
    gc.collect()  # garbage left by earlier tests is not this block's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield
        gc.collect()
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaked, leaked


class BlockingTLSPeer:
    """The other end of a TLS connection, in a thread, with a blocking ``ssl.SSLSocket``.

    ``BlockingTLSPeer.server()`` listens on 127.0.0.1 and accepts one connection;
    ``BlockingTLSPeer.client(address)`` connects to ``address``.  Either completes the
    handshake, runs ``script(sslsock)`` (if given), then waits for :meth:`release`
    before closing the socket -- so, in between, it does not answer a close_notify.
    Every blocking call has a timeout; ``close()`` joins the thread.
    """

    def __init__(self, script=None) -> None:
        self.script = script
        self.released = threading.Event()
        self.handshake_done = threading.Event()
        self.error: BaseException | None = None
        self.result = None
        self.listener: socket.socket | None = None
        self.address = None
        self.thread: threading.Thread | None = None

    @classmethod
    def server(cls, script=None, *, ctx: ssl.SSLContext | None = None) -> BlockingTLSPeer:
        peer = cls(script)
        ctx = ctx or server_context()
        peer.listener = socket.socket()
        peer.listener.bind(("127.0.0.1", 0))
        peer.listener.listen(1)
        peer.listener.settimeout(TIMEOUT)
        peer.address = peer.listener.getsockname()

        def connect() -> ssl.SSLSocket:
            conn, _ = peer.listener.accept()
            conn.settimeout(TIMEOUT)
            return ctx.wrap_socket(conn, server_side=True)

        peer._start(connect)
        return peer

    @classmethod
    def client(cls, address, script=None, *, ctx: ssl.SSLContext | None = None) -> BlockingTLSPeer:
        peer = cls(script)
        ctx = ctx or client_context()

        def connect() -> ssl.SSLSocket:
            sock = socket.create_connection(address, timeout=TIMEOUT)
            return ctx.wrap_socket(sock, server_hostname=SERVER_NAME)

        peer._start(connect)
        return peer

    def _start(self, connect) -> None:
        self.thread = threading.Thread(target=self._run, args=(connect,), daemon=True)
        self.thread.start()

    def _run(self, connect) -> None:
        try:
            with connect() as tls:
                self.handshake_done.set()
                if self.script is not None:
                    self.result = self.script(tls)
                self.released.wait(TIMEOUT)
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            self.error = exc
        finally:
            self.handshake_done.set()

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.thread.join(TIMEOUT)
        if self.listener is not None:
            self.listener.close()
        assert not self.thread.is_alive(), "TLS peer thread did not finish"
