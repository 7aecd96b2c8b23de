"""aiosmtpd's SMTP server with the aiosmtplib client, on 127.0.0.1.

The server runs on the loop under test (``loop.create_server(lambda: SMTP(handler, ...))``),
side by side with the client: plain SMTP; STARTTLS (aiosmtpd wraps the live connection in
asyncio's ``SSLProtocol`` by hand through ``transport.set_protocol``; aiosmtplib upgrades
with ``loop.start_tls``) with ``require_starttls`` refusing mail before it, and a 2 MiB
message; implicit TLS (``create_server(ssl=...)``) and a Unix socket; the client's timeout
against a mute server and the server's idle timeout; 1,000 messages sent concurrently over
10 connections, checked at the handler (count, and content byte for byte).  One more test
runs aiosmtpd's threaded ``Controller`` with ``loop=`` a loop of the implementation under
test, in its own thread, while the client runs on another such loop.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from email.message import EmailMessage

import pytest

NEED = "{} is not installed: pip install -r tests/e2e/requirements.txt (make e2e)"

aiosmtpd_smtp = pytest.importorskip("aiosmtpd.smtp", reason=NEED.format("aiosmtpd"))
aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller", reason=NEED.format("aiosmtpd"))
aiosmtplib = pytest.importorskip("aiosmtplib", reason=NEED.format("aiosmtplib"))
trustme = pytest.importorskip("trustme", reason=NEED.format("trustme"))

from e2e_util import free_port

HOST = "127.0.0.1"
SERVER_NAME = "mail.ferroloop.test"


@pytest.fixture(scope="module")
def tls():
    """(server context, client context) from a throw-away CA."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST, "localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


class Handler:
    """Keeps every message it accepts; refuses recipients at refuse.test."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes, bool]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.endswith("@refuse.test"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        # STARTTLS or implicit TLS: the connection's transport knows its cipher.
        tls = server.transport.get_extra_info("cipher") is not None
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content, tls))
        return "250 Message accepted for delivery"


async def start_server(handler, **kwargs) -> tuple[asyncio.Server, int]:
    """An aiosmtpd server on the running loop."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: aiosmtpd_smtp.SMTP(handler, hostname=SERVER_NAME, **kwargs), HOST, 0
    )
    return server, server.sockets[0].getsockname()[1]


async def stop_server(server: asyncio.Server) -> None:
    server.close()
    await server.wait_closed()


def message(n: int, body: str = "") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"sender{n}@ferroloop.test"
    msg["To"] = "inbox@ferroloop.test"
    msg["Subject"] = f"message {n}"
    msg.set_content(body or f"Body of message {n}.\n" + "text " * (n % 40))
    return msg


def text_of(content: bytes) -> str:
    """The decoded text of a received message, with its line ends as sent ("\\n")."""
    text = email.message_from_bytes(content, policy=email.policy.default).get_content()
    return text.replace("\r\n", "\n")


def test_plain(impl, run_on) -> None:
    handler = Handler()

    async def main() -> None:
        server, port = await start_server(handler)
        try:
            async with aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False) as smtp:
                response = await smtp.ehlo()
                assert response.code == 250
                assert SERVER_NAME in response.message
                errors, _ = await smtp.sendmail(
                    "a@ferroloop.test",
                    ["b@ferroloop.test", "c@ferroloop.test", "x@refuse.test"],
                    b"Subject: raw\r\n\r\nline one\r\n.leading dot\r\n",
                )
                assert list(errors) == ["x@refuse.test"]
                assert errors["x@refuse.test"].code == 550
                await smtp.send_message(message(1))
                with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
                    await smtp.sendmail("a@ferroloop.test", ["x@refuse.test"], b"no")
                assert (await smtp.noop()).code == 250
        finally:
            await stop_server(server)

    run_on(main)
    assert len(handler.messages) == 2
    mail_from, rcpts, content, tls = handler.messages[0]
    assert (mail_from, rcpts, tls) == ("a@ferroloop.test", ["b@ferroloop.test", "c@ferroloop.test"], False)  # fmt: skip
    assert content == b"Subject: raw\r\n\r\nline one\r\n.leading dot\r\n"  # dot-stuffing undone
    assert text_of(handler.messages[1][2]) == message(1).get_content()


