"""Round trips between the loop and Rust futures (tokio, through pyo3-async-runtimes).

Rust-backed async libraries (psqlpy, ...) hand every result to the loop the same way: a
future made by ``loop.create_future()``, completed from a tokio thread with
``loop.call_soon_threadsafe(..., context=...)``. These workloads time that path with
``ferroloop_rust_bridge``, the test extension of ``tests/rust_bridge`` (``make bridge``
builds and installs it; without it this script says so and exits).

Run ``python benches/rust_bridge.py``; the options are those of every family
(``--loops``, ``--workloads``, ``--quick``, ``--json PATH``, ...; see ``_common.py``).
"""

from __future__ import annotations

import asyncio
import sys

from _common import Workload, main  # the script's own folder is first on sys.path

try:
    import ferroloop_rust_bridge as bridge
except ImportError as exc:
    bridge = None
    MISSING = f"{exc}: build and install it with `make bridge` (tests/rust_bridge)"

BATCH = 1000


def ready_serial(loop: asyncio.AbstractEventLoop, n: int) -> int:
    """One task awaiting ``n`` Rust futures in turn, each ready at once."""

    async def main_coro() -> int:
        total = 0
        for i in range(n):
            total += await bridge.ready(i)
        return total

    assert loop.run_until_complete(main_coro()) == n * (n - 1) // 2
    return n


def thread_serial(loop: asyncio.AbstractEventLoop, n: int) -> int:
    """One task awaiting ``n`` Rust futures in turn, each completed by another thread."""

    async def main_coro() -> int:
        total = 0
        for i in range(n):
            total += await bridge.from_thread(i)
        return total

    assert loop.run_until_complete(main_coro()) == n * (n - 1) // 2
    return n


def ready_gather(loop: asyncio.AbstractEventLoop, n: int) -> int:
    """``gather`` of Rust futures ready at once, 1000 per batch."""

    async def main_coro() -> int:
        total = 0
        for start in range(0, n, BATCH):
            got = await asyncio.gather(
                *(bridge.ready(i) for i in range(start, min(n, start + BATCH)))
            )
            total += sum(got)
        return total

    assert loop.run_until_complete(main_coro()) == n * (n - 1) // 2
    return n


def call_async_gather(loop: asyncio.AbstractEventLoop, n: int) -> int:
    """``gather`` of Rust futures that each await a Python coroutine, 1000 per batch."""

    async def echo(value: int) -> int:
        return value

    async def main_coro() -> int:
        total = 0
        for start in range(0, n, BATCH):
            calls = (bridge.call_async(echo, i) for i in range(start, min(n, start + BATCH)))
            total += sum(await asyncio.gather(*calls))
        return total

    assert loop.run_until_complete(main_coro()) == n * (n - 1) // 2
    return n


WORKLOADS = [
    Workload("bridge_ready_serial", ready_serial, 5_000, 300, "await a ready tokio future"),
    Workload(
        "bridge_thread_serial", thread_serial, 5_000, 300, "await a future another thread completes"
    ),
    Workload("bridge_ready_gather", ready_gather, 5_000, 1_000, "gather of ready tokio futures"),
    Workload(
        "bridge_call_async_gather",
        call_async_gather,
        3_000,
        1_000,
        "gather of Rust -> Python coroutine -> Rust round trips",
    ),
]

if __name__ == "__main__":
    if bridge is None:
        print(f"rust_bridge benchmarks skipped: ferroloop_rust_bridge is not installed ({MISSING})")
        sys.exit(0)
    sys.exit(main("rust_bridge", WORKLOADS, __file__))
