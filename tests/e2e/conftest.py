"""End-to-end suite: real libraries and real servers, on ferroloop and on stdlib asyncio.

Every test takes the ``impl`` fixture of ``tests/conftest.py`` (ids ``asyncio`` and
``ferroloop``) and runs the same program on both loops.  The libraries come from PyPI
(``tests/e2e/requirements.txt``, installed by ``make e2e``); each test module starts with
``pytest.importorskip`` on the libraries it drives, so a plain ``pytest tests`` without them
skips those modules, with the reason, instead of failing.

Servers (PostgreSQL, Redis) are started by session fixtures on 127.0.0.1, on free ports,
in throw-away directories, and stopped at teardown.  When a server binary is missing or does
not start, the tests that need it skip with the reason -- unless ``FERROLOOP_E2E_STRICT=1``
(set by ``make e2e``), where that is a failure, so CI cannot go green on a missing install.

Fixtures:

``run_on``
    ``run_on(coro_fn, *args, timeout=60, debug=None)`` runs ``coro_fn(*args)`` in an
    ``asyncio.Runner`` (in debug mode with ``debug=True``) whose loop comes from the implementation under test, checks that the
    running loop really is of that implementation, and fails the test if anything reached the
    loop's exception handler (asyncio's "Task exception was never retrieved", "Unclosed
    client session", ...) -- on either loop.
``postgres`` / ``redis_server``
    ``Service(host, port, ...)`` of a running server, shared by the session.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pathlib
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # make e2e_util importable under any --import-mode
    sys.path.insert(0, str(HERE))

from e2e_util import (
    HOST,
    Service,
    free_port,
    log_tail,
    stop_process,
    unavailable,
    wait_for_port,
)

#: Per-test safety timeout (seconds) of the e2e tests (``pytest-timeout``).
E2E_TIMEOUT = 180


def pytest_collection_modifyitems(config, items):
    """Give every e2e test a safety timeout, so a hang fails one test only."""
    for item in items:
        path = pathlib.Path(str(item.fspath)).resolve()
        if HERE not in path.parents:
            continue
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT))


# --------------------------------------------------------------------------- loops


@pytest.fixture
def run_on(impl) -> Callable[..., Any]:
    """``run_on(coro_fn, *args, timeout=60, debug=None)``: run a program on the loop under test."""

    def run(
        coro_fn: Callable[..., Any], *args: Any, timeout: float = 60, debug: bool | None = None
    ) -> Any:
        errors: list[dict[str, Any]] = []

        async def main() -> Any:
            loop = asyncio.get_running_loop()
            assert isinstance(loop, impl.loop_class), f"running on {type(loop)!r}"
            loop.set_exception_handler(lambda _loop, context: errors.append(context))
            return await asyncio.wait_for(coro_fn(*args), timeout)

        with asyncio.Runner(loop_factory=impl.new_event_loop, debug=debug) as runner:
            result = runner.run(main())
        if errors:
            shown = []
            for context in errors:
                exc = context.get("exception")
                shown.append(f"{context.get('message')!r}: {exc!r}" if exc else repr(context))
            pytest.fail(
                "the loop's exception handler was called:\n  " + "\n  ".join(shown),
                pytrace=False,
            )
        return result

    return run


# --------------------------------------------------------------------------- PostgreSQL


def _postgres_bindir() -> pathlib.Path | None:
    """The folder of ``initdb``/``postgres``: on PATH, else Debian's newest version."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return pathlib.Path(found).resolve().parent

    def version(path: str) -> list[int]:
        return [int(x) for x in pathlib.Path(path).parts[-3].split(".") if x.isdigit()]

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    return pathlib.Path(candidates[-1]).parent if candidates else None


