"""Subprocesses: loop.subprocess_exec/shell and asyncio.create_subprocess_exec/shell.

Every test also checks what a clean implementation leaves behind: no zombie
(``os.waitpid`` fails with ECHILD) and, where noted, no leaked file descriptor.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import signal
import subprocess
import sys

import pytest
from io_testutil import open_fds, run

pytestmark = pytest.mark.timeout(30)

PY = sys.executable
PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT


def _assert_reaped(pid: int) -> None:
    with pytest.raises(ChildProcessError) as info:
        os.waitpid(pid, os.WNOHANG)
    assert info.value.errno == errno.ECHILD


@pytest.fixture
def no_fd_leak():
    """Fails the test if it leaves file descriptors open (checked after gc)."""
    before = open_fds()
    yield
    gc.collect()
    leaked = open_fds() - before
    details = {}
    for fd in leaked:
        try:
            details[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            details[fd] = "?"
    assert not leaked, f"leaked fds: {details}"


class SubRecorder(asyncio.SubprocessProtocol):
    """Records a subprocess protocol's calls; output per fd in ``data``."""

    def __init__(self, loop):
        self.loop = loop
        self.events = []
        self.data = {1: bytearray(), 2: bytearray()}
        self.transport = None
        self.exited = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport

    def pipe_data_received(self, fd, data):
        assert isinstance(data, bytes)
        self.data[fd] += data

    def pipe_connection_lost(self, fd, exc):
        self.events.append(("pipe_lost", fd, exc))

    def process_exited(self):
        self.events.append("exited")
        self.exited.set_result(self.transport.get_returncode())

    def connection_lost(self, exc):
        self.events.append(("lost", exc))
        self.lost.set_result(exc)


# -- loop.subprocess_exec / subprocess_shell (protocol level) --------------------------


def test_subprocess_exec_protocol(loop, no_fd_leak):
    code = "import sys; data = sys.stdin.read(); print(data.upper()); print('err', file=sys.stderr)"

    async def main():
        tr, pr = await loop.subprocess_exec(lambda: SubRecorder(loop), PY, "-c", code)
        assert pr.events == ["made"]
        pid = tr.get_pid()
        assert isinstance(pid, int) and pid > 0
        assert tr.get_extra_info("subprocess").pid == pid
        stdin = tr.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.WriteTransport)
        assert isinstance(tr.get_pipe_transport(1), asyncio.ReadTransport)
        assert isinstance(tr.get_pipe_transport(2), asyncio.ReadTransport)
        assert tr.get_pipe_transport(3) is None
        stdin.write(b"hello child")
        stdin.close()
        rc = await pr.exited
        await pr.lost
        assert tr.get_returncode() == 0
        tr.close()
        assert tr.is_closing()
        return pid, rc, pr

    pid, rc, pr = run(loop, main())
    assert rc == 0
    assert bytes(pr.data[1]) == b"HELLO CHILD\n"
    assert bytes(pr.data[2]) == b"err\n"
    assert pr.events[0] == "made"
    assert pr.events[-1] == ("lost", None)
    assert sorted(e for e in pr.events[1:-1] if e != "exited") == [
        ("pipe_lost", 0, None),
        ("pipe_lost", 1, None),
        ("pipe_lost", 2, None),
    ]
    assert pr.events.count("exited") == 1
    _assert_reaped(pid)


def test_subprocess_shell_protocol(loop, no_fd_leak):
    async def main():
        tr, pr = await loop.subprocess_shell(
            lambda: SubRecorder(loop), "echo out; echo err >&2; exit 7", stdin=DEVNULL
        )
        assert tr.get_pipe_transport(0) is None
        rc = await pr.exited
        await pr.lost
        tr.close()
        return tr.get_pid(), rc, bytes(pr.data[1]), bytes(pr.data[2])

    pid, rc, out, err = run(loop, main())
    assert (rc, out, err) == (7, b"out\n", b"err\n")
    _assert_reaped(pid)


