"""asyncssh: its own SSH server in-process on 127.0.0.1 and its client, on the loop under test.

No real accounts: the server knows one generated ed25519 client key, and runs code of its
own for sessions (``process_factory``), an SFTP subsystem chrooted to a temp dir, and TCP
forwarding.  Covers exec with stdin/stdout streaming (5,000 lines upper-cased and a 1 MiB
binary round trip, stdin from an OS pipe and stdout to a socket pair through asyncssh's pipe
transports, exit status, stderr), local and remote TCP port forwarding to a TCP echo
server on the loop and Unix socket forwarding, SFTP put/get of 4 MiB checked byte for byte,
a refused client key and host key, and ``connect_timeout`` against a server that never speaks.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import socket

import pytest

NEED = "{} is not installed: pip install -r tests/e2e/requirements.txt (make e2e)"

asyncssh = pytest.importorskip("asyncssh", reason=NEED.format("asyncssh"))

HOST = "127.0.0.1"
USER = "ferro"


@pytest.fixture(scope="module")
def keys():
    """(host key, client key, another client key) -- generated once per module."""
    return tuple(asyncssh.generate_private_key("ssh-ed25519") for _ in range(3))


class Server(asyncssh.SSHServer):
    """Public-key logins only; TCP forwarding to and from 127.0.0.1 only, Unix sockets."""

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def connection_requested(self, dest_host, dest_port, orig_host, orig_port) -> bool:
        return dest_host == HOST

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return listen_host == HOST

    def unix_connection_requested(self, dest_path: str) -> bool:
        return True

    def unix_server_requested(self, listen_path: str) -> bool:
        return True


async def session(process: asyncssh.SSHServerProcess) -> None:
    """The server's "shell": a few commands implemented in Python (on bytes)."""
    command = process.command or ""
    if command == "upper":
        async for line in process.stdin:
            process.stdout.write(line.upper())
        process.exit(0)
    elif command == "cat":
        while data := await process.stdin.read(65536):
            process.stdout.write(data)
            await process.stdout.drain()
        process.exit(0)
    elif command.startswith("fail "):
        process.stderr.write(f"failing with {command[5:]}\n".encode())
        process.exit(int(command[5:]))
    else:
        process.stderr.write(f"unknown command {command!r}\n".encode())
        process.exit(127)


async def start_server(keys, root: str | None = None):
    host_key, client_key, _ = keys
    authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())

    def sftp_factory(chan):
        return asyncssh.SFTPServer(chan, chroot=root)

    server = await asyncssh.listen(
        HOST,
        0,
        server_factory=Server,
        server_host_keys=[host_key],
        authorized_client_keys=authorized,
        process_factory=session,
        encoding=None,
        sftp_factory=sftp_factory if root is not None else None,
        allow_scp=False,
    )
    return server, server.get_port()


def connect(keys, port: int, client_key=None, **kwargs):
    host_key = keys[0]
    return asyncssh.connect(
        HOST,
        port,
        username=USER,
        client_keys=[client_key or keys[1]],
        known_hosts=([host_key.convert_to_public()], [], []),
        agent_path=None,
        config=[],
        **kwargs,
    )