def test_starttls(impl, run_on, tls) -> None:
    server_ctx, client_ctx = tls
    handler = Handler()
    big = "".join(f"{i:08d} {'z' * 70}\n" for i in range(2 * 1024 * 1024 // 80))

    async def main() -> None:
        server, port = await start_server(handler, tls_context=server_ctx, require_starttls=True)
        try:
            # Without TLS the server refuses mail.
            async with aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False) as smtp:
                response = await smtp.ehlo()
                assert "STARTTLS" in response.message.upper()
                with pytest.raises(aiosmtplib.SMTPSenderRefused) as info:
                    await smtp.sendmail("a@ferroloop.test", ["b@ferroloop.test"], b"x")
                assert info.value.code == 530

            # Upgraded by hand, checking the certificate against our CA.
            smtp = aiosmtplib.SMTP(
                hostname=HOST, port=port, start_tls=False, tls_context=client_ctx
            )
            await smtp.connect()
            try:
                await smtp.ehlo()
                response = await smtp.starttls()
                assert response.code == 220
                assert smtp.get_transport_info("sslcontext") is not None
                cipher = smtp.get_transport_info("cipher")
                assert cipher is not None and cipher[1] in ("TLSv1.2", "TLSv1.3")
                await smtp.send_message(message(2))
                await smtp.send_message(message(3, big))
            finally:
                await smtp.quit()

            # start_tls=True on connect.
            async with aiosmtplib.SMTP(
                hostname=HOST, port=port, start_tls=True, tls_context=client_ctx
            ) as smtp:
                await smtp.send_message(message(4))

            # A certificate we do not trust.
            with pytest.raises(ssl.SSLCertVerificationError):
                async with aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=True):
                    raise AssertionError("trusted a certificate of an unknown CA")
        finally:
            await stop_server(server)

    run_on(main)
    assert [m[3] for m in handler.messages] == [True, True, True]
    assert text_of(handler.messages[0][2]) == message(2).get_content()
    assert text_of(handler.messages[1][2]) == big
    assert b"Subject: message 4" in handler.messages[2][2]


def test_smtps_and_unix_socket(impl, run_on, tls, tmp_path) -> None:
    """Implicit TLS (``create_server(ssl=...)``, client ``use_tls``) and a Unix socket."""
    server_ctx, client_ctx = tls
    handler = Handler()
    path = str(tmp_path / "smtp.sock")

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def factory():
            return aiosmtpd_smtp.SMTP(handler, hostname=SERVER_NAME)

        tls_server = await loop.create_server(factory, HOST, 0, ssl=server_ctx)
        unix_server = await loop.create_unix_server(factory, path)
        port = tls_server.sockets[0].getsockname()[1]
        try:

            async def over_tls(n: int) -> None:
                async with aiosmtplib.SMTP(
                    hostname=HOST, port=port, use_tls=True, tls_context=client_ctx
                ) as smtp:
                    assert smtp.get_transport_info("cipher") is not None
                    for k in range(10):
                        await smtp.send_message(message(n * 10 + k))

            async def over_unix(n: int) -> None:
                async with aiosmtplib.SMTP(socket_path=path, start_tls=False) as smtp:
                    for k in range(10):
                        await smtp.send_message(message(n * 10 + k))

            await asyncio.gather(
                *(over_tls(n) for n in range(5)), *(over_unix(n) for n in range(5, 10))
            )
        finally:
            await stop_server(tls_server)
            await stop_server(unix_server)

    run_on(main)
    assert len(handler.messages) == 100
    for _, _, content, over_tls in handler.messages:
        n = int(content.split(b"Subject: message ", 1)[1].split(b"\r\n", 1)[0])
        assert over_tls == (n < 50)
        assert text_of(content) == message(n).get_content()


