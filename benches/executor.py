"""Executor and subprocess benchmarks: ``run_in_executor`` and ``create_subprocess_exec``.

Run ``python benches/executor.py`` to compare ferroloop with the stdlib asyncio loop,
uvloop and rloop; the options are those of every family (``--help``, ``--loops``,
``--workloads``, ``--quick``, ``--json PATH``, ...; see ``_common.py``).

``call_soon_threadsafe`` from other threads is measured by ``micro.py``
(``threadsafe_1_thread``, ``threadsafe_4_threads``) and not repeated here.

The executor workloads use whatever the loop runs ``run_in_executor(None, ...)`` on (a
``concurrent.futures.ThreadPoolExecutor`` on asyncio, uvloop and rloop; ferroloop's own
thread pool); one untimed batch starts its threads first, so thread start-up is not timed.
Run to run, ``executor_serial`` is bimodal on every loop (a factor of ~2, depending on
whether the pool thread and the loop share a CPU); the best of 5 is usually the fast mode.

The subprocess workloads run ``/bin/echo hello`` with ``stdout=PIPE`` and
``communicate()``, check the output and the exit status, and time the whole life of each
child: fork/exec, the pipe, the exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time

from _common import Measured, Workload, main  # the script's own folder is first on sys.path

#: Concurrent ``run_in_executor`` calls per ``gather`` in ``executor_gather``.
EXECUTOR_BATCH = 1000
#: Children alive at once in ``subprocess_concurrent``.
SUBPROCESS_BATCH = 8
ECHO = ("/bin/echo", "hello")


def _identity(x: int) -> int:
    return x


def _prime_executor(loop: asyncio.AbstractEventLoop) -> None:
    """Start the default executor's threads (untimed): enough work to reach max_workers."""

    async def prime() -> None:
        await asyncio.gather(*(loop.run_in_executor(None, time.sleep, 0.001) for _ in range(64)))

    loop.run_until_complete(prime())


def executor_gather(loop: asyncio.AbstractEventLoop, n: int) -> Measured:
    """``run_in_executor(None, fn)`` with a trivial fn, ``EXECUTOR_BATCH`` per ``gather``."""
    _prime_executor(loop)

    async def main_coro() -> None:
        left = n
        while left > 0:
            size = min(EXECUTOR_BATCH, left)
            results = await asyncio.gather(
                *(loop.run_in_executor(None, _identity, i) for i in range(size))
            )
            if results != list(range(size)):
                raise AssertionError("run_in_executor results out of order or wrong")
            left -= size

    start = time.perf_counter()
    loop.run_until_complete(main_coro())
    return Measured(n, time.perf_counter() - start)


def executor_serial(loop: asyncio.AbstractEventLoop, n: int) -> Measured:
    """``await run_in_executor(None, fn)`` one at a time: a pool thread's round trip."""
    _prime_executor(loop)

    async def main_coro() -> None:
        for i in range(n):
            if await loop.run_in_executor(None, _identity, i) != i:
                raise AssertionError("run_in_executor returned a wrong result")

    start = time.perf_counter()
    loop.run_until_complete(main_coro())
    return Measured(n, time.perf_counter() - start)


def _busy_latency(loop: asyncio.AbstractEventLoop, n: int, executor: object) -> Measured:
    """``n`` sequential pool round trips while a callback chain keeps the loop busy."""
    _prime_executor(loop)
    busy = True

    def spin() -> None:  # never runs out of ready work while the round trips run
        if busy:
            loop.call_soon(spin)

    async def main_coro() -> float:
        nonlocal busy
        loop.call_soon(spin)
        start = time.perf_counter()
        for i in range(n):
            if executor == "to_thread":
                result = await asyncio.to_thread(_identity, i)
            else:
                result = await loop.run_in_executor(executor, _identity, i)
            if result != i:
                raise AssertionError("the executor returned a wrong result")
        elapsed = time.perf_counter() - start
        busy = False
        return elapsed

    return Measured(n, loop.run_until_complete(main_coro()))


def to_thread_busy(loop: asyncio.AbstractEventLoop, n: int) -> Measured:
    """``await asyncio.to_thread(fn)`` one at a time while the loop always has ready work.

    The figure is round trips per second, i.e. 1 / latency: a loop that keeps the GIL
    while it is busy makes every round trip wait for the interpreter's switch interval.
    """
    return _busy_latency(loop, n, "to_thread")


def thread_executor_busy(loop: asyncio.AbstractEventLoop, n: int) -> Measured:
    """The same with an explicit ``concurrent.futures.ThreadPoolExecutor`` (Python threads)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        return _busy_latency(loop, n, pool)


async def _echo_child() -> None:
    proc = await asyncio.create_subprocess_exec(*ECHO, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if out != b"hello\n" or proc.returncode != 0:
        raise AssertionError(f"child gave {out!r}, exit status {proc.returncode}")


def subprocess_serial(loop: asyncio.AbstractEventLoop, n: int) -> int:
    """``create_subprocess_exec('/bin/echo')`` + ``communicate()``, one child at a time."""

    async def main_coro() -> None:
        for _ in range(n):
            await _echo_child()

    loop.run_until_complete(main_coro())
    return n


def subprocess_concurrent(loop: asyncio.AbstractEventLoop, n: int) -> int:
    """The same, ``SUBPROCESS_BATCH`` children at a time (``gather``)."""

    async def main_coro() -> None:
        left = n
        while left > 0:
            size = min(SUBPROCESS_BATCH, left)
            await asyncio.gather(*(_echo_child() for _ in range(size)))
            left -= size

    loop.run_until_complete(main_coro())
    return n


WORKLOADS = [
    Workload("executor_gather", executor_gather, 15_000, 1_000, executor_gather.__doc__),
    Workload("executor_serial", executor_serial, 4_000, 200, executor_serial.__doc__),
    Workload("to_thread_busy", to_thread_busy, 1_000, 100, to_thread_busy.__doc__),
    Workload(
        "thread_executor_busy", thread_executor_busy, 1_000, 100, thread_executor_busy.__doc__
    ),
    Workload("subprocess_serial", subprocess_serial, 300, 30, subprocess_serial.__doc__),
    Workload(
        "subprocess_concurrent", subprocess_concurrent, 400, 40, subprocess_concurrent.__doc__
    ),
]


if __name__ == "__main__":
    raise SystemExit(main("executor", WORKLOADS, os.path.abspath(__file__)))
