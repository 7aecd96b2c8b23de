"""aioquic: a QUIC echo server and client over UDP on 127.0.0.1, TLS 1.3 from a trustme CA.

``aioquic.asyncio.serve()`` / ``connect()`` on the loop under test (datagram endpoints,
timers re-armed on every packet): 200 concurrent bidirectional streams each echoed byte for
byte, a 2 MiB transfer on one stream, a server that closes the connection (the client sees
the error code and reason, its streams end), a handshake to a UDP socket that reads and never
answers (``ConnectionError`` after the short idle timeout), and a transfer through a small UDP
proxy on the loop that drops a fixed share of the datagrams both ways (loss recovery must
still deliver every byte); on ::1, a server that answers with a Retry, a key update and a
change of connection id.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket

import pytest

NEED = "{} is not installed: pip install -r tests/e2e/requirements.txt (make e2e)"

aioquic = pytest.importorskip("aioquic", reason=NEED.format("aioquic"))
trustme = pytest.importorskip("trustme", reason=NEED.format("trustme"))

from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration

HOST = "127.0.0.1"
ALPN = ["ferroloop-echo"]


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """(cert file, key file, CA PEM) of a throw-away CA's certificate for localhost."""
    ca = trustme.CA()
    cert = ca.issue_cert(HOST, "::1", "localhost")
    folder = tmp_path_factory.mktemp("quic-tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    return str(cert_file), str(key_file), ca.cert_pem.bytes()


def server_config(tls, **kwargs) -> QuicConfiguration:
    cert_file, key_file, _ = tls
    config = QuicConfiguration(is_client=False, alpn_protocols=ALPN, **kwargs)
    config.load_cert_chain(cert_file, key_file)
    return config


def client_config(tls, **kwargs) -> QuicConfiguration:
    config = QuicConfiguration(
        is_client=True, alpn_protocols=ALPN, server_name="localhost", **kwargs
    )
    config.load_verify_locations(cadata=tls[2])
    return config


class ServerProtocol(QuicConnectionProtocol):
    """The server side of a connection: every new stream is echoed back until its end."""

    instances: list[ServerProtocol]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tasks: set[asyncio.Task] = set()
        self.instances.append(self)

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.StreamDataReceived) and event.stream_id not in (
            self._stream_readers
        ):
            reader, writer = self._create_stream(event.stream_id)
            task = asyncio.get_running_loop().create_task(self.echo(reader, writer))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        super().quic_event_received(event)

    @staticmethod
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        if not writer.transport.is_closing():
            writer.write_eof()


