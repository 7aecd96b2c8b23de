"""run_until_complete / run_forever / stop / close / is_running, BaseException propagation."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest
from ferro_testutil import IMPLS, run_briefly


async def _value(v):
    await asyncio.sleep(0)
    return v


def _default_sigint():
    """Run in the child before exec: SIGINT back to its default disposition."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_run_until_complete_coroutine(loop):
    assert loop.run_until_complete(_value("coro")) == "coro"


def test_run_until_complete_task_and_future(loop):
    task = loop.create_task(_value("task"))
    assert loop.run_until_complete(task) == "task"
    fut = loop.create_future()
    loop.call_soon(fut.set_result, "fut")
    assert loop.run_until_complete(fut) == "fut"


def test_run_until_complete_done_future(loop):
    fut = loop.create_future()
    fut.set_result("already")
    assert loop.run_until_complete(fut) == "already"


def test_run_until_complete_awaitable_object(loop):
    class Awaitable:
        def __await__(self):
            return _value("awaitable").__await__()

    assert loop.run_until_complete(Awaitable()) == "awaitable"


def test_run_until_complete_exception_propagates(loop):
    async def fail():
        raise ArithmeticError("ruc")

    with pytest.raises(ArithmeticError, match="ruc"):
        loop.run_until_complete(fail())
    assert not loop.is_running()
    assert loop.run_until_complete(_value(1)) == 1


def test_run_until_complete_rejects_non_awaitable(loop):
    with pytest.raises(TypeError) as info:
        loop.run_until_complete(42)
    assert str(info.value) == "An asyncio.Future, a coroutine or an awaitable is required"


def test_run_until_complete_future_of_other_loop(loop, new_loop):
    other = new_loop()
    fut = other.create_future()
    with pytest.raises(ValueError) as info:
        loop.run_until_complete(fut)
    assert str(info.value) == (
        "The future belongs to a different loop than the one specified as the loop argument"
    )


def test_run_until_complete_future_of_asyncio_loop(loop):
    """A future of a loop of the *other* implementation is foreign as well."""
    other = asyncio.SelectorEventLoop()
    try:
        fut = other.create_future()
        with pytest.raises(ValueError):
            loop.run_until_complete(fut)
    finally:
        other.close()


def test_stopped_before_future_completed(loop):
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError) as info:
        loop.run_until_complete(fut)
    assert str(info.value) == "Event loop stopped before Future completed."
    fut.cancel()


def test_is_running_and_is_closed(loop):
    seen = []
    assert loop.is_running() is False
    assert loop.is_closed() is False
    loop.call_soon(lambda: seen.append(loop.is_running()))
    run_briefly(loop)
    assert seen == [True]
    assert loop.is_running() is False
    loop.close()
    assert loop.is_closed() is True
    assert loop.is_running() is False


def test_close_is_idempotent(loop):
    loop.close()
    loop.close()
    assert loop.is_closed()


def test_close_drops_pending_callbacks(loop):
    out = []
    loop.call_soon(out.append, 1)
    loop.call_later(0, out.append, 2)
    loop.close()
    assert out == []


def test_loop_can_run_many_times(loop):
    results = [loop.run_until_complete(_value(i)) for i in range(20)]
    assert results == list(range(20))
    for _ in range(5):
        run_briefly(loop)


@pytest.mark.parametrize("api", ["run_until_complete", "run_forever"])
def test_reentrant_run_raises(loop, api):
    errors = []

    def cb():
        coro = _value(None)
        try:
            if api == "run_until_complete":
                loop.run_until_complete(coro)
            else:
                loop.run_forever()
        except RuntimeError as e:
            errors.append(str(e))
        finally:
            coro.close()

    loop.call_soon(cb)
    run_briefly(loop)
    assert errors == ["This event loop is already running"]
    assert not loop.is_running()


def test_reentrant_run_from_task_raises(loop):
    async def main():
        coro = _value(None)
        try:
            loop.run_until_complete(coro)
        except RuntimeError as e:
            return str(e)
        finally:
            coro.close()

    assert loop.run_until_complete(main()) == "This event loop is already running"