def test_subprocess_returncode_none_while_running(loop, no_fd_leak):
    async def main():
        tr, pr = await loop.subprocess_exec(
            lambda: SubRecorder(loop), "sleep", "30", stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL
        )
        assert tr.get_returncode() is None
        tr.terminate()
        rc = await pr.exited
        await pr.lost
        tr.close()
        return tr.get_pid(), rc

    pid, rc = run(loop, main())
    assert rc == -signal.SIGTERM
    _assert_reaped(pid)


def test_transport_close_kills_running_process(loop, no_fd_leak):
    async def main():
        tr, pr = await loop.subprocess_exec(
            lambda: SubRecorder(loop), "sleep", "30", stdin=DEVNULL, stdout=PIPE, stderr=DEVNULL
        )
        tr.close()
        assert tr.is_closing()
        rc = await pr.exited
        await pr.lost
        return tr.get_pid(), rc

    pid, rc = run(loop, main())
    assert rc == -signal.SIGKILL
    _assert_reaped(pid)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"universal_newlines": True}, "universal_newlines must be False"),
        ({"shell": True}, "shell must be False"),
        ({"bufsize": 4096}, "bufsize must be 0"),
        ({"text": True}, "text must be False"),
        ({"encoding": "utf-8"}, "encoding must be None"),
        ({"errors": "strict"}, "errors must be None"),
    ],
    ids=["universal_newlines", "shell", "bufsize", "text", "encoding", "errors"],
)
def test_subprocess_exec_bad_arguments(loop, kwargs, message):
    with pytest.raises(ValueError) as info:
        run(loop, loop.subprocess_exec(asyncio.SubprocessProtocol, "true", **kwargs))
    assert str(info.value) == message


@pytest.mark.parametrize(
    "cmd, kwargs, message",
    [
        (["true"], {}, "cmd must be a string"),
        ("true", {"shell": False}, "shell must be True"),
        ("true", {"universal_newlines": True}, "universal_newlines must be False"),
        ("true", {"bufsize": 1}, "bufsize must be 0"),
    ],
    ids=["cmd-list", "shell-false", "universal_newlines", "bufsize"],
)
def test_subprocess_shell_bad_arguments(loop, cmd, kwargs, message):
    with pytest.raises(ValueError) as info:
        run(loop, loop.subprocess_shell(asyncio.SubprocessProtocol, cmd, **kwargs))
    assert str(info.value) == message


def test_subprocess_exec_missing_program(loop, no_fd_leak):
    with pytest.raises(FileNotFoundError):
        run(loop, loop.subprocess_exec(asyncio.SubprocessProtocol, "/nonexistent/program"))


# -- asyncio.create_subprocess_exec / shell (streams) ----------------------------------


def test_communicate_large_input(loop, no_fd_leak):
    payload = os.urandom(1024) * 4096  # 4 MiB through cat and back

    async def main():
        proc = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
        out, err = await proc.communicate(payload)
        return proc.pid, proc.returncode, out, err

    pid, rc, out, err = run(loop, main(), timeout=30)
    assert rc == 0
    assert err is None
    assert out == payload
    _assert_reaped(pid)


def test_stdout_stderr_pipes_and_stderr_to_stdout(loop, no_fd_leak):
    code = "import sys; sys.stdout.write('o'); sys.stdout.flush(); sys.stderr.write('e')"

    async def main():
        p1 = await asyncio.create_subprocess_exec(PY, "-c", code, stdout=PIPE, stderr=PIPE)
        r1 = await p1.communicate()
        p2 = await asyncio.create_subprocess_exec(PY, "-c", code, stdout=PIPE, stderr=STDOUT)
        r2 = await p2.communicate()
        return r1, r2, p1.pid, p2.pid

    r1, r2, pid1, pid2 = run(loop, main())
    assert r1 == (b"o", b"e")
    assert r2 == (b"oe", None)
    _assert_reaped(pid1)
    _assert_reaped(pid2)