def test_exec_streams(impl, run_on, keys) -> None:
    async def main() -> None:
        server, port = await start_server(keys)
        try:
            async with connect(keys, port) as conn:
                # Lines in, upper-cased lines out, while both are in flight.
                async with conn.create_process("upper") as proc:
                    lines = [f"line {i} of ferroloop {'x' * (i % 50)}\n" for i in range(5000)]

                    async def feed() -> None:
                        for i in range(0, len(lines), 100):
                            proc.stdin.write("".join(lines[i : i + 100]))
                            await proc.stdin.drain()
                        proc.stdin.write_eof()

                    feeder = asyncio.create_task(feed())
                    got = []
                    while line := await proc.stdout.readline():
                        got.append(line)
                    await feeder
                    result = await proc.wait()
                assert got == [line.upper() for line in lines]
                assert result.exit_status == 0

                # Binary data, 1 MiB, echoed through the session's flow control.
                data = random.Random(3).randbytes(1024 * 1024)
                result = await conn.run("cat", input=data, encoding=None, check=True)
                assert result.stdout == data

                # Redirection to local pipes and sockets: asyncssh reads the stdin pipe with
                # loop.connect_read_pipe and writes stdout with loop.connect_write_pipe.
                data = random.Random(4).randbytes(512 * 1024)
                assert await redirected_cat(conn, data) == data

                # Exit status and stderr.
                result = await conn.run("fail 3")
                assert result.exit_status == 3
                assert result.stderr == "failing with 3\n"
                with pytest.raises(asyncssh.ProcessError) as info:
                    await conn.run("nope", check=True)
                assert info.value.exit_status == 127

                # Several sessions on one connection side by side.
                results = await asyncio.gather(
                    *(conn.run("upper", input=f"s{i}\n" * 100) for i in range(10))
                )
                assert [r.stdout for r in results] == [f"S{i}\n" * 100 for i in range(10)]
        finally:
            server.close()
            await server.wait_closed()

    run_on(main)


async def redirected_cat(conn, data: bytes) -> bytes:
    """``cat`` with stdin from an OS pipe (fed by a write pipe transport of ours) and
    stdout to a socket pair (read with a stream of ours)."""
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    ours, theirs = socket.socketpair()
    proc = await conn.create_process("cat", stdin=read_fd, stdout=theirs, encoding=None)
    feed, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(write_fd, "wb", 0))
    reader, writer = await asyncio.open_connection(sock=ours)
    try:
        feed.write(data)
        feed.close()
        got = await reader.read()
        result = await proc.wait()
        assert result.exit_status == 0
        return got
    finally:
        writer.close()
        await writer.wait_closed()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def start_echo_server() -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(echo, HOST, 0)
    return server, server.sockets[0].getsockname()[1]


async def through(port: int, data: bytes) -> bytes:
    """Send ``data`` to 127.0.0.1:``port``, half-close, and read everything back."""
    return await exchange(*await asyncio.open_connection(HOST, port), data)


async def through_unix(path: str, data: bytes) -> bytes:
    """The same over a Unix socket."""
    return await exchange(*await asyncio.open_unix_connection(path), data)


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes):
    try:

        async def send() -> None:
            for i in range(0, len(data), 65536):
                writer.write(data[i : i + 65536])
                await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send())
        got = await reader.read()
        await sender
        return got
    finally:
        writer.close()
        await writer.wait_closed()


def test_port_forwarding(impl, run_on, keys, tmp_path) -> None:
    async def main() -> None:
        server, port = await start_server(keys)
        echo_server, echo_port = await start_echo_server()
        unix_echo = await asyncio.start_unix_server(echo, str(tmp_path / "echo.sock"))
        try:
            async with connect(keys, port) as conn:
                # Local forwarding: a port here, tunnelled to the echo server by the SSH server.
                local = await conn.forward_local_port(HOST, 0, HOST, echo_port)
                datas = [random.Random(n).randbytes(50_000 + n * 1000) for n in range(10)]
                got = await asyncio.gather(*(through(local.get_port(), d) for d in datas))
                assert got == datas
                big = random.Random(99).randbytes(2 * 1024 * 1024)
                assert await through(local.get_port(), big) == big
                local.close()
                await local.wait_closed()

                # Remote forwarding: a port on the server's side, tunnelled back to us.
                remote = await conn.forward_remote_port(HOST, 0, HOST, echo_port)
                assert remote.get_port() > 0
                assert await through(remote.get_port(), b"back again" * 1000) == (
                    b"back again" * 1000
                )
                remote.close()
                await remote.wait_closed()

                # Unix sockets: a local path forwarded to the echo server's Unix socket.
                unix = await conn.forward_local_path(
                    str(tmp_path / "fwd.sock"), str(tmp_path / "echo.sock")
                )
                datas = [random.Random(n).randbytes(30_000) for n in range(5)]
                got = await asyncio.gather(
                    *(through_unix(str(tmp_path / "fwd.sock"), d) for d in datas)
                )
                assert got == datas
                unix.close()
                await unix.wait_closed()

                # Forwarding to a destination the server refuses.
                with pytest.raises(asyncssh.ChannelOpenError):
                    await conn.open_connection("localhost", echo_port)
        finally:
            for listener in (echo_server, unix_echo):
                listener.close()
                await listener.wait_closed()
            server.close()
            await server.wait_closed()

    run_on(main)