class ClientProtocol(QuicConnectionProtocol):
    """Records how the connection ended."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.terminated: events.ConnectionTerminated | None = None

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.ConnectionTerminated):
            self.terminated = event
        super().quic_event_received(event)


async def start_server(tls, port: int = 0, **kwargs):
    """An echo server on 127.0.0.1; returns (server, port, list of its connections)."""
    instances: list[ServerProtocol] = []
    protocol = type("Server", (ServerProtocol,), {"instances": instances})
    server = await serve(
        HOST, port, configuration=server_config(tls, **kwargs), create_protocol=protocol
    )
    port = server._transport.get_extra_info("sockname")[1]
    return server, port, instances


async def echo_stream(client: QuicConnectionProtocol, data: bytes, chunk: int = 65536) -> bytes:
    """Send ``data`` on a new stream (then its end) and return what comes back."""
    reader, writer = await client.create_stream()
    # aioquic allocates the stream's id only when data is first sent on it: write at once,
    # before another ``create_stream()`` is given the same id.
    writer.write(data[:chunk])

    async def send() -> None:
        for i in range(chunk, len(data), chunk):
            writer.write(data[i : i + chunk])
            await writer.drain()
        writer.write_eof()

    sender = asyncio.create_task(send())
    got = await reader.read()
    await sender
    return got


def payload(n: int, size: int) -> bytes:
    """``size`` bytes that differ from one stream to the next."""
    seed = hashlib.sha256(b"%d" % n).digest()
    return (seed * (size // len(seed) + 1))[:size]


def test_200_concurrent_streams(impl, run_on, tls) -> None:
    async def main() -> None:
        server, port, conns = await start_server(tls)
        try:
            async with connect(
                HOST, port, configuration=client_config(tls), create_protocol=ClientProtocol
            ) as client:
                assert client._quic.tls.alpn_negotiated == ALPN[0]
                datas = [payload(n, 1000 + 37 * n) for n in range(200)]
                got = await asyncio.gather(*(echo_stream(client, d) for d in datas))
                for n, (sent, back) in enumerate(zip(datas, got)):
                    assert back == sent, f"stream {n}: {len(back)} bytes of {len(sent)}"
                await client.ping()
            # Closing the client's context closes the connection on both ends.
            assert len(conns) == 1
            await asyncio.wait_for(conns[0].wait_closed(), 10)
        finally:
            server.close()

    run_on(main)


def test_large_transfer(impl, run_on, tls) -> None:
    async def main() -> None:
        server, port, _ = await start_server(tls)
        try:
            async with connect(HOST, port, configuration=client_config(tls)) as client:
                data = random.Random(1).randbytes(2 * 1024 * 1024)
                got = await echo_stream(client, data)
                assert len(got) == len(data)
                assert got == data
        finally:
            server.close()

    run_on(main)


def test_server_closes_connection(impl, run_on, tls) -> None:
    async def main() -> None:
        server, port, conns = await start_server(tls)
        try:
            async with connect(
                HOST, port, configuration=client_config(tls), create_protocol=ClientProtocol
            ) as client:
                assert await echo_stream(client, b"before") == b"before"
                reader, writer = await client.create_stream()
                writer.write(b"half a message")
                assert await reader.readexactly(14) == b"half a message"
                # The server ends the connection with an application error code.
                conns[0].close(error_code=0x1234, reason_phrase="going away")
                await asyncio.wait_for(client.wait_closed(), 10)
                event = client.terminated
                assert event is not None
                assert event.error_code == 0x1234
                assert event.reason_phrase == "going away"
                # The open stream sees its end.
                assert await asyncio.wait_for(reader.read(), 5) == b""
                writer.close()
            # The server forgot the connection.
            await asyncio.wait_for(conns[0].wait_closed(), 10)
        finally:
            server.close()

    run_on(main)


def test_silent_peer_times_out(impl, run_on, tls) -> None:
    """A handshake to a UDP socket that reads and never answers ends in the idle timeout."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        received: list[bytes] = []

        class BlackHole(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr) -> None:
                received.append(data)

        transport, _ = await loop.create_datagram_endpoint(BlackHole, local_addr=(HOST, 0))
        port = transport.get_extra_info("sockname")[1]
        try:
            start = loop.time()
            with pytest.raises(ConnectionError):
                async with connect(HOST, port, configuration=client_config(tls, idle_timeout=0.5)):
                    raise AssertionError("connected to a socket that never answers")
            elapsed = loop.time() - start
            assert 0.4 <= elapsed < 5, elapsed
            # The client's Initial packets arrived, padded to 1200 bytes.
            assert len(received) >= 1
            assert all(len(d) >= 1200 for d in received)
        finally:
            transport.close()

    run_on(main)


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_ipv6_retry_key_update_new_cid(impl, run_on, tls) -> None:
    """A server on ::1 that sends a Retry first; a key update and a new connection id mid-way."""
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback (::1) on this machine")

    async def main() -> None:
        instances: list[ServerProtocol] = []
        protocol = type("Server", (ServerProtocol,), {"instances": instances})
        server = await serve(
            "::1", 0, configuration=server_config(tls), create_protocol=protocol, retry=True
        )
        port = server._transport.get_extra_info("sockname")[1]
        try:
            async with connect("::1", port, configuration=client_config(tls)) as client:
                assert await echo_stream(client, b"six" * 1000) == b"six" * 1000
                client.request_key_update()
                data = random.Random(3).randbytes(200_000)
                assert await echo_stream(client, data) == data
                client.change_connection_id()
                assert await echo_stream(client, data[:20_000]) == data[:20_000]
            assert len(instances) == 1
        finally:
            server.close()

    run_on(main)


class LossyProxy:
    """A UDP relay between one client and a server that drops a share of the datagrams."""

    def __init__(self, upstream: tuple[str, int], drop: float, seed: int) -> None:
        self.upstream = upstream
        self.drop = drop
        self.rng = random.Random(seed)
        self.client_addr = None
        self.front: asyncio.DatagramTransport | None = None
        self.back: asyncio.DatagramTransport | None = None
        self.forwarded = self.dropped = 0

    def relay(self, transport, data: bytes, addr) -> None:
        if self.rng.random() < self.drop:
            self.dropped += 1
            return
        self.forwarded += 1
        transport.sendto(data, addr)

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        proxy = self

        class Front(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr) -> None:
                proxy.client_addr = addr
                proxy.relay(proxy.back, data, None)

        class Back(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr) -> None:
                if proxy.client_addr is not None:
                    proxy.relay(proxy.front, data, proxy.client_addr)

        self.back, _ = await loop.create_datagram_endpoint(Back, remote_addr=self.upstream)
        self.front, _ = await loop.create_datagram_endpoint(
            Front, local_addr=(HOST, 0), family=socket.AF_INET
        )
        return self.front.get_extra_info("sockname")[1]

    def close(self) -> None:
        for transport in (self.front, self.back):
            if transport is not None:
                transport.close()


def test_lossy_link(impl, run_on, tls) -> None:
    async def main() -> None:
        server, port, _ = await start_server(tls)
        proxy = LossyProxy((HOST, port), drop=0.05, seed=7)
        try:
            proxy_port = await proxy.start()
            async with connect(HOST, proxy_port, configuration=client_config(tls)) as client:
                data = random.Random(2).randbytes(256 * 1024)
                streams = [data, *(payload(n, 20000) for n in range(10))]
                got = await asyncio.gather(*(echo_stream(client, d) for d in streams))
                for sent, back in zip(streams, got):
                    assert back == sent
            assert proxy.dropped > 0, "the proxy dropped nothing: the test tests no loss"
        finally:
            proxy.close()
            server.close()

    run_on(main)