def test_devnull(loop, no_fd_leak):
    code = "import sys; print(repr(sys.stdin.read())); print('x', file=sys.stderr)"

    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", code, stdin=DEVNULL, stdout=PIPE, stderr=DEVNULL
        )
        assert proc.stdin is None and proc.stderr is None
        out, err = await proc.communicate()
        return out, err, await proc.wait()

    assert run(loop, main()) == (b"''\n", None, 0)


def test_stdout_to_fd(loop, tmp_path, no_fd_leak):
    path = tmp_path / "out.txt"

    async def main(fd):
        proc = await asyncio.create_subprocess_shell(
            "echo to-file; echo err-too >&2", stdout=fd, stderr=STDOUT
        )
        return await proc.wait()

    with open(path, "wb") as f:
        assert run(loop, main(f.fileno())) == 0
    assert path.read_bytes() == b"to-file\nerr-too\n"


def test_stdin_from_fd(loop, tmp_path, no_fd_leak):
    path = tmp_path / "in.txt"
    path.write_bytes(b"from a file\n")

    async def main(f):
        proc = await asyncio.create_subprocess_exec("cat", stdin=f, stdout=PIPE)
        out, _ = await proc.communicate()
        return out

    with open(path, "rb") as f:
        assert run(loop, main(f)) == b"from a file\n"


def test_cwd_and_env(loop, tmp_path, no_fd_leak):
    code = "import os; print(os.getcwd()); print(os.environ.get('FERRO_TEST_VAR'))"

    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY,
            "-c",
            code,
            stdout=PIPE,
            cwd=str(tmp_path),
            env={"FERRO_TEST_VAR": "set-by-test", "PATH": os.environ.get("PATH", "")},
        )
        out, _ = await proc.communicate()
        return out.decode().splitlines()

    cwd, var = run(loop, main())
    assert os.path.samefile(cwd, tmp_path)
    assert var == "set-by-test"


def test_shell_env_and_cwd(loop, tmp_path, no_fd_leak):
    async def main():
        proc = await asyncio.create_subprocess_shell(
            'pwd; echo "$FERRO_X"',
            stdout=PIPE,
            cwd=tmp_path,
            env={"FERRO_X": "shell-var", "PATH": os.environ.get("PATH", "")},
        )
        out, _ = await proc.communicate()
        return out.decode().splitlines()

    cwd, var = run(loop, main())
    assert os.path.samefile(cwd, tmp_path)
    assert var == "shell-var"


def test_start_new_session(loop, no_fd_leak):
    code = "import os; print(os.getsid(0) == os.getpid(), os.getpgrp() == os.getpid())"

    async def main():
        p1 = await asyncio.create_subprocess_exec(
            PY, "-c", code, stdout=PIPE, start_new_session=True
        )
        p2 = await asyncio.create_subprocess_exec(PY, "-c", code, stdout=PIPE)
        return (await p1.communicate())[0], (await p2.communicate())[0]

    assert run(loop, main()) == (b"True True\n", b"False False\n")


def test_pass_fds_and_close_fds(loop, no_fd_leak):
    r, w = os.pipe()
    try:
        code = (
            "import os, sys\n"
            "fd = int(sys.argv[1])\n"
            "try:\n"
            "    os.write(fd, b'via pass_fds')\n"
            "    print('wrote')\n"
            "except OSError as e:\n"
            "    print('closed', e.errno)\n"
        )

        async def main():
            # os.pipe() fds are non-inheritable: only pass_fds (or an inheritable fd
            # with close_fds=False) gives the child access.
            p1 = await asyncio.create_subprocess_exec(
                PY, "-c", code, str(w), stdout=PIPE, pass_fds=(w,)
            )
            o1 = (await p1.communicate())[0]
            p2 = await asyncio.create_subprocess_exec(PY, "-c", code, str(w), stdout=PIPE)
            o2 = (await p2.communicate())[0]
            os.set_inheritable(w, True)
            p3 = await asyncio.create_subprocess_exec(
                PY, "-c", code, str(w), stdout=PIPE, close_fds=False
            )
            o3 = (await p3.communicate())[0]
            return o1, o2, o3

        o1, o2, o3 = run(loop, main())
        os.set_blocking(r, False)
        written = os.read(r, 100)
    finally:
        os.close(r)
        os.close(w)
    assert o1 == b"wrote\n"
    assert o2 == b"closed 9\n"  # close_fds=True (the default): EBADF in the child
    assert o3 == b"wrote\n"
    assert written == b"via pass_fdsvia pass_fds"