def test_sftp(impl, run_on, keys, tmp_path) -> None:
    root = tmp_path / "root"
    local = tmp_path / "local"
    root.mkdir()
    local.mkdir()
    data = random.Random(5).randbytes(4 * 1024 * 1024)
    (local / "up.bin").write_bytes(data)

    async def main() -> None:
        server, port = await start_server(keys, str(root))
        try:
            async with connect(keys, port) as conn, conn.start_sftp_client() as sftp:
                assert await sftp.getcwd() == "/"
                await sftp.mkdir("/inbox")
                await sftp.put(str(local / "up.bin"), "/inbox/file.bin")
                # The chroot: "/" on the server is the temp dir.
                assert (root / "inbox" / "file.bin").read_bytes() == data
                assert (await sftp.stat("/inbox/file.bin")).size == len(data)
                assert sorted(await sftp.listdir("/inbox")) == [".", "..", "file.bin"]
                await sftp.get("/inbox/file.bin", str(local / "down.bin"))
                assert hashlib.sha256((local / "down.bin").read_bytes()).digest() == (
                    hashlib.sha256(data).digest()
                )
                # Reads and writes at offsets through a remote file object.
                async with sftp.open("/inbox/file.bin", "r+b") as f:
                    await f.seek(1000)
                    assert await f.read(100) == data[1000:1100]
                    await f.seek(0)
                    await f.write(b"HEAD")
                assert (root / "inbox" / "file.bin").read_bytes()[:8] == b"HEAD" + data[4:8]
                await sftp.rename("/inbox/file.bin", "/inbox/moved.bin")
                await sftp.remove("/inbox/moved.bin")
                with pytest.raises(asyncssh.SFTPNoSuchFile):
                    await sftp.stat("/inbox/moved.bin")
                # Nothing outside the chroot.
                assert os.path.exists("/etc/passwd")
                assert not await sftp.exists("/etc/passwd")
        finally:
            server.close()
            await server.wait_closed()

    run_on(main)


def test_refused_and_timeouts(impl, run_on, keys) -> None:
    async def main() -> None:
        server, port = await start_server(keys)
        try:
            with pytest.raises(asyncssh.PermissionDenied):
                async with connect(keys, port, client_key=keys[2]):
                    raise AssertionError("logged in with an unknown key")
            # And a host key we do not trust.
            with pytest.raises(asyncssh.HostKeyNotVerifiable):
                async with asyncssh.connect(
                    HOST, port, username=USER, client_keys=[keys[1]],
                    known_hosts=([keys[2].convert_to_public()], [], []), agent_path=None, config=[],
                ):  # fmt: skip
                    raise AssertionError("accepted an unknown host key")

            # A TCP server that accepts and never speaks: connect_timeout ends the wait.
            silent: list[asyncio.StreamWriter] = []
            mute = await asyncio.start_server(lambda r, w: silent.append(w), HOST, 0)
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(asyncio.TimeoutError):
                await connect(keys, mute.sockets[0].getsockname()[1], connect_timeout=0.3)
            assert 0.25 <= loop.time() - start < 5
            assert len(silent) == 1
            for writer in silent:
                writer.close()
            mute.close()
            await mute.wait_closed()
        finally:
            server.close()
            await server.wait_closed()

    run_on(main)
