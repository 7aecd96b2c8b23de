"""Property-based differential test: hypothesis writes random asyncio programs, and the loop
under test must produce stdlib asyncio's exact observable trace for each.

A program is a tree of *actions* (what a callback does: schedule callbacks with
``call_soon`` / ``call_soon_threadsafe`` / ``call_later`` / ``call_at`` (past-due or in the
future), create futures and resolve them from callbacks, timers or other threads, cancel
handles / tasks / futures, raise) and of task *steps* (``sleep``, await futures and other
tasks, spawn children, ``shield``, ``TaskGroup``, ``asyncio.timeout``, ``wait_for``,
``gather``, self-cancellation, catching ``CancelledError`` and ``uncancel()``, raising).

Determinism, so that the trace on stdlib asyncio is a reference:

* timers in the future get distinct *slots* ``SLOT`` seconds apart (``base + k * SLOT``);
  everything a slot triggers settles in far less than ``SLOT``, so their order is fixed;
* past-due timers get distinct deadlines (asyncio orders equal deadlines arbitrarily);
* other threads resolve futures / schedule callbacks via ``call_soon_threadsafe`` and are
  joined before the callback that started them returns;
* await edges form no cycle, every future is resolved by a handle that is never cancelled,
  so every task finishes and the program ends.

The test for the ``asyncio`` param compares asyncio with itself (a determinism check of the
generator); the ``ferroloop`` param compares ferroloop with asyncio.

``FERROLOOP_HYPOTHESIS_EXAMPLES`` (default 60) sets the number of programs; the examples
are derandomized, so CI runs the same programs every time.  ``FERROLOOP_PROPERTY_SLOT``
(default 0.005 s, doubled on a retry) spaces the timer slots.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import os
import threading

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MAX_EXAMPLES = int(os.environ.get("FERROLOOP_HYPOTHESIS_EXAMPLES", "60"))
SLOT = float(os.environ.get("FERROLOOP_PROPERTY_SLOT", "0.005"))
RUN_TIMEOUT = 30.0

cv: contextvars.ContextVar[str] = contextvars.ContextVar("cv", default="-")


class Boom(Exception):
    """A user-defined exception type."""


EXC_KINDS = ("ValueError", "KeyError", "Boom", "ZeroDivisionError", "RuntimeError")


def make_exc(kind: str, msg: str) -> BaseException:
    if kind == "ZeroDivisionError":
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError as e:
            return e
    return {
        "ValueError": ValueError,
        "KeyError": KeyError,
        "Boom": Boom,
        "RuntimeError": RuntimeError,
    }[kind](msg)


def describe(exc: BaseException | None):
    """Type name and args (recursively for exception groups) of an exception."""
    if exc is None:
        return None
    if isinstance(exc, BaseExceptionGroup):
        return (type(exc).__name__, exc.message, tuple(describe(e) for e in exc.exceptions))
    return (type(exc).__name__, exc.args)


def state(fut):
    """The observable outcome of a future or task."""
    if not fut.done():
        return ("pending",)
    if fut.cancelled():
        try:
            fut.result()
        except asyncio.CancelledError as e:
            return ("cancelled", e.args)
        return ("cancelled-but-result",)
    exc = fut.exception()
    if exc is not None:
        return ("exc", describe(exc))
    return ("ok", fut.result())


# --------------------------------------------------------------------------- programs

RESOLUTIONS = (
    "soon_result",
    "soon_exc",
    "soon_cancel",
    "past_result",
    "later_result",
    "thread_result",
    "thread_exc",
    "cf_result",
    "cf_exc",
    "cf_cancel",
)

small = st.integers(0, 9)
idx = st.integers(0, 7)
msg = st.sampled_from(["", "m1", "m2", "why"])
slot_d = st.integers(1, 3)
past_off = st.integers(0, 50)
exc_kind = st.sampled_from(EXC_KINDS)


def weighted(*options):
    """``one_of`` where each (weight, strategy) pair is drawn with its relative weight."""
    return st.one_of(*[strategy for weight, strategy in options for _ in range(weight)])


@functools.cache
def action(depth: int):
    leaves = [
        (3, st.tuples(st.just("future"), st.sampled_from(RESOLUTIONS), small)),
        (1, st.tuples(st.just("cancel_handle"), idx)),
        (2, st.tuples(st.just("cancel_task"), idx, msg)),
        (1, st.tuples(st.just("cancel_fut"), idx, msg)),
        (1, st.tuples(st.just("raise_cb"), exc_kind, msg)),
        (1, st.tuples(st.just("note"), small)),
    ]
    if depth <= 0:
        return weighted(*leaves)
    sub = st.lists(action(depth - 1), max_size=3).map(tuple)
    return weighted(
        *leaves,
        (3, st.tuples(st.just("soon"), sub)),
        (1, st.tuples(st.sampled_from(["threadsafe", "thread_cb", "soon_ctx"]), sub)),
        (3, st.tuples(st.sampled_from(["later", "at"]), slot_d, sub)),
        (2, st.tuples(st.sampled_from(["past", "past_later"]), past_off, sub)),
        (5, st.tuples(st.just("task"), body(depth - 1))),
    )


@functools.cache
def step(depth: int):
    leaves = [
        (2, st.tuples(st.just("sleep0"))),
        (1, st.tuples(st.just("sleep_result"), small)),
        (2, st.tuples(st.just("sleep"), slot_d)),
        (2, st.tuples(st.just("await_fut"), idx)),
        (2, st.tuples(st.just("await_task"), idx)),
        (1, st.tuples(st.just("raise"), exc_kind, msg)),
        (1, st.tuples(st.just("cancel_self"), msg)),
        (2, st.tuples(st.just("cancel_task"), idx, msg)),
        (1, st.tuples(st.just("act"), action(0))),
    ]
    if depth <= 0:
        return weighted(*leaves)
    sub = steps(depth - 1)
    child = body(depth - 1)
    children = st.lists(child, min_size=1, max_size=3).map(tuple)
    return weighted(
        *leaves,
        (3, st.tuples(st.sampled_from(["spawn_await", "spawn", "shield"]), child)),
        (3, st.tuples(st.sampled_from(["guard", "catch"]), sub)),
        (2, st.tuples(st.just("tg"), children, sub)),
        (2, st.tuples(st.sampled_from(["timeout", "timeout_at", "timeout_resched"]), slot_d, sub)),
        (1, st.tuples(st.just("wait_for"), slot_d, child)),
        (1, st.tuples(st.just("gather"), children, st.booleans())),
        (1, st.tuples(st.just("gather_cancel"), children, msg)),
        (1, st.tuples(st.just("wait_first"), children)),
        (1, st.tuples(st.just("as_completed"), children)),
        (1, st.tuples(st.just("act"), action(depth - 1))),
    )


@functools.cache
def steps(depth: int):
    return st.lists(step(depth), max_size=4).map(tuple)


@functools.cache
def body(depth: int):
    """A coroutine: its steps and its return value."""
    return st.tuples(steps(depth), small)


programs = st.lists(action(3), min_size=2, max_size=6).map(tuple)


# --------------------------------------------------------------------------- interpreter


class _OrderedSet(dict):
    """The part of ``set`` TaskGroup uses, iterated in insertion order."""

    def add(self, item) -> None:
        self[item] = None

    def discard(self, item) -> None:
        self.pop(item, None)


class OrderedTaskGroup(asyncio.TaskGroup):
    """asyncio's TaskGroup, except that it cancels its children in creation order:
    the stdlib keeps them in a ``set`` (ordered by address), so on an abort the order
    of their wake-ups differs from run to run even on asyncio."""

    def __init__(self) -> None:
        super().__init__()
        self._tasks = _OrderedSet()


class _Entry:
    __slots__ = ("cancelled", "handle", "ran", "tag")

    def __init__(self, tag):
        self.handle = None
        self.ran = False
        self.cancelled = False
        self.tag = tag


class Interp:
    """Runs one program on one loop and records its trace."""

    def __init__(self, loop, slot: float):
        self.loop = loop
        self.slot = slot
        self.violations: list[str] = []  # broken timing assumptions (the run is redone)
        self.marks: dict[int, int] = {}
        self.sentinels = 0  # slots 0 .. sentinels-1 have their sentinel timers
        self.trace: list = []
        self.tasks: list = []  # every task created by the program (not main)
        self.roots: list = []  # (root index, task) of tasks created by a "task" action
        self.futures: list = []
        self.handles: list[_Entry] = []
        self.outstanding = 0  # scheduled callbacks that have neither run nor been cancelled
        self.idle = None
        self.used_slots: set[int] = set()
        self.past_seq = 0
        self.base = 0.0
        loop.set_exception_handler(self._handler)

    # -- bookkeeping

    def _handler(self, loop, context):
        self.trace.append(("handler", context.get("message"), describe(context.get("exception"))))

    def slot_when(self, d: int) -> float:
        """A fresh deadline ``d`` slots after the current one (distinct from all others)."""
        now = self.loop.time()
        current = max((s for s in self.used_slots if self.base + s * self.slot <= now), default=0)
        s = current + d
        while s in self.used_slots:
            s += 1
        self.used_slots.add(s)
        self.add_sentinels(s)
        return self.base + s * self.slot

    # Timing watchdog.  The trace is deterministic only if whatever a slot sets off
    # settles well before the next slot.  For every slot j, a timer at mid-slot notes
    # the trace length (and must not be late), and a timer just before slot j+1 checks
    # that nothing happened since; otherwise (a loaded machine) the run is redone with
    # wider slots.  These timers trace nothing, so they do not change the trace.

    def add_sentinels(self, upto: int) -> None:
        while self.sentinels <= upto:
            j = self.sentinels
            self.sentinels += 1
            t = self.base + j * self.slot
            self.loop.call_at(t + 0.5 * self.slot, self._mid, j, t + 0.5 * self.slot)
            self.loop.call_at(t + 0.9 * self.slot, self._pre, j)

    def _mid(self, j: int, when: float) -> None:
        self.marks[j] = len(self.trace)
        late = self.loop.time() - when
        if late > 0.3 * self.slot:
            self.violations.append(f"slot {j}: loop {late * 1e3:.1f} ms late")

    def _pre(self, j: int) -> None:
        if len(self.trace) != self.marks.get(j):
            self.violations.append(f"slot {j}: still busy at 90% of the slot")

    def past_when(self, off: int) -> float:
        # distinct and far apart: call_later() adds the jitter between two clock reads
        self.past_seq += 1
        return self.base - 100_000.0 + off * 100.0 + self.past_seq * 0.01

    def _settled(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0 and self.idle is not None and not self.idle.done():
            self.idle.set_result(None)

    def counted(self, tag, fn):
        """A callback that runs ``fn`` and counts as outstanding until it ran."""
        entry = _Entry(tag)
        self.outstanding += 1

        def cb():
            entry.ran = True
            try:
                fn()
            finally:
                self._settled()

        return entry, cb

    # -- actions (what a callback does)

    def do_all(self, acts, tag):
        for i, act in enumerate(acts):
            self.do(act, f"{tag}.{i}")

    def callback_body(self, tag, acts):
        def run():
            self.trace.append(("cb", tag, cv.get()))
            self.do_all(acts, tag)

        return run

    def do(self, act, tag):
        loop = self.loop
        kind = act[0]
        if kind in (
            "soon",
            "soon_ctx",
            "threadsafe",
            "later",
            "at",
            "past",
            "past_later",
            "thread_cb",
        ):
            entry, cb = self.counted(tag, self.callback_body(tag, act[-1]))
            if kind == "soon":
                entry.handle = loop.call_soon(cb)
            elif kind == "soon_ctx":
                ctx = contextvars.copy_context()
                ctx.run(cv.set, f"ctx-{tag}")
                entry.handle = loop.call_soon(cb, context=ctx)
            elif kind == "threadsafe":
                entry.handle = loop.call_soon_threadsafe(cb)
            elif kind == "later":
                entry.handle = loop.call_later(self.slot_when(act[1]) - loop.time(), cb)
            elif kind == "at":
                entry.handle = loop.call_at(self.slot_when(act[1]), cb)
            elif kind == "past":
                entry.handle = loop.call_at(self.past_when(act[1]), cb)
            elif kind == "past_later":
                entry.handle = loop.call_later(self.past_when(act[1]) - loop.time(), cb)
            else:  # thread_cb

                def work():
                    entry.handle = loop.call_soon_threadsafe(cb)

                th = threading.Thread(target=work)
                th.start()
                th.join()
            self.handles.append(entry)
        elif kind == "future":
            self.new_future(tag, act[1], act[2])
        elif kind == "cancel_handle":
            if self.handles:
                entry = self.handles[act[1] % len(self.handles)]
                entry.handle.cancel()
                if not entry.ran and not entry.cancelled:
                    entry.cancelled = True
                    self._settled()
                self.trace.append(("hcancel", tag, entry.tag, entry.ran, entry.handle.cancelled()))
        elif kind == "cancel_task":
            if self.tasks:
                t = self.tasks[act[1] % len(self.tasks)]
                self.trace.append(("tcancel", tag, t.get_name(), t.cancel(act[2] or None)))
        elif kind == "cancel_fut":
            if self.futures:
                f = self.futures[act[1] % len(self.futures)]
                self.trace.append(("fcancel", tag, f.cancel(act[2] or None)))
        elif kind == "raise_cb":
            self.trace.append(("raise", tag))
            raise make_exc(act[1], act[2])
        elif kind == "note":
            task = asyncio.current_task()
            self.trace.append(("note", tag, act[1], cv.get(), task and task.get_name()))
        elif kind == "task":
            self.new_root(tag, act[1])
        else:  # pragma: no cover - generator and interpreter out of sync
            raise AssertionError(act)

    def new_future(self, tag, how, value):
        loop = self.loop
        if how.startswith("cf_"):
            cf = concurrent.futures.Future()
            fut = asyncio.wrap_future(cf, loop=loop)
        else:
            fut = loop.create_future()
        self.futures.append(fut)
        fut.add_done_callback(lambda f: self.trace.append(("fut-done", tag, state(f))))

        def resolve():
            try:
                if how.endswith("_result"):
                    fut.set_result(value)
                elif how.endswith("_exc"):
                    fut.set_exception(Boom(tag, value))
                else:
                    fut.cancel(f"resolve-{tag}")
            except asyncio.InvalidStateError as e:
                self.trace.append(("invalid", tag, str(e)))

        if how.startswith("cf_"):

            def cf_work():
                if how == "cf_result":
                    cf.set_result(value)
                elif how == "cf_exc":
                    cf.set_exception(Boom(tag, value))
                else:
                    cf.cancel()

            th = threading.Thread(target=cf_work)
            th.start()
            th.join()
            return
        _entry, cb = self.counted(tag, resolve)
        if how.startswith("soon"):
            loop.call_soon(cb)
        elif how == "past_result":
            loop.call_at(self.past_when(value), cb)
        elif how == "later_result":
            loop.call_later(self.slot_when(1 + value % 3) - loop.time(), cb)
        else:  # thread_result / thread_exc

            def work():
                loop.call_soon_threadsafe(cb)

            th = threading.Thread(target=work)
            th.start()
            th.join()

    # -- tasks

    def new_root(self, tag, bod):
        index = len(self.roots)
        task = self.loop.create_task(self.coro(tag, bod, index), name=tag)
        self.roots.append((index, task))
        self.register(task, tag)
        return task

    def new_child(self, tag, bod, root, factory=None):
        coro = self.coro(tag, bod, root)
        task = (factory or self.loop.create_task)(coro, name=tag)
        self.register(task, tag)
        return task

    def register(self, task, tag):
        self.tasks.append(task)
        task.add_done_callback(lambda t: self.trace.append(("task-done", tag, state(t))))

    async def coro(self, tag, bod, root):
        task_steps, retval = bod
        self.trace.append(("start", tag, cv.get()))
        cv.set(tag)
        try:
            await self.run_steps(task_steps, tag, root)
        except asyncio.CancelledError as e:
            self.trace.append(("cancelled-in", tag, e.args))
            raise
        except Exception as e:
            self.trace.append(("raised-in", tag, describe(e)))
            raise
        self.trace.append(("return", tag, retval))
        return retval

    async def run_steps(self, task_steps, tag, root):
        for i, stp in enumerate(task_steps):
            await self.run_step(stp, f"{tag}/{i}", root)

    async def run_step(self, stp, tag, root):
        loop = self.loop
        trace = self.trace
        kind = stp[0]
        if kind == "sleep0":
            await asyncio.sleep(0)
            trace.append(("slept0", tag))
        elif kind == "sleep_result":
            trace.append(("slept-result", tag, await asyncio.sleep(0, stp[1])))
        elif kind == "sleep":
            await asyncio.sleep(self.slot_when(stp[1]) - loop.time())
            trace.append(("slept", tag))
        elif kind == "await_fut":
            if not self.futures:
                return
            fut = self.futures[stp[1] % len(self.futures)]
            try:
                trace.append(("awaited-fut", tag, "ok", await fut))
            except asyncio.CancelledError as e:
                trace.append(("awaited-fut", tag, "cancelled", e.args))
                raise
            except Exception as e:  # noqa: BLE001 - every exception is part of the trace
                trace.append(("awaited-fut", tag, "exc", describe(e)))
        elif kind == "await_task":
            # only roots created before our own root: the await graph stays acyclic
            older = [t for r, t in self.roots if r < root]
            if not older:
                return
            t = older[stp[1] % len(older)]
            try:
                trace.append(("awaited-task", tag, "ok", await t))
            except asyncio.CancelledError as e:
                trace.append(("awaited-task", tag, "cancelled", e.args))
                raise
            except Exception as e:  # noqa: BLE001 - every exception is part of the trace
                trace.append(("awaited-task", tag, "exc", describe(e)))
        elif kind == "raise":
            raise make_exc(stp[1], stp[2])
        elif kind == "cancel_self":
            me = asyncio.current_task()
            trace.append(("self-cancel", tag, me.cancel(stp[1] or None), me.cancelling()))
        elif kind == "cancel_task":
            self.do(("cancel_task", stp[1], stp[2]), tag)
        elif kind == "act":
            self.do(stp[1], tag)
        elif kind in ("spawn_await", "spawn", "shield"):
            child = self.new_child(tag + "c", stp[1], root)
            if kind == "spawn":
                return
            try:
                res = await (child if kind == "spawn_await" else asyncio.shield(child))
                trace.append((kind, tag, "ok", res))
            except asyncio.CancelledError as e:
                trace.append((kind, tag, "cancelled", e.args, child.done()))
                raise
            except Exception as e:  # noqa: BLE001 - every exception is part of the trace
                trace.append((kind, tag, "exc", describe(e)))
        elif kind == "guard":
            try:
                await self.run_steps(stp[1], tag, root)
            except asyncio.CancelledError as e:
                me = asyncio.current_task()
                trace.append(("caught-cancel", tag, e.args, me.cancelling()))
                trace.append(("uncancel", tag, me.uncancel(), me.cancelling()))
        elif kind == "catch":
            try:
                await self.run_steps(stp[1], tag, root)
            except Exception as e:  # noqa: BLE001 - every exception is part of the trace
                trace.append(("caught", tag, describe(e)))
        elif kind == "tg":
            try:
                async with OrderedTaskGroup() as tg:
                    for j, bod in enumerate(stp[1]):
                        self.new_child(f"{tag}g{j}", bod, root, factory=tg.create_task)
                    await self.run_steps(stp[2], tag, root)
                trace.append(("tg-ok", tag))
            except asyncio.CancelledError as e:
                trace.append(("tg-cancelled", tag, e.args))
                raise
            except Exception as e:  # noqa: BLE001 - every exception is part of the trace
                trace.append(("tg-exc", tag, describe(e)))
        elif kind in ("timeout", "timeout_at", "timeout_resched"):
            when = self.slot_when(stp[1])
            try:
                if kind == "timeout":
                    cm = asyncio.timeout(when - loop.time())
                elif kind == "timeout_at":
                    cm = asyncio.timeout_at(when)
                else:
                    cm = asyncio.timeout(None)
                async with cm:
                    if kind == "timeout_resched":
                        cm.reschedule(when)
                    await self.run_steps(stp[2], tag, root)
                trace.append(("timeout-ok", tag, cm.expired()))
            except TimeoutError as e:
                trace.append(("timeout-expired", tag, describe(e), cm.expired()))
        elif kind == "wait_for":
            when = self.slot_when(stp[1])
            child = self.new_child(tag + "w", stp[2], root)
            try:
                res = await asyncio.wait_for(child, when - loop.time())
                trace.append(("wait_for", tag, "ok", res))
            except TimeoutError:
                trace.append(("wait_for", tag, "timeout", state(child)))
            except asyncio.CancelledError as e:
                trace.append(("wait_for", tag, "cancelled", e.args))
                raise
            except Exception as e:  # noqa: BLE001 - every exception is part of the trace
                trace.append(("wait_for", tag, "exc", describe(e)))
        elif kind == "gather":
            kids = [self.new_child(f"{tag}k{j}", b, root) for j, b in enumerate(stp[1])]
            try:
                res = await asyncio.gather(*kids, return_exceptions=stp[2])
                trace.append(
                    (
                        "gather",
                        tag,
                        "ok",
                        [describe(r) if isinstance(r, BaseException) else r for r in res],
                    )
                )
            except asyncio.CancelledError as e:
                trace.append(("gather", tag, "cancelled", e.args))
                raise
            except Exception as e:  # noqa: BLE001 - every exception is part of the trace
                trace.append(("gather", tag, "exc", describe(e)))
        elif kind == "gather_cancel":
            kids = [self.new_child(f"{tag}k{j}", b, root) for j, b in enumerate(stp[1])]
            gathering = asyncio.gather(*kids)
            await asyncio.sleep(0)
            trace.append(("gather-cancel", tag, gathering.cancel(stp[2] or None)))
            try:
                trace.append(("gather", tag, "ok", await gathering))
            except asyncio.CancelledError as e:
                trace.append(("gather", tag, "cancelled", e.args, state(gathering)))
                if asyncio.current_task().cancelling():
                    raise
            except Exception as e:  # noqa: BLE001 - every exception is part of the trace
                trace.append(("gather", tag, "exc", describe(e)))
        elif kind == "wait_first":
            kids = [self.new_child(f"{tag}k{j}", b, root) for j, b in enumerate(stp[1])]
            done, pending = await asyncio.wait(kids, return_when=asyncio.FIRST_COMPLETED)
            trace.append(
                (
                    "wait-first",
                    tag,
                    sorted(t.get_name() for t in done),
                    sorted(t.get_name() for t in pending),
                )
            )
        elif kind == "as_completed":
            kids = [self.new_child(f"{tag}k{j}", b, root) for j, b in enumerate(stp[1])]
            for f in asyncio.as_completed(kids):
                try:
                    trace.append(("as-completed", tag, "ok", await f))
                except asyncio.CancelledError as e:
                    trace.append(("as-completed", tag, "cancelled", e.args))
                    if asyncio.current_task().cancelling():
                        raise
                except Exception as e:  # noqa: BLE001 - every exception is part of the trace
                    trace.append(("as-completed", tag, "exc", describe(e)))
        else:  # pragma: no cover
            raise AssertionError(stp)

    # -- the program

    async def main(self, program):
        self.base = self.loop.time()
        self.add_sentinels(0)
        for i, act in enumerate(program):
            try:
                self.do(act, f"r{i}")
            except Exception as e:  # noqa: BLE001 - every exception is part of the trace
                self.trace.append(("main-exc", describe(e)))
        while True:
            pending = [t for t in self.tasks if not t.done()]
            if pending:
                await asyncio.wait(pending)
                continue
            if self.outstanding:
                self.idle = self.loop.create_future()
                await self.idle
                continue
            break
        self.trace.append(("end",))

    def run(self, program) -> list:
        main = self.loop.create_task(self.main(program), name="main")
        self.loop.run_until_complete(asyncio.wait_for(main, RUN_TIMEOUT))
        for t in self.tasks:
            self.trace.append(("final-task", t.get_name(), state(t)))
        for i, f in enumerate(self.futures):
            self.trace.append(("final-fut", i, state(f)))
        return self.trace


def run_program(new_loop, program, attempts: int = 6) -> list:
    """The program's trace on a fresh loop; redone with wider slots while the run
    broke the timing assumptions (on a loaded machine)."""
    for attempt in range(attempts):
        loop = new_loop()
        try:
            interp = Interp(loop, SLOT * 2**attempt)
            trace = interp.run(program)
        finally:
            loop.close()
        if not interp.violations:
            return trace
    hypothesis.reject()  # never a timing-clean run: no verdict for this program
    raise AssertionError("unreachable")


def first_divergence(actual, expected) -> str:
    first = next(
        (i for i, (a, b) in enumerate(zip(actual, expected)) if a != b),
        min(len(actual), len(expected)),
    )
    lo = max(0, first - 4)
    exp = "\n    ".join(map(repr, expected[lo : first + 4]))
    act = "\n    ".join(map(repr, actual[lo : first + 4]))
    return (
        f"trace diverges from asyncio at event {first} "
        f"(len {len(actual)} vs {len(expected)}):\n  asyncio:\n    {exp}\n  actual:\n    {act}"
    )


@pytest.mark.timeout(max(120, 3 * MAX_EXAMPLES))
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(program=programs)
def test_random_program_trace_matches_asyncio(impl, program):
    expected = run_program(asyncio.SelectorEventLoop, program)
    actual = run_program(impl.new_event_loop, program)
    assert actual == expected, first_divergence(actual, expected)