@pytest.mark.parametrize("inner_kind", ["same-impl", "asyncio", "ferroloop"])
@pytest.mark.parametrize("api", ["run_until_complete", "run_forever"])
def test_running_another_loop_inside_raises(loop, new_loop, inner_kind, api):
    if inner_kind == "same-impl":
        inner = new_loop()
    else:
        if IMPLS.get(inner_kind) is None:
            pytest.skip(f"{inner_kind} is not importable")
        inner = IMPLS[inner_kind].new_event_loop()
    errors = []

    def cb():
        coro = _value(None)
        try:
            if api == "run_until_complete":
                inner.run_until_complete(coro)
            else:
                inner.run_forever()
        except RuntimeError as e:
            errors.append(str(e))
        finally:
            coro.close()

    try:
        loop.call_soon(cb)
        run_briefly(loop)
        assert errors == ["Cannot run the event loop while another loop is running"]
        assert inner.is_running() is False
    finally:
        inner.close()


def test_close_while_running_raises(loop):
    errors = []

    def cb():
        try:
            loop.close()
        except RuntimeError as e:
            errors.append(str(e))

    loop.call_soon(cb)
    run_briefly(loop)
    assert errors == ["Cannot close a running event loop"]
    assert not loop.is_closed()


def test_stop_inside_callback_returns_from_run_forever(loop):
    out = []

    def cb():
        out.append(loop.is_running())
        loop.stop()

    loop.call_soon(cb)
    loop.run_forever()
    assert out == [True]


def test_stop_from_task(loop):
    async def main():
        await asyncio.sleep(0)
        loop.stop()
        await asyncio.sleep(0)
        return "unreachable"

    task = loop.create_task(main())
    loop.run_forever()
    assert not task.done()
    assert loop.run_until_complete(task) == "unreachable"


def test_running_loop_cleared_after_run(loop):
    loop.run_until_complete(_value(None))
    assert asyncio._get_running_loop() is None
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_task_propagates(loop, exc_type):
    async def raiser():
        await asyncio.sleep(0)
        raise exc_type("from task")

    task = loop.create_task(raiser())
    with pytest.raises(exc_type):
        loop.run_until_complete(task)
    assert not loop.is_running()
    assert task.done()
    assert type(task.exception()) is exc_type
    assert loop.run_until_complete(_value("usable")) == "usable"


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_coroutine_run_until_complete(loop, exc_type):
    async def raiser():
        raise exc_type()

    with pytest.raises(exc_type):
        loop.run_until_complete(raiser())
    assert loop.run_until_complete(_value("usable")) == "usable"


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_background_task_stops_run_forever(loop, exc_type):
    async def raiser():
        raise exc_type()

    task = loop.create_task(raiser())
    with pytest.raises(exc_type):
        loop.run_forever()
    assert task.done()
    assert type(task.exception()) is exc_type
    assert loop.run_until_complete(_value(2)) == 2


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_timer_callback(loop, exc_type):
    def raiser():
        raise exc_type()

    loop.call_later(0.001, raiser)
    with pytest.raises(exc_type):
        loop.run_until_complete(asyncio.sleep(10))
    assert not loop.is_running()
    assert loop.run_until_complete(_value(3)) == 3


