"""Leak checks: after N callbacks, tasks, TCP connections (transports and ``sock_*``),
subprocesses, executor calls and loops, the process holds no more file descriptors,
threads or memory than before, and finished tasks / futures are freed.

Each check runs its workload once to warm up (imports, caches, allocator arenas), takes
a snapshot (``/proc/self/fd``, ``threading.active_count()``, ``/proc/self/task``, RSS
after ``gc.collect()`` and ``malloc_trim``, the number of gc-tracked objects), runs the
workload again on a fresh loop, closes the loop and compares.

The sizes here are small (the whole file runs in well under 30 s); ``tests/soak/``
runs the same workloads at the issue's sizes (``make soak``).

The last part closes loops that still have pending tasks, live transports and running
executor jobs, and checks that both loops leave nothing behind and give asyncio's
warnings ('Task was destroyed but it is pending!', ResourceWarning for unclosed
transports and loops).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import dataclasses
import gc
import os
import socket
import sys
import threading
import time
import warnings
import weakref

import pytest
from ferro_testutil import IMPLS, run_python

# -- measuring ----------------------------------------------------------------------

_PAGE = os.sysconf("SC_PAGE_SIZE")
try:
    _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):  # pragma: no cover - not glibc
    _malloc_trim = None

SETTLE_TIMEOUT = 10.0  # threads of a closed loop's executor must be gone by then


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def fds() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return out


@dataclasses.dataclass
class Snapshot:
    fds: dict[int, str]
    threads: int
    os_threads: int
    rss: int
    objects: int

    @classmethod
    def take(cls) -> Snapshot:
        gc.collect()
        gc.collect()
        if _malloc_trim is not None:
            _malloc_trim(0)
        return cls(
            fds(), threading.active_count(), os_threads(), rss_bytes(), len(gc.get_objects())
        )

    def describe(self) -> str:
        return (
            f"fds={len(self.fds)} threads={self.threads} os_threads={self.os_threads} "
            f"rss={self.rss / 2**20:.1f}MiB gc_objects={self.objects}"
        )


def wait_threads_settled(before: Snapshot, timeout: float = SETTLE_TIMEOUT) -> None:
    """Wait (bounded) until no more OS threads run than in ``before`` (a closed loop's
    executor threads finish their last job and exit on their own), then briefly for
    ``threading`` to forget them too."""
    deadline = time.monotonic() + timeout
    while os_threads() > before.os_threads and time.monotonic() < deadline:
        time.sleep(0.01)
    deadline = min(deadline, time.monotonic() + 1.0)
    while threading.active_count() > before.threads and time.monotonic() < deadline:
        time.sleep(0.01)


def reap_children() -> list[int]:
    """Pids of terminated children nobody waited for (zombies); reaps them."""
    zombies = []
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return zombies
        if pid == 0:
            return zombies
        zombies.append(pid)


@dataclasses.dataclass
class Report:
    before: Snapshot
    after: Snapshot
    elapsed: float
    weak_alive: int
    weak_total: int

    def __str__(self) -> str:
        return (
            f"before: {self.before.describe()}\n after: {self.after.describe()}\n"
            f"rss delta {(self.after.rss - self.before.rss) / 2**20:+.2f} MiB, "
            f"gc objects delta {self.after.objects - self.before.objects:+d}, "
            f"weakrefs alive {self.weak_alive}/{self.weak_total}, {self.elapsed:.2f} s"
        )


def measure(impl, workload, n: int, *, warmup: int | None = None, shutdown_executor=True):
    """Run ``workload(loop, n, refs)`` once to warm up, then again between two snapshots.

    ``refs`` collects weak references to objects (finished tasks, futures, transports)
    that must be dead once the loop is closed.
    """
    _run_once(impl, workload, n if warmup is None else warmup, [], shutdown_executor)
    before = Snapshot.take()
    refs: list[weakref.ref] = []
    start = time.monotonic()
    _run_once(impl, workload, n, refs, shutdown_executor)
    elapsed = time.monotonic() - start
    wait_threads_settled(before)
    gc.collect()
    alive, total = sum(1 for r in refs if r() is not None), len(refs)
    del refs
    after = Snapshot.take()
    return Report(before, after, elapsed, alive, total)


def _run_once(impl, workload, n, refs, shutdown_executor) -> None:
    loop = impl.new_event_loop()
    errors: list[dict] = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    try:
        loop.run_until_complete(workload(loop, n, refs))
        loop.run_until_complete(loop.shutdown_asyncgens())
        if shutdown_executor:
            loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
    del loop
    gc.collect()
    assert not errors, [c.get("message") for c in errors]


# Under valgrind (``make sanitize``) RSS includes the tool's shadow memory: not checked.
UNDER_VALGRIND = "vgpreload" in os.environ.get("LD_PRELOAD", "")


def assert_no_leak(report: Report, *, rss_budget: int, objects_budget: int = 200) -> None:
    """The process holds no more fds, threads, memory and objects than before."""
    before, after = report.before, report.after
    new_fds = {fd: target for fd, target in after.fds.items() if fd not in before.fds}
    problems = []
    if new_fds:
        problems.append(f"fds leaked: {new_fds}")
    if after.threads > before.threads or after.os_threads > before.os_threads:
        problems.append(
            f"threads leaked: {before.threads}->{after.threads} Python, "
            f"{before.os_threads}->{after.os_threads} OS"
        )
    if after.rss - before.rss > rss_budget and not UNDER_VALGRIND:
        problems.append(f"RSS grew by more than {rss_budget / 2**20:.1f} MiB")
    if after.objects - before.objects > objects_budget:
        problems.append(f"gc-tracked objects grew by more than {objects_budget}")
    if report.weak_alive:
        problems.append(f"{report.weak_alive} finished objects still referenced")
    if gc.garbage:
        problems.append(f"gc.garbage is not empty: {gc.garbage[:5]!r}")
    zombies = reap_children()
    if zombies:
        problems.append(f"child processes left unreaped: {zombies}")
    if problems:
        pytest.fail("\n".join(problems) + "\n" + str(report), pytrace=False)


def rss_budget(n: int, per_item: int) -> int:
    """Allowed RSS growth: a fixed slack (allocator arenas, caches) plus ``per_item``
    bytes per operation, far below any real per-operation leak of an object."""
    return 4 * 2**20 + n * per_item


# -- workloads ----------------------------------------------------------------------
# Each is ``async def workload(loop, n, refs)``; only the public loop API is used.


async def callbacks_workload(loop, n, refs):
    """``n`` callbacks: call_soon chains and batches, call_later / call_at timers (half
    of them cancelled), call_soon_threadsafe from the loop thread."""
    done = loop.create_future()
    count = [0]
    batch = 1000

    def cb(i, payload):
        count[0] += 1
        if count[0] == n and not done.done():
            done.set_result(None)

    scheduled = 0
    now = loop.time()
    while scheduled < n:
        k = min(batch, n - scheduled)
        for i in range(k):
            j = scheduled + i
            payload = [j]  # an object per callback, released once it ran
            if j % 4 == 0:
                loop.call_soon(cb, j, payload)
            elif j % 4 == 1:
                loop.call_soon_threadsafe(cb, j, payload)
            elif j % 4 == 2:
                loop.call_at(now - 1.0, cb, j, payload)
                loop.call_later(3600, cb, j, payload).cancel()
            else:
                loop.call_later(0, cb, j, payload)
            if j % 997 == 0:
                refs.append(weakref.ref(loop.call_soon(cb, -1, None)))
                count[0] -= 1
        scheduled += k
        await asyncio.sleep(0)
    await done
    for _ in range(3):
        await asyncio.sleep(0)


async def tasks_workload(loop, n, refs):
    """``n`` tasks, in batches: each awaits a future resolved by a callback, sleeps, and
    ends with a result, an exception or a cancellation."""
    batch = 1000

    async def job(i):
        fut = loop.create_future()
        loop.call_soon(fut.set_result, i)
        await fut
        await asyncio.sleep(0)
        if i % 3 == 1:
            raise ValueError(i)
        if i % 3 == 2:
            await asyncio.sleep(3600)
        return i

    for start in range(0, n, batch):
        indexes = range(start, min(n, start + batch))
        tasks = [loop.create_task(job(i)) for i in indexes]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        for i, t in zip(indexes, tasks):
            if i % 3 == 2:
                t.cancel("leak test")
        res = await asyncio.gather(*tasks, return_exceptions=True)
        assert len(res) == len(tasks)
        refs.extend(weakref.ref(t) for t in tasks[::97])
        del tasks, res


class _Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        return False  # close on EOF


class _Client(asyncio.Protocol):
    def __init__(self, loop):
        self.data = b""
        self.lost = loop.create_future()
        self.got = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data
        if len(self.data) >= 5 and not self.got.done():
            self.got.set_result(None)

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


async def tcp_transport_workload(loop, n, refs):
    """``n`` TCP connections through ``create_server`` / ``create_connection``: an echo
    round trip, then half of them closed by the client, half aborted."""
    server = await loop.create_server(_Echo, "127.0.0.1", 0, backlog=128)
    host, port = server.sockets[0].getsockname()[:2]
    batch = 50
    try:
        for start in range(0, n, batch):

            async def one(i):
                tr, pr = await loop.create_connection(lambda: _Client(loop), host, port)
                tr.write(b"hello")
                await pr.got
                if i % 2:
                    tr.abort()
                else:
                    tr.close()
                await pr.lost
                if i % 37 == 0:
                    refs.append(weakref.ref(tr))
                    refs.append(weakref.ref(pr))

            await asyncio.gather(*(one(i) for i in range(start, min(n, start + batch))))
    finally:
        server.close()
        await server.wait_closed()
    for _ in range(5):  # let the server side of the last connections see EOF and close
        await asyncio.sleep(0)


async def sock_workload(loop, n, refs):
    """``n`` TCP connections with ``sock_connect`` / ``sock_accept`` / ``sock_sendall`` /
    ``sock_recv`` / ``sock_recv_into`` on non-blocking sockets."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(128)
    lsock.setblocking(False)
    addr = lsock.getsockname()
    try:
        for i in range(n):
            client = socket.socket()
            client.setblocking(False)
            try:
                connect = loop.create_task(loop.sock_connect(client, addr))
                peer, _ = await loop.sock_accept(lsock)
                await connect
                with peer:
                    peer.setblocking(False)
                    await loop.sock_sendall(client, b"ping")
                    data = await loop.sock_recv(peer, 16)
                    await loop.sock_sendall(peer, data)
                    buf = bytearray(16)
                    got = await loop.sock_recv_into(client, buf)
                    assert buf[:got] == b"ping"[:got]
            finally:
                client.close()
            if i % 37 == 0:
                refs.append(weakref.ref(connect))
    finally:
        lsock.close()


