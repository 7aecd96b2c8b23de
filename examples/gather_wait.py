"""Waiting on many awaitables: ``gather``, ``wait(FIRST_COMPLETED)`` and ``as_completed``.

Entry point: ``ferroloop.run(main())``, the ferroloop counterpart of ``asyncio.run``.
Run: ``python examples/gather_wait.py``.
"""

from __future__ import annotations

import asyncio

import ferroloop


async def job(name: str, delay: float) -> str:
    """Sleep ``delay`` seconds and return ``name``."""
    await asyncio.sleep(delay)
    return name


async def fail(delay: float) -> str:
    """Sleep ``delay`` seconds, then raise ValueError."""
    await asyncio.sleep(delay)
    raise ValueError("job failed")


async def main() -> None:
    """Show what each waiting primitive returns, and in which order."""
    print("loop:", type(asyncio.get_running_loop()).__name__)

    # gather: results in argument order, whatever order the jobs finish in.
    results = await asyncio.gather(job("slow", 0.06), job("fast", 0.02), job("mid", 0.04))
    print("gather (argument order):", results)
    results = await asyncio.gather(job("ok", 0.01), fail(0.02), return_exceptions=True)
    print("gather(return_exceptions=True):", [repr(r) for r in results])

    # wait(FIRST_COMPLETED): returns as soon as one task is done; the rest keep running.
    tasks = {asyncio.create_task(job(n, d), name=n) for n, d in [("a", 0.05), ("b", 0.01)]}
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    print(
        "wait FIRST_COMPLETED: done",
        [t.result() for t in done],
        "pending",
        sorted(t.get_name() for t in pending),
    )
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)

    # as_completed: results in completion order.
    order = []
    for next_done in asyncio.as_completed(
        [job("third", 0.05), job("first", 0.01), job("second", 0.03)]
    ):
        order.append(await next_done)
    print("as_completed (completion order):", order)


if __name__ == "__main__":
    ferroloop.run(main())