def test_sigint_interrupts_sleeping_loop(loop):
    """SIGINT while the loop sleeps on a long timer raises KeyboardInterrupt out of run_forever."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        loop.call_later(10, loop.stop)

        def send():
            time.sleep(0.1)
            os.kill(os.getpid(), signal.SIGINT)

        t = threading.Thread(target=send, daemon=True)
        start = time.monotonic()
        t.start()
        with pytest.raises(KeyboardInterrupt):
            loop.run_forever()
        elapsed = time.monotonic() - start
        t.join(10)
    finally:
        signal.signal(signal.SIGINT, old)
    assert elapsed < 5
    assert not loop.is_running()
    assert loop.run_until_complete(_value("after-sigint")) == "after-sigint"


def test_get_event_loop_inside_running_loop(loop):
    async def main():
        return asyncio.get_event_loop() is loop, asyncio.get_running_loop() is loop

    assert loop.run_until_complete(main()) == (True, True)


def test_set_event_loop_then_get_event_loop(loop):
    asyncio.set_event_loop(loop)
    try:
        assert asyncio.get_event_loop() is loop
    finally:
        asyncio.set_event_loop(None)


def test_runner_with_loop_factory(impl):
    async def main():
        return type(asyncio.get_running_loop())

    with asyncio.Runner(loop_factory=impl.new_event_loop) as runner:
        assert issubclass(runner.run(main()), impl.loop_class)
        loop = runner.get_loop()
    assert loop.is_closed()


def test_run_forever_returns_after_stop_then_timer_still_pending(loop):
    out = []
    loop.call_later(0.01, out.append, "timer")
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert out == []
    loop.run_until_complete(asyncio.sleep(0.02))
    assert out == ["timer"]


def test_loop_repr_mentions_state(loop):
    r = repr(loop)
    assert "running=False" in r and "closed=False" in r and "debug=False" in r
    loop.close()
    assert "closed=True" in repr(loop)


def test_keyboard_interrupt_in_awaited_task_resurfaces_in_awaiter(loop):
    """The inner task's KeyboardInterrupt escapes once, then again through the awaiting task."""
    trace = []

    async def inner():
        await asyncio.sleep(0)
        raise KeyboardInterrupt

    async def outer():
        try:
            await loop.create_task(inner())
        except BaseException as e:
            trace.append(("outer caught", type(e).__name__))
            raise

    task = loop.create_task(outer())
    for i in range(4):
        try:
            loop.run_until_complete(task)
            trace.append("completed")
        except BaseException as e:  # noqa: BLE001 - recording what escaped
            trace.append(("escaped", i, type(e).__name__))
        if task.done():
            break
    assert trace == [
        ("escaped", 0, "KeyboardInterrupt"),
        ("outer caught", "KeyboardInterrupt"),
        ("escaped", 1, "KeyboardInterrupt"),
    ]
    assert type(task.exception()) is KeyboardInterrupt


def test_system_exit_in_done_callback_propagates(loop):
    fut = loop.create_future()

    def exit_cb(f):
        raise SystemExit(4)

    fut.add_done_callback(exit_cb)
    fut.set_result(1)
    with pytest.raises(SystemExit) as info:
        run_briefly(loop)
    assert info.value.code == 4
    assert not loop.is_running()


RUN_SIGINT_SCRIPT = """
import asyncio, sys
impl = sys.argv[1]
if impl == "ferroloop":
    import ferroloop
    run = ferroloop.run
else:
    run = asyncio.run

async def main():
    print("ready", flush=True)
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        print("main cancelled", flush=True)
        raise

run(main())
"""


def test_run_sigint_cancels_main_task_then_raises_keyboard_interrupt(impl):
    """Like asyncio.run (3.11+): Ctrl-C cancels the main task, then KeyboardInterrupt escapes."""
    import subprocess
    import sys

    from ferro_testutil import clean_env

    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_SIGINT_SCRIPT, impl.name],
        # A test run started in the background inherits an ignored SIGINT; the
        # child must start with the default disposition, as from a terminal.
        preexec_fn=_default_sigint,  # noqa: PLW1509 - only restores a signal disposition
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=clean_env(),
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert time.monotonic() - start < 20
    assert out == "main cancelled\n"
    assert err.rstrip().endswith("KeyboardInterrupt")
    assert proc.returncode == -signal.SIGINT


def test_run_loop_factory(ferroloop_only):
    """ferroloop.run(main, loop_factory=...) as uvloop.run: the factory makes the loop
    (a subclass is fine), the loop is closed afterwards, keyword arguments pass on."""
    import ferroloop

    made = []

    class MyLoop(ferroloop.Loop):
        pass

    def factory():
        loop = MyLoop()
        made.append(loop)
        return loop

    async def main():
        return type(asyncio.get_running_loop()), asyncio.get_running_loop().get_debug()

    assert ferroloop.run(main(), loop_factory=factory, debug=True) == (MyLoop, True)
    assert len(made) == 1 and made[0].is_closed()
    assert ferroloop.run(main(), loop_factory=None)[0] is ferroloop.Loop


def test_run_loop_factory_must_make_a_ferroloop_loop(ferroloop_only):
    """A factory that makes another loop is refused, as uvloop.run refuses one; the
    stray loop is closed."""
    import ferroloop

    made = []

    def factory():
        loop = asyncio.SelectorEventLoop()
        made.append(loop)
        return loop

    async def main():
        return 1

    coro = main()
    with pytest.raises(TypeError, match="ferroloop.run\\(\\) uses a non-ferroloop event loop"):
        ferroloop.run(coro, loop_factory=factory)
    coro.close()
    assert made[0].is_closed()