async def subprocess_workload(loop, n, refs):
    """``n`` subprocesses (``true``, and ``echo`` through a pipe), each waited for."""
    for i in range(n):
        if i % 2:
            proc = await asyncio.create_subprocess_exec("true")
            assert await proc.wait() == 0
        else:
            proc = await asyncio.create_subprocess_exec(
                "echo", str(i), stdout=asyncio.subprocess.PIPE
            )
            out, _ = await proc.communicate()
            assert out == f"{i}\n".encode()
        if i % 7 == 0:
            refs.append(weakref.ref(proc))
        del proc


def _work(i):
    return i * 2


def _fail(i):
    raise KeyError(i)


async def executor_workload(loop, n, refs):
    """``n`` ``run_in_executor(None, ...)`` calls in batches (results and exceptions)."""
    batch = 500
    for start in range(0, n, batch):
        futs = [
            loop.run_in_executor(None, _fail if i % 10 == 0 else _work, i)
            for i in range(start, min(n, start + batch))
        ]
        res = await asyncio.gather(*futs, return_exceptions=True)
        for i, r in zip(range(start, start + batch), res):
            assert isinstance(r, KeyError) if i % 10 == 0 else r == i * 2
        refs.extend(weakref.ref(f) for f in futs[::97])
        del futs, res


