"""Futures and done callbacks: results, exceptions, cancellation, callback order.

Entry point: ``asyncio.Runner(loop_factory=ferroloop.new_event_loop)``, the 3.11+ way to
run several coroutines on one ferroloop loop.  Run: ``python examples/futures.py``.
"""

from __future__ import annotations

import asyncio

import ferroloop


def describe(fut: asyncio.Future[int]) -> str:
    """Return a one-word summary of a finished future."""
    if fut.cancelled():
        return "cancelled"
    if fut.exception() is not None:
        return f"exception {fut.exception()!r}"
    return f"result {fut.result()!r}"


async def results_and_callbacks() -> None:
    """Set a result from a timer; its two callbacks run in the order they were added."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    fut.add_done_callback(lambda f: print("  callback 1:", describe(f)))
    fut.add_done_callback(lambda f: print("  callback 2:", describe(f)))
    fut.add_done_callback(print)
    print("  remove_done_callback(print) removed", fut.remove_done_callback(print), "callback")
    loop.call_later(0.01, fut.set_result, 42)
    print("  awaiting the future ...")
    print("  await ->", await fut)


async def callbacks_are_scheduled() -> None:
    """Done callbacks are scheduled with call_soon, not called inside set_result."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[str] = loop.create_future()
    fut.add_done_callback(lambda f: print("  callback runs on the next loop iteration"))
    fut.set_result("x")
    print("  set_result returned; callback not run yet")
    await asyncio.sleep(0)


async def exceptions_and_cancel() -> None:
    """Await a failed future, then a cancelled one: each raises from the await."""
    loop = asyncio.get_running_loop()
    failing: asyncio.Future[int] = loop.create_future()
    failing.add_done_callback(lambda f: print("  callback:", describe(f)))
    loop.call_soon(failing.set_exception, ValueError("boom"))
    try:
        await failing
    except ValueError as exc:
        print("  await raised", repr(exc))

    doomed: asyncio.Future[int] = loop.create_future()
    doomed.add_done_callback(lambda f: print("  callback:", describe(f)))
    loop.call_soon(doomed.cancel, "no longer needed")
    try:
        await doomed
    except asyncio.CancelledError as exc:
        print("  await raised CancelledError", exc.args)


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
        print("loop:", type(runner.get_loop()).__name__)
        for step in (results_and_callbacks, callbacks_are_scheduled, exceptions_and_cancel):
            print(step.__doc__.splitlines()[0])
            runner.run(step())