def test_timeouts(impl, run_on) -> None:
    """The client's timeout against a mute server; the server's idle timeout."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        silent: list[asyncio.StreamWriter] = []
        mute = await asyncio.start_server(lambda r, w: silent.append(w), HOST, 0)
        server, port = await start_server(Handler(), timeout=0.3)
        try:
            start = loop.time()
            with pytest.raises(aiosmtplib.SMTPTimeoutError):
                await aiosmtplib.SMTP(
                    hostname=HOST, port=mute.sockets[0].getsockname()[1], timeout=0.3
                ).connect()
            assert 0.25 <= loop.time() - start < 5
            assert len(silent) == 1

            # The server drops a client that stays idle past its timeout.
            smtp = aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False)
            await smtp.connect()
            assert (await smtp.noop()).code == 250
            await asyncio.sleep(0.6)
            with pytest.raises(aiosmtplib.SMTPServerDisconnected):
                await smtp.noop()
            assert not smtp.is_connected
        finally:
            for writer in silent:
                writer.close()
            mute.close()
            await mute.wait_closed()
            await stop_server(server)

    run_on(main)


def raw_message(n: int) -> bytes:
    """A message as bytes on the wire, with a line that needs dot-stuffing."""
    return (
        b"From: sender%d@ferroloop.test\r\nTo: inbox@ferroloop.test\r\n"
        b"Subject: message %d\r\n\r\nBody of message %d.\r\n.dot line %d\r\n%s\r\n"
        % (n, n, n, n, b"text " * (n % 40))
    )


def test_1000_messages(impl, run_on) -> None:
    handler = Handler()

    async def main() -> None:
        server, port = await start_server(handler)
        try:

            async def sender(conn: int) -> None:
                async with aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False) as smtp:
                    for n in range(conn, 1000, 10):
                        errors, _ = await smtp.sendmail(
                            f"sender{n}@ferroloop.test", ["inbox@ferroloop.test"], raw_message(n)
                        )
                        assert errors == {}

            await asyncio.gather(*(sender(conn) for conn in range(10)))
        finally:
            await stop_server(server)

    run_on(main)
    assert len(handler.messages) == 1000
    by_number = {}
    for mail_from, rcpts, content, _ in handler.messages:
        n = int(content.split(b"Subject: message ", 1)[1].split(b"\r\n", 1)[0])
        assert mail_from == f"sender{n}@ferroloop.test"
        assert rcpts == ["inbox@ferroloop.test"]
        assert content == raw_message(n)  # byte for byte, dot-stuffing undone
        by_number[n] = content
    assert sorted(by_number) == list(range(1000))


def test_controller_thread(impl, run_on, tls) -> None:
    """aiosmtpd's ``Controller`` running a loop of this implementation in its own thread."""
    server_ctx, client_ctx = tls
    handler = Handler()
    server_loop = impl.new_event_loop()
    assert isinstance(server_loop, impl.loop_class)
    port = free_port()
    controller = aiosmtpd_controller.Controller(
        handler, loop=server_loop, hostname=HOST, port=port, server_hostname=SERVER_NAME,
        tls_context=server_ctx,
    )  # fmt: skip
    controller.start()
    try:
        assert controller.loop is server_loop

        async def main() -> None:
            async def one(n: int) -> None:
                async with aiosmtplib.SMTP(
                    hostname=HOST, port=port, start_tls=(n % 2 == 0), tls_context=client_ctx
                ) as smtp:
                    for k in range(10):
                        await smtp.send_message(message(n * 10 + k))

            await asyncio.gather(*(one(n) for n in range(10)))

        run_on(main)
    finally:
        controller.stop()
    assert server_loop.is_closed()
    assert len(handler.messages) == 100
    tls_count = sum(1 for m in handler.messages if m[3])
    assert tls_count == 50