def loops_churn(impl, n: int) -> None:
    """``n`` loops created, run briefly and closed (with and without a run)."""
    for i in range(n):
        loop = impl.new_event_loop()
        if i % 2:
            loop.run_until_complete(asyncio.sleep(0))
        loop.close()


# -- the checks ---------------------------------------------------------------------

CI = {
    "callbacks": 200_000,
    "tasks": 20_000,
    "tcp": 300,
    "sock": 300,
    "subprocesses": 20,
    "executor": 5_000,
    "loops": 200,
}

# (workload, RSS growth allowed per operation, in bytes, on top of 4 MiB): far below the
# size of any object a leak would keep per operation, so the soak sizes catch a leak
# of even one small object per operation.
WORKLOADS = {
    "callbacks": (callbacks_workload, 2),
    "tasks": (tasks_workload, 16),
    "tcp": (tcp_transport_workload, 256),
    "sock": (sock_workload, 256),
    "subprocesses": (subprocess_workload, 2048),
    "executor": (executor_workload, 16),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(WORKLOADS))
def test_no_leak(impl, name):
    workload, per_item = WORKLOADS[name]
    n = CI[name]
    report = measure(impl, workload, n)
    print(f"{impl.name} {name} n={n}\n{report}")
    assert_no_leak(report, rss_budget=rss_budget(n, per_item))


