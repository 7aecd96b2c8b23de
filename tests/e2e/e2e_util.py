"""Helpers of the end-to-end suite (imported by its conftest and test modules)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import signal
import socket
import subprocess
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
HOST = "127.0.0.1"
#: ``FERROLOOP_E2E_STRICT=1`` (set by ``make e2e``): a missing server fails instead of skipping.
STRICT = os.environ.get("FERROLOOP_E2E_STRICT", "") not in ("", "0")


def unavailable(reason: str) -> None:
    """Skip the test for a missing service -- or fail it when ``FERROLOOP_E2E_STRICT`` is set."""
    if STRICT:
        pytest.fail(f"{reason} (FERROLOOP_E2E_STRICT is set)", pytrace=False)
    pytest.skip(reason)


@dataclasses.dataclass(frozen=True)
class Service:
    """A server started for the test session."""

    host: str
    port: int
    user: str = ""
    database: str = ""
    #: PEM of the CA that signed the server's TLS certificate ("" when TLS is off).
    ca_pem: str = ""

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Wait until something accepts TCP connections on ``port`` (or ``proc`` exits)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {HOST}:{port} after {timeout} s") from None
            time.sleep(0.05)


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Send ``sig`` to ``proc`` and wait for it, killing it if it does not exit in time."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def log_tail(path: pathlib.Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file, on one line."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def python_env(**extra: str) -> dict[str, str]:
    """Environment for a Python child process: this folder importable, no user site."""
    env = dict(os.environ)
    paths = [str(HERE), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONNOUSERSITE"] = "1"
    env.pop("PYTEST_ADDOPTS", None)
    env.update(extra)
    return env
