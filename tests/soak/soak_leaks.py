"""Soak: the leak checks of ``tests/test_leaks.py`` at the issue's sizes (``make soak``).

Not collected by ``pytest tests`` (the file name does not start with ``test_``); run it
by path.  Sizes come from the environment:

    FERROLOOP_SOAK_CALLBACKS     1_000_000  callbacks (call_soon / call_later / call_at /
                                            call_soon_threadsafe, half the timers cancelled)
    FERROLOOP_SOAK_TASKS           100_000  tasks (results, exceptions, cancellations)
    FERROLOOP_SOAK_TCP              10_000  TCP connections through transports, and as many
                                            through sock_connect / sock_accept / sock_*
    FERROLOOP_SOAK_SUBPROCESSES      1_000  subprocesses
    FERROLOOP_SOAK_EXECUTOR        100_000  run_in_executor(None, ...) calls
    FERROLOOP_SOAK_LOOPS            10_000  loops created and closed

Each workload runs once at a tenth of its size to warm up, then at full size between
two snapshots; the process must end with the same fds and threads, RSS within
4 MiB + a few bytes per operation, no gc.garbage and every finished task / future /
transport freed.  Figures are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import os
import time

import pytest
from test_leaks import (
    WORKLOADS,
    Report,
    Snapshot,
    assert_no_leak,
    loops_churn,
    measure,
    rss_budget,
    wait_threads_settled,
)

SIZES = {
    "callbacks": int(os.environ.get("FERROLOOP_SOAK_CALLBACKS", "1000000")),
    "tasks": int(os.environ.get("FERROLOOP_SOAK_TASKS", "100000")),
    "tcp": int(os.environ.get("FERROLOOP_SOAK_TCP", "10000")),
    "sock": int(os.environ.get("FERROLOOP_SOAK_TCP", "10000")),
    "subprocesses": int(os.environ.get("FERROLOOP_SOAK_SUBPROCESSES", "1000")),
    "executor": int(os.environ.get("FERROLOOP_SOAK_EXECUTOR", "100000")),
}
LOOPS = int(os.environ.get("FERROLOOP_SOAK_LOOPS", "10000"))

pytestmark = pytest.mark.timeout(int(os.environ.get("FERROLOOP_SOAK_TIMEOUT", "1800")))


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_soak_no_leak(impl, name):
    workload, per_item = WORKLOADS[name]
    n = SIZES[name]
    report = measure(impl, workload, n, warmup=max(1, n // 10))
    print(f"\n[soak] {impl.name} {name} n={n}\n{report}")
    assert_no_leak(report, rss_budget=rss_budget(n, per_item))


def test_soak_loops(impl):
    loops_churn(impl, max(1, LOOPS // 10))
    before = Snapshot.take()
    start = time.monotonic()
    loops_churn(impl, LOOPS)
    elapsed = time.monotonic() - start
    wait_threads_settled(before)
    report = Report(before, Snapshot.take(), elapsed, 0, 0)
    print(f"\n[soak] {impl.name} loops n={LOOPS}\n{report}")
    assert_no_leak(report, rss_budget=rss_budget(LOOPS, 256))
