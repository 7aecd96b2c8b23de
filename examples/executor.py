"""Blocking work off the loop: ``run_in_executor`` and ``asyncio.to_thread``.

Entry point: ``asyncio.set_event_loop_policy(ferroloop.EventLoopPolicy())`` followed by a
plain ``asyncio.run(main())`` -- the policy route, for code that must call asyncio.run.
Run: ``python examples/executor.py``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import ferroloop


def blocking(label: str, seconds: float) -> str:
    """Block the calling thread for ``seconds`` (as real blocking I/O would)."""
    time.sleep(seconds)
    return f"{label} done in thread {threading.current_thread().name}"


async def ticker(stop: asyncio.Event) -> int:
    """Count 10 ms ticks until ``stop`` is set: proof that the loop stays responsive."""
    ticks = 0
    while not stop.is_set():
        await asyncio.sleep(0.01)
        ticks += 1
    return ticks


async def main() -> None:
    """Run four 0.1 s blocking calls concurrently while the loop keeps ticking."""
    loop = asyncio.get_running_loop()
    print("loop:", type(loop).__name__)

    stop = asyncio.Event()
    tick_task = asyncio.create_task(ticker(stop))
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="pool") as pool:
        results = await asyncio.gather(
            *(loop.run_in_executor(pool, blocking, f"job{i}", 0.1) for i in range(4))
        )
    elapsed = time.perf_counter() - start
    stop.set()
    for line in results:
        print(" ", line)
    print(
        f"4 x 0.1 s of blocking calls took {elapsed:.2f} s; "
        f"the loop ticked {await tick_task} times meanwhile"
    )

    print(" ", await loop.run_in_executor(None, blocking, "default executor", 0.01))
    print(" ", await asyncio.to_thread(blocking, "asyncio.to_thread", 0.01))


if __name__ == "__main__":
    asyncio.set_event_loop_policy(ferroloop.EventLoopPolicy())
    asyncio.run(main())
