"""Cancellation: ``Task.cancel(msg)``, ``TaskGroup`` failure handling and timeouts.

Entry point: ``ferroloop.run(main())``.  Run: ``python examples/cancellation.py``.
"""

from __future__ import annotations

import asyncio

import ferroloop


async def worker(name: str, log: list[str]) -> None:
    """Sleep 'forever'; note the cancellation, then let it propagate."""
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError as exc:
        log.append(f"{name} cancelled {exc.args}")
        raise


async def fails_soon() -> None:
    """Raise ValueError after 10 ms."""
    await asyncio.sleep(0.01)
    raise ValueError("child failed")


async def main() -> None:
    """Cancel a task with a message, watch a TaskGroup unwind, hit two timeouts."""
    print("loop:", type(asyncio.get_running_loop()).__name__)

    log: list[str] = []
    task = asyncio.create_task(worker("worker", log))
    await asyncio.sleep(0.01)
    task.cancel("shutting down")
    try:
        await task
    except asyncio.CancelledError as exc:
        print("task.cancel(msg): await raised CancelledError", exc.args)
    print("  inside the task:", log[0], "| task.cancelled() =", task.cancelled())

    log.clear()
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(worker("sibling-1", log))
            group.create_task(worker("sibling-2", log))
            group.create_task(fails_soon())
    except* ValueError as eg:
        print("TaskGroup raised", type(eg).__name__, [str(e) for e in eg.exceptions])
    print("  the siblings were cancelled:", sorted(log))

    try:
        async with asyncio.timeout(0.02):
            await asyncio.sleep(10)
    except TimeoutError:
        print("asyncio.timeout(0.02): TimeoutError")
    try:
        await asyncio.wait_for(asyncio.sleep(10), timeout=0.02)
    except TimeoutError:
        print("asyncio.wait_for(..., timeout=0.02): TimeoutError")

    shielded = asyncio.create_task(asyncio.sleep(0.03, result="survived"))
    try:
        await asyncio.wait_for(asyncio.shield(shielded), timeout=0.01)
    except TimeoutError:
        print("shield: wait_for timed out, the inner task goes on ->", await shielded)


if __name__ == "__main__":
    ferroloop.run(main())