@pytest.fixture(scope="session")
def postgres() -> Iterator[Service]:
    """A throw-away PostgreSQL cluster on 127.0.0.1 (trust auth, fsync off)."""
    bindir = _postgres_bindir()
    if bindir is None:
        unavailable(
            "PostgreSQL server binaries (initdb, postgres) not found: run "
            "tests/e2e/setup_services.sh (apt-get install postgresql)"
        )
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:
        # postgres refuses to run as root: use the ``postgres`` account Debian creates.
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root and there is no 'postgres' user to run the server as")
        run_as = {"user": account.pw_uid, "group": account.pw_gid}
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ferroloop-e2e-pg-"))
    if run_as:
        os.chown(tmp, run_as["user"], run_as["group"])
    data, log = tmp / "data", tmp / "postgres.log"
    port = free_port()
    tls_options, ca_pem = _postgres_tls(tmp, run_as)
    proc: subprocess.Popen | None = None
    try:
        init = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
             "--no-sync", "-E", "UTF8", "--locale=C"],
            capture_output=True, text=True, timeout=120, check=False, cwd=tmp, **run_as,
        )  # fmt: skip
        if init.returncode != 0:
            unavailable(f"initdb failed ({init.returncode}): {init.stderr.strip()[-800:]}")
        with open(log, "wb") as log_fh:
            proc = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(data), "-p", str(port),
                 "-c", f"listen_addresses={HOST}", "-c", f"unix_socket_directories={tmp}",
                 "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=60", *tls_options],
                stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=tmp, **run_as,
            )  # fmt: skip
        try:
            _wait_postgres(bindir, port, proc)
        except (RuntimeError, TimeoutError) as exc:
            unavailable(f"PostgreSQL did not start: {exc}: {log_tail(log)}")
        yield Service(HOST, port, user="postgres", database="postgres", ca_pem=ca_pem)
    finally:
        if proc is not None:
            stop_process(proc, signal.SIGINT)  # "fast" shutdown
        shutil.rmtree(tmp, ignore_errors=True)


def _postgres_tls(tmp: pathlib.Path, run_as: dict[str, Any]) -> tuple[list[str], str]:
    """Server options for TLS with a throw-away CA (none if ``trustme`` is missing)."""
    try:
        import trustme
    except ImportError:
        return [], ""
    ca = trustme.CA()
    cert = ca.issue_cert(HOST, "localhost")
    cert_file, key_file = tmp / "server.crt", tmp / "server.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    os.chmod(key_file, 0o600)  # postgres refuses a key that others can read
    if run_as:
        for path in (cert_file, key_file):
            os.chown(path, run_as["user"], run_as["group"])
    options = ["-c", "ssl=on", "-c", f"ssl_cert_file={cert_file}", "-c", f"ssl_key_file={key_file}"]
    return options, ca.cert_pem.bytes().decode()


def _wait_postgres(bindir: pathlib.Path, port: int, proc: subprocess.Popen) -> None:
    """Wait until the server accepts sessions (not only TCP connections)."""
    wait_for_port(port, 60, proc)
    isready = bindir / "pg_isready"
    if not isready.exists():
        return
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        check = subprocess.run(
            [str(isready), "-q", "-h", HOST, "-p", str(port), "-U", "postgres"],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        if check.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("pg_isready still says no after 60 s")
        time.sleep(0.1)


# --------------------------------------------------------------------------- Redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Service]:
    """A Redis server on 127.0.0.1 with persistence off."""
    exe = shutil.which("redis-server")
    if exe is None:
        unavailable(
            "redis-server not found: run tests/e2e/setup_services.sh (apt-get install redis-server)"
        )
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ferroloop-e2e-redis-"))
    log = tmp / "redis.log"
    port = free_port()
    proc: subprocess.Popen | None = None
    try:
        with open(log, "wb") as log_fh:
            proc = subprocess.Popen(
                [exe, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no",
                 "--daemonize", "no", "--dir", str(tmp), "--protected-mode", "yes"],
                stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp,
            )  # fmt: skip
        try:
            _wait_redis(port, proc)
        except (RuntimeError, TimeoutError, OSError) as exc:
            unavailable(f"redis-server did not start: {exc}: {log_tail(log)}")
        yield Service(HOST, port)
    finally:
        if proc is not None:
            stop_process(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_redis(port: int, proc: subprocess.Popen) -> None:
    wait_for_port(port, 30, proc)
    deadline = time.monotonic() + 30
    while True:
        with socket.create_connection((HOST, port), timeout=5) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(64).startswith(b"+PONG"):
                return
        if time.monotonic() > deadline:
            raise TimeoutError("redis-server does not answer PING")
        time.sleep(0.05)
