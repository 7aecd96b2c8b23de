"""Differential scheduling test: random programs must produce asyncio's exact event trace.

Each seed builds a program of callbacks, past-due timers, futures, done callbacks, tasks
(sleep(0), awaiting futures and other tasks), handle cancellations and task cancellations.
No real time is involved, so the trace on stdlib asyncio is deterministic; the loop under
test must reproduce it event for event.
"""

from __future__ import annotations

import asyncio
import random

import pytest

MAX_ACTIONS = 400


def run_program(loop, seed: int) -> list:
    rng = random.Random(seed)
    trace: list = []
    budget = [MAX_ACTIONS]
    futures: list = []
    tasks: list = []
    handles: list = []
    past = [loop.time() - 1000.0]

    def spend() -> bool:
        budget[0] -= 1
        return budget[0] > 0

    def new_future(tag):
        fut = loop.create_future()
        futures.append(fut)
        fut.add_done_callback(lambda f: trace.append(("done-cb", tag, _state(f))))
        # every future is resolved eventually, so no task can hang
        if rng.random() < 0.2:
            loop.call_soon(fut.cancel, f"c-{tag}")
        else:
            loop.call_soon(fut.set_result, tag)
        return fut

    async def coro(tag, depth):
        trace.append(("task-start", tag))
        try:
            for step in range(rng.randrange(4)):
                choice = rng.random()
                if choice < 0.4:
                    await asyncio.sleep(0)
                    trace.append(("slept", tag, step))
                elif choice < 0.7 and futures:
                    fut = rng.choice(futures)
                    try:
                        res = await fut
                        trace.append(("awaited-fut", tag, res))
                    except asyncio.CancelledError as e:
                        if asyncio.current_task().cancelling():
                            raise
                        trace.append(("fut-cancelled", tag, e.args))
                elif choice < 0.85 and depth < 3 and spend():
                    child = spawn(f"{tag}/{step}", depth + 1)
                    try:
                        res = await child
                        trace.append(("awaited-task", tag, res))
                    except asyncio.CancelledError:
                        if asyncio.current_task().cancelling():
                            raise
                        trace.append(("child-cancelled", tag))
                else:
                    action(f"{tag}:{step}")
            return tag
        except asyncio.CancelledError as e:
            trace.append(("task-cancelled", tag, e.args))
            raise

    def spawn(tag, depth=0):
        task = loop.create_task(coro(tag, depth), name=tag)
        tasks.append(task)
        task.add_done_callback(lambda t: trace.append(("task-done", tag, _state(t))))
        return task

    def callback(tag):
        trace.append(("cb", tag))
        n = rng.randrange(3)
        for i in range(n):
            action(f"{tag}.{i}")

    def action(tag):
        if not spend():
            return
        r = rng.random()
        if r < 0.30:
            handles.append(loop.call_soon(callback, tag))
        elif r < 0.42:
            past[0] += rng.randrange(1, 5) * 0.001
            handles.append(loop.call_at(past[0], callback, f"{tag}@t"))
        elif r < 0.55:
            new_future(tag)
        elif r < 0.72:
            spawn(tag)
        elif r < 0.82 and handles:
            h = rng.choice(handles)
            h.cancel()
            trace.append(("handle-cancel", tag))
        elif r < 0.90 and tasks:
            t = rng.choice(tasks)
            trace.append(("task-cancel", tag, t.get_name(), t.cancel(f"m-{tag}")))
        else:
            loop.call_soon(callback, f"{tag}!")

    async def main():
        for i in range(5):
            action(f"root{i}")
        # drain: keep yielding until no task is pending and no action is left
        for _ in range(10_000):
            await asyncio.sleep(0)
            pending = [t for t in tasks if not t.done()]
            if not pending and budget[0] <= 0:
                break
            if not pending and rng.random() < 0.5:
                action("drain")
            elif not pending:
                budget[0] -= 1
        await asyncio.gather(*tasks, return_exceptions=True)
        return len(trace)

    loop.run_until_complete(main())
    for fut in futures:
        if fut.done() and not fut.cancelled():
            fut.exception()
    return trace


def _state(fut):
    if fut.cancelled():
        return "cancelled"
    exc = fut.exception()
    if exc is not None:
        return f"exc:{type(exc).__name__}"
    return f"ok:{fut.result()!r}"


@pytest.mark.parametrize("seed", range(40))
def test_trace_matches_asyncio(loop, seed):
    reference_loop = asyncio.SelectorEventLoop()
    try:
        expected = run_program(reference_loop, seed)
    finally:
        reference_loop.close()
    actual = run_program(loop, seed)
    assert len(expected) > 10
    if actual != expected:
        first = next(
            (i for i, (a, b) in enumerate(zip(actual, expected)) if a != b),
            min(len(actual), len(expected)),
        )
        lo = max(0, first - 5)
        pytest.fail(
            f"trace diverges from asyncio at event {first} "
            f"(len {len(actual)} vs {len(expected)}):\n"
            f"  asyncio: {expected[lo : first + 5]}\n"
            f"  actual : {actual[lo : first + 5]}",
            pytrace=False,
        )