def test_no_leak_executor_without_shutdown(impl):
    """Closing a loop right after its executor jobs finished (no
    shutdown_default_executor): the worker threads exit on their own, promptly."""
    n = CI["executor"] // 5
    report = measure(impl, executor_workload, n, shutdown_executor=False)
    print(f"{impl.name} executor (no shutdown) n={n}\n{report}")
    assert_no_leak(report, rss_budget=rss_budget(n, 64))


_GHOSTS_SCRIPT = """
import asyncio, os, sys, threading, time
sys.path.insert(0, {tests!r})
from ferro_testutil import IMPLS, run_python
from test_leaks import executor_workload
impl = IMPLS[{name!r}]
for _ in range(3):
    loop = impl.new_event_loop()
    loop.run_until_complete(executor_workload(loop, 200, []))
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()
deadline = time.monotonic() + 2
while True:
    tids = {{int(t) for t in os.listdir("/proc/self/task")}}
    ghosts = [t for t in threading.enumerate() if t.native_id not in tids]
    if not ghosts or time.monotonic() > deadline:
        break
    time.sleep(0.05)
print(ghosts)
"""


def test_threading_lists_only_live_threads(impl):
    """After the default executor was shut down and the loop closed,
    ``threading.enumerate()`` lists no thread that has exited (every entry's
    ``native_id`` is a task of the process).  In a fresh interpreter."""
    script = _GHOSTS_SCRIPT.format(tests=os.path.dirname(__file__), name=impl.name)
    proc = run_python([sys.executable, "-c", script], timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", f"threading lists threads that have exited: {proc.stdout}"


def test_no_leak_loops(impl):
    n = CI["loops"]
    loops_churn(impl, 20)
    before = Snapshot.take()
    start = time.monotonic()
    loops_churn(impl, n)
    elapsed = time.monotonic() - start
    wait_threads_settled(before)
    after = Snapshot.take()
    report = Report(before, after, elapsed, 0, 0)
    print(f"{impl.name} loops n={n}\n{report}")
    assert_no_leak(report, rss_budget=rss_budget(n, 4096))


# -- closing a loop that still has work -----------------------------------------------


@contextlib.contextmanager
def capture_unraisable():
    """Collect ``sys.unraisablehook`` calls (exceptions in ``__del__`` and finalisers)."""
    caught: list = []
    old = sys.unraisablehook
    sys.unraisablehook = lambda u: caught.append(
        f"{u.exc_type.__name__}: {u.exc_value} ({u.object!r})"
    )
    try:
        yield caught
    finally:
        sys.unraisablehook = old


def _slow(event: threading.Event, seconds: float) -> str:
    event.wait(seconds)
    return "late"


def close_busy_loop(impl, *, pending_tasks=5, transports=3, jobs=3, close=True):
    """Leave tasks pending, transports open and executor jobs running, close the loop
    (or, with ``close=False``, just drop it), drop every reference and collect.  Returns what surfaced: exception-handler messages,
    warnings (category, text prefix), unraisable exceptions, and the number of jobs
    that completed afterwards."""
    loop = impl.new_event_loop()
    contexts: list[dict] = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    release = threading.Event()
    finished: list[str] = []

    def job():
        finished.append(_slow(release, 5.0))

    async def forever():
        await asyncio.sleep(3600)

    async def setup():
        server = await loop.create_server(_Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conns = []
        for _ in range(transports):
            conns.append(await loop.create_connection(lambda: _Client(loop), "127.0.0.1", port))
        tasks = [loop.create_task(forever()) for _ in range(pending_tasks)]
        for _ in range(jobs):
            loop.run_in_executor(None, job)
        await asyncio.sleep(0.05)  # server side accepted; tasks started; jobs running
        server.close()
        return conns, tasks

    conns, tasks = loop.run_until_complete(setup())
    del conns, tasks
    with warnings.catch_warnings(record=True) as caught, capture_unraisable() as unraisable:
        warnings.simplefilter("always")
        if close:
            loop.close()
        release.set()
        loop = None  # the last reference (with close=False: the loop's __del__ warns)
        for _ in range(3):
            gc.collect()
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while len(finished) < jobs and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        gc.collect()
    messages = sorted(str(c.get("message")) for c in contexts)
    warned = sorted(
        (w.category.__name__, str(w.message).split(" ")[0] + " " + str(w.message).split(" ")[1])
        for w in caught
    )
    return messages, warned, unraisable, len(finished)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("close", [True, False], ids=["closed", "dropped"])
def test_close_busy_loop_leaves_nothing_behind(impl, close):
    close_busy_loop(impl, pending_tasks=1, transports=1, jobs=1, close=close)  # warm-up
    before = Snapshot.take()
    messages, warned, unraisable, finished = close_busy_loop(impl, close=close)
    wait_threads_settled(before)
    after = Snapshot.take()
    report = Report(before, after, 0.0, 0, 0)
    print(f"{impl.name}: messages={messages}\nwarnings={warned}\n{report}")
    assert unraisable == []
    assert finished == 3, "executor jobs running at close() must still complete"
    assert_no_leak(report, rss_budget=4 * 2**20, objects_budget=500)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("close", [True, False], ids=["closed", "dropped"])
def test_close_busy_loop_warns_like_asyncio(impl, close):
    expected = close_busy_loop(IMPLS["asyncio"], close=close)[:2]
    actual = close_busy_loop(impl, close=close)[:2]
    # asyncio: one 'Task was destroyed but it is pending!' per pending task (through the
    # loop's exception handler), one ResourceWarning per unclosed client transport and
    # per server-side transport (and per socket), and one for the loop if not closed.
    assert expected[0].count("Task was destroyed but it is pending!") == 5
    assert expected[1].count(("ResourceWarning", "unclosed transport")) == 6
    assert (("ResourceWarning", "unclosed event") in expected[1]) == (not close)
    assert actual == expected


# -- reference cycles through handles -------------------------------------------------


class _HoldsItsHandle:
    """An object whose own method is the callback of a handle it keeps: a cycle."""

    def callback(self):
        pass


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_soon_threadsafe"])
@pytest.mark.parametrize("fate", ["ran", "cancelled", "pending_at_close"])
def test_cycle_through_a_handle_is_collected(loop, method, fate):
    """``obj -> handle -> obj.callback -> obj`` is garbage the collector frees, whatever
    became of the handle (asyncio's handles are gc-tracked; a loop whose handles are not
    -- rloop 0.5 -- leaks every such object: the piece of the contract that
    ``benches/micro.py --no-gc`` takes out of the timer figures)."""
    obj = _HoldsItsHandle()
    if method == "call_later":
        delay = 3600 if fate == "pending_at_close" else 0
        obj.handle = loop.call_later(delay, obj.callback)
    else:
        obj.handle = getattr(loop, method)(obj.callback)
    if fate == "cancelled":
        obj.handle.cancel()
    ref = weakref.ref(obj)
    del obj
    if fate != "pending_at_close":
        loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()
    gc.collect()
    assert ref() is None


# -- handles scheduled while the loop runs ----------------------------------------------
# ferroloop keeps the handles a running loop owns out of the collector's view and
# brings each back when that stops being safe (src/handle_gc.rs); asyncio tracks them
# all the time. These cases are where the difference could show.


def _schedule(loop, method, target, delay=0):
    if method == "call_later":
        return loop.call_later(delay, target)
    return getattr(loop, method)(target)


def _queue_backlog(loop, n):
    """Queue ``n`` no-op callbacks (ferroloop hides handles queued behind a backlog
    from the collector)."""
    for _ in range(n):
        loop.call_soon(lambda: None)


def _meet_fate(holder, obj, fate):
    """Cancel ``obj.handle`` if ``fate`` says so; keep a weak reference to ``obj``."""
    if fate == "cancelled":
        obj.handle.cancel()
    holder["ref"] = weakref.ref(obj)


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_soon_threadsafe"])
@pytest.mark.parametrize("fate", ["ran", "cancelled"])
def test_cycle_through_a_handle_made_while_running_is_collected(loop, method, fate):
    """A handle made on the running loop that the loop has let go of is collectable while
    the loop is still open (no ``close()`` needed to break the cycle)."""
    holder = {}

    async def schedule():
        _queue_backlog(loop, 200)
        obj = _HoldsItsHandle()
        obj.handle = _schedule(loop, method, obj.callback)
        _meet_fate(holder, obj, fate)

    loop.run_until_complete(schedule())
    loop.run_until_complete(asyncio.sleep(0.01))
    gc.collect()
    assert holder["ref"]() is None


def test_cycle_through_a_timer_pending_when_the_loop_stops(loop):
    """A timer still scheduled when ``run_until_complete`` returns: alive while the loop
    holds it, garbage once ``close()`` drops it."""
    holder = {}

    async def schedule():
        obj = _HoldsItsHandle()
        obj.handle = loop.call_later(3600, obj.callback)
        holder["ref"] = weakref.ref(obj)

    loop.run_until_complete(schedule())
    gc.collect()
    assert holder["ref"]() is not None
    loop.close()
    gc.collect()
    assert holder["ref"]() is None


@pytest.mark.parametrize("method", ["call_soon", "call_later"])
def test_unclosed_loop_with_pending_handles_is_collected(impl, method):
    """A loop that is never closed and still holds handles made while it ran (each one
    refers back to the loop) is garbage once dropped, with asyncio's ResourceWarning."""
    loop = impl.new_event_loop()

    async def schedule(running):
        for _ in range(200):
            _schedule(running, method, running.stop, delay=3600)

    loop.run_until_complete(schedule(loop))
    ref = weakref.ref(loop)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del loop
        gc.collect()
    messages = [str(w.message) for w in caught]
    del caught  # a warning keeps its source (the loop) alive
    gc.collect()
    assert ref() is None
    assert any("unclosed event loop" in m for m in messages)


def test_objects_only_a_pending_handle_holds_survive_a_collection(loop):
    """``gc.collect()`` while the loop runs, with self-referencing objects reachable only
    from pending handles: every one survives and its callback runs."""
    ran = []

    class SelfRef:
        def __init__(self, i):
            self.me = self
            self.i = i

        def fire(self):
            ran.append(self.i)

    async def main():
        for i in range(200):
            loop.call_later(0.001 * (i % 5), SelfRef(i).fire)
            loop.call_soon(SelfRef(1000 + i).fire)
        gc.collect()
        await asyncio.sleep(0.02)
        gc.collect()

    loop.run_until_complete(main())
    assert sorted(ran) == list(range(200)) + list(range(1000, 1200))


def test_cycle_through_a_handles_context_is_collected(loop):
    """The context ``get_context()`` hands out can carry a cycle (context -> variable ->
    object -> context); once the handle is gone it is garbage like any other."""
    var = contextvars.ContextVar("var")
    holder = {}

    class HoldsContext:
        pass

    async def schedule():
        handle = loop.call_later(3600, lambda: None)
        ctx = handle._context  # get_context() is 3.12+
        obj = HoldsContext()
        obj.ctx = ctx
        ctx.run(var.set, obj)
        handle.cancel()
        holder["ref"] = weakref.ref(obj)

    loop.run_until_complete(schedule())
    loop.run_until_complete(asyncio.sleep(0.01))
    gc.collect()
    assert holder["ref"]() is None


@pytest.mark.parametrize("backlog", [0, 200])
@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_soon_threadsafe"])
@pytest.mark.parametrize("fate", ["ran", "cancelled"])
def test_cycle_through_the_context_of_a_handle_made_while_running(loop, method, fate, backlog):
    """``obj -> handle -> context -> obj`` (running or cancelling a handle drops its
    callback, not its context): garbage once the loop has let go of the handle, whether
    it was queued alone or behind ``backlog`` other callbacks."""
    var = contextvars.ContextVar("var")
    holder = {}

    class Holder:
        pass

    async def schedule():
        _queue_backlog(loop, backlog)
        obj = Holder()
        ctx = contextvars.copy_context()
        ctx.run(var.set, obj)
        if method == "call_later":
            obj.handle = loop.call_later(0, lambda: None, context=ctx)
        else:
            obj.handle = getattr(loop, method)(lambda: None, context=ctx)
        _meet_fate(holder, obj, fate)

    loop.run_until_complete(schedule())
    loop.run_until_complete(asyncio.sleep(0.01))
    gc.collect()
    assert holder["ref"]() is None


# -- reference cycles through futures and tasks -----------------------------------------


class _Holder:
    pass


@pytest.mark.parametrize(
    "through",
    ["dict", "result", "exception", "done_callback", "callback_context", "cancel_message"],
)
def test_cycle_through_a_future_is_collected(loop, through):
    """``obj -> future -> (attribute | result | exception | callback | ...) -> obj``:
    every place a future keeps an object is seen by the collector."""
    holder = {}

    def make():
        obj = _Holder()
        fut = loop.create_future()
        obj.fut = fut
        if through == "dict":
            fut.backref = obj
        elif through == "result":
            fut.set_result(obj)
        elif through == "exception":
            exc = RuntimeError("x")
            exc.obj = obj
            fut.set_exception(exc)
            fut.exception()  # retrieved: no "never retrieved" log
        elif through == "done_callback":
            fut.add_done_callback(lambda f, o=obj: None)
        elif through == "callback_context":
            ctx = contextvars.copy_context()
            ctx.run(contextvars.ContextVar("v").set, obj)
            fut.add_done_callback(lambda f: None, context=ctx)
        elif through == "cancel_message":
            fut.cancel(msg=obj)
        holder["ref"] = weakref.ref(obj)

    make()
    gc.collect()
    assert holder["ref"]() is None


@pytest.mark.parametrize("kind", ["future_subclass", "task_dict", "task_subclass"])
def test_cycle_through_subclass_and_task_attributes_is_collected(loop, kind):
    """``obj -> future -> attribute -> obj`` for an instance of a Python subclass of the
    loop's Future and Task (the collector reaches the base's fields and the instance
    dict through the subclass) and through a finished task's own attributes."""
    holder = {}
    future_type = type(loop.create_future())

    async def done():
        return None

    task_type = type(loop.create_task(done()))
    loop.run_until_complete(asyncio.sleep(0))

    def make():
        obj = _Holder()
        if kind == "future_subclass":

            class Sub(future_type):  # type: ignore[misc, valid-type]
                pass

            fut = Sub(loop=loop)
            fut.set_result(obj)  # the base's field
            fut.backref = obj  # the instance dict
        else:
            coro = done()
            if kind == "task_subclass":

                class SubTask(task_type):  # type: ignore[misc, valid-type]
                    pass

                fut = SubTask(coro, loop=loop)
            else:
                fut = loop.create_task(coro)
            loop.run_until_complete(fut)
            fut.backref = obj
        obj.fut = fut
        holder["ref"] = weakref.ref(obj)

    make()
    gc.collect()
    assert holder["ref"]() is None


@pytest.mark.parametrize("through", ["coroutine", "context", "name", "awaited_future"])
def test_cycle_through_a_task_is_collected(loop, loop_errors, through):
    """A pending task in a cycle through its coroutine's frame, its context, its name or
    the future it awaits is collected once the loop is closed (nothing else holds it),
    with asyncio's 'Task was destroyed but it is pending!'."""
    holder = {}
    var = contextvars.ContextVar("var")

    async def waits(obj, fut):
        await fut

    async def main():
        obj = _Holder()
        fut = loop.create_future()
        obj.fut = fut
        ctx = contextvars.copy_context()
        if through == "context":
            ctx.run(var.set, obj)
        task = loop.create_task(waits(obj if through == "coroutine" else None, fut), context=ctx)
        obj.task = task
        if through == "name":
            task.set_name(_Named(obj))
        if through == "awaited_future":
            fut.backref = obj
        await asyncio.sleep(0)
        holder["ref"] = weakref.ref(obj)

    loop.run_until_complete(main())
    loop.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.collect()
    assert holder["ref"]() is None
    assert [c["message"] for c in loop_errors] == ["Task was destroyed but it is pending!"]
    loop_errors.clear()


class _Named(str):
    """A task name (``set_name`` keeps a ``str``) that holds an object."""

    def __new__(cls, obj):
        self = super().__new__(cls, "named")
        self.obj = obj
        return self