def test_wait_and_returncode(loop, no_fd_leak):
    async def main():
        proc = await asyncio.create_subprocess_exec(PY, "-c", "import sys; sys.exit(3)")
        assert proc.returncode is None
        rc = await proc.wait()
        rc2 = await proc.wait()
        return proc.pid, rc, rc2, proc.returncode

    pid, rc, rc2, attr = run(loop, main())
    assert rc == rc2 == attr == 3
    _assert_reaped(pid)


@pytest.mark.parametrize(
    "how, expected",
    [
        ("terminate", -signal.SIGTERM),
        ("kill", -signal.SIGKILL),
        ("send_signal", -signal.SIGUSR1),
    ],
)
def test_signals_to_child(loop, how, expected, no_fd_leak):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "sleep", "30", stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL
        )
        if how == "send_signal":
            proc.send_signal(signal.SIGUSR1)
        else:
            getattr(proc, how)()
        rc = await proc.wait()
        # Once waited for, the process is gone: signalling it fails.
        with pytest.raises(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with pytest.raises(ProcessLookupError):
            proc.kill()
        return proc.pid, rc

    pid, rc = run(loop, main())
    assert rc == expected
    _assert_reaped(pid)


def test_child_handles_signal(loop, no_fd_leak):
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGUSR1, lambda *a: sys.exit(42))\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )

    async def main():
        proc = await asyncio.create_subprocess_exec(PY, "-c", code, stdout=PIPE)
        assert await proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGUSR1)
        rc = await proc.wait()
        await proc.stdout.read()
        return rc

    assert run(loop, main()) == 42


def test_stream_reads_and_stdin_drain(loop, no_fd_leak):
    code = "import sys\nfor line in sys.stdin:\n    print(line.strip()[::-1], flush=True)\n"

    async def main():
        proc = await asyncio.create_subprocess_exec(PY, "-c", code, stdin=PIPE, stdout=PIPE)
        replies = []
        for word in (b"abc", b"hello", b"ferro"):
            proc.stdin.write(word + b"\n")
            await proc.stdin.drain()
            replies.append(await proc.stdout.readline())
        proc.stdin.close()
        await proc.stdin.wait_closed()
        rest = await proc.stdout.read()
        return replies, rest, await proc.wait()

    assert run(loop, main()) == ([b"cba\n", b"olleh\n", b"orref\n"], b"", 0)


def test_many_concurrent_processes(loop, no_fd_leak):
    async def one(i):
        proc = await asyncio.create_subprocess_exec("echo", str(i), stdout=PIPE)
        out, _ = await proc.communicate()
        return proc.pid, out

    async def main():
        return await asyncio.gather(*(one(i) for i in range(20)))

    results = run(loop, main(), timeout=30)
    assert [out for _, out in results] == [b"%d\n" % i for i in range(20)]
    for pid, _ in results:
        _assert_reaped(pid)


def test_child_closing_stdout_early(loop, no_fd_leak):
    """The child closes stdout and keeps running: EOF first, exit later."""
    code = "import os, time; os.write(1, b'bye'); os.close(1); time.sleep(0.2)"

    async def main():
        proc = await asyncio.create_subprocess_exec(PY, "-c", code, stdout=PIPE)
        data = await proc.stdout.read()
        assert proc.returncode is None
        return data, await proc.wait()

    assert run(loop, main()) == (b"bye", 0)


def test_write_to_exited_child_stdin(loop, no_fd_leak):
    async def main():
        proc = await asyncio.create_subprocess_exec("true", stdin=PIPE)
        await proc.wait()
        await proc.stdin.wait_closed()  # the stdin pipe noticed the reader went away
        proc.stdin.write(b"x" * (1024 * 1024))  # dropped
        with pytest.raises(ConnectionResetError) as info:
            await proc.stdin.drain()
        proc.stdin.close()
        return proc.returncode, str(info.value)

    assert run(loop, main()) == (0, "Connection lost")


def test_communicate_with_broken_stdin(loop, no_fd_leak):
    """communicate() ignores BrokenPipeError on stdin (the child exited without reading)."""

    async def main():
        proc = await asyncio.create_subprocess_exec("true", stdin=PIPE, stdout=PIPE)
        out, err = await proc.communicate(b"y" * (1024 * 1024))
        return out, err, proc.returncode

    assert run(loop, main()) == (b"", None, 0)


def test_shell_exit_status_and_kill_shell(loop, no_fd_leak):
    async def main():
        p1 = await asyncio.create_subprocess_shell("exit 5")
        rc1 = await p1.wait()
        p2 = await asyncio.create_subprocess_shell("kill -TERM $$")
        rc2 = await p2.wait()
        return rc1, rc2

    assert run(loop, main()) == (5, -signal.SIGTERM)


def test_process_repr_and_pid(loop, no_fd_leak):
    async def main():
        proc = await asyncio.create_subprocess_exec("true")
        r1 = repr(proc)
        await proc.wait()
        r2 = repr(proc)
        return proc.pid, r1, r2

    pid, r1, r2 = run(loop, main())
    assert r1 == f"<Process {pid}>"
    assert r2 == f"<Process {pid}>"


def _spawn_and_wait(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(PY, "-c", "pass")
        threads = __import__("threading").active_count()
        code = await proc.wait()
        return proc.pid, code, threads

    return run(loop, main())


@pytest.mark.skipif(
    not hasattr(asyncio, "set_child_watcher"), reason="child watchers are gone (3.14)"
)
def test_child_watcher_set_through_the_policy_is_used(loop):
    """A watcher the program chose (set_child_watcher) watches the loop's children."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
        old = policy._watcher

        pids = []

        class Spy(asyncio.ThreadedChildWatcher):
            def add_child_handler(self, pid, callback, *args):
                pids.append(pid)
                super().add_child_handler(pid, callback, *args)

        spy = Spy()
        asyncio.set_child_watcher(spy)
    try:
        pid, code, _ = _spawn_and_wait(loop)
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            policy._watcher = old
    assert code == 0
    assert pids == [pid]
    _assert_reaped(pid)


def test_child_exit_seen_without_a_thread_per_child(loop, impl):
    """With no watcher chosen, a child is watched through a pidfd where the kernel has
    pidfd_open (3.12+'s default; ferroloop on 3.11 too), not by a thread blocked in
    waitpid (3.11's default on asyncio)."""
    if not hasattr(os, "pidfd_open"):
        pytest.skip("no os.pidfd_open")
    policy = asyncio.get_event_loop_policy()
    old = getattr(policy, "_watcher", None)
    if old is not None:  # an earlier test's choice: start from "none chosen"
        policy._watcher = None
    before = __import__("threading").active_count()
    try:
        pid, code, during = _spawn_and_wait(loop)
    finally:
        if hasattr(policy, "_watcher"):
            created, policy._watcher = policy._watcher, old
            if created is not None and created is not old:
                created.close()
    assert code == 0
    _assert_reaped(pid)
    if impl.name == "ferroloop" or sys.version_info >= (3, 12):
        assert during == before
