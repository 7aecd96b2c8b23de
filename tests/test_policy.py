"""new_event_loop / EventLoopPolicy / install() / run(): the module-level entry points.

For the ``asyncio`` param these are asyncio.SelectorEventLoop, DefaultEventLoopPolicy,
set_event_loop_policy(DefaultEventLoopPolicy()) and asyncio.run.
"""

from __future__ import annotations

import asyncio
import threading
import warnings

import pytest


@pytest.fixture(autouse=True)
def _restore_policy():
    """Every test here may change the global policy; put the original back."""
    saved = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(saved)


def test_new_event_loop(impl):
    a = impl.new_event_loop()
    b = impl.new_event_loop()
    try:
        assert a is not b
        assert isinstance(a, impl.loop_class)
        assert isinstance(a, asyncio.AbstractEventLoop)
        assert not a.is_running() and not a.is_closed()
    finally:
        a.close()
        b.close()


def test_loop_class_constructor(impl):
    loop = impl.loop_class()
    try:
        assert loop.run_until_complete(asyncio.sleep(0, result="ctor")) == "ctor"
    finally:
        loop.close()


def test_policy_creates_impl_loops(impl):
    policy = impl.policy_class()
    assert isinstance(policy, asyncio.AbstractEventLoopPolicy)
    loop = policy.new_event_loop()
    try:
        assert isinstance(loop, impl.loop_class)
    finally:
        loop.close()


def test_install_makes_asyncio_create_impl_loops(impl):
    impl.install()
    assert isinstance(asyncio.get_event_loop_policy(), impl.policy_class)
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(loop, impl.loop_class)
    finally:
        loop.close()


def test_asyncio_run_after_install(impl):
    impl.install()

    async def main():
        return type(asyncio.get_running_loop())

    assert issubclass(asyncio.run(main()), impl.loop_class)


def test_policy_get_event_loop_main_thread(impl):
    policy = impl.policy_class()
    asyncio.set_event_loop_policy(policy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loop = policy.get_event_loop()
    try:
        assert isinstance(loop, impl.loop_class)
        assert policy.get_event_loop() is loop
    finally:
        policy.set_event_loop(None)
        loop.close()


def test_policy_set_event_loop(impl):
    policy = impl.policy_class()
    loop = impl.new_event_loop()
    try:
        policy.set_event_loop(loop)
        assert policy.get_event_loop() is loop
        policy.set_event_loop(None)
        with pytest.raises(RuntimeError, match="There is no current event loop in thread"):
            policy.get_event_loop()
    finally:
        loop.close()


def test_policy_get_event_loop_other_thread(impl):
    policy = impl.policy_class()
    errors = []

    def other():
        try:
            policy.get_event_loop()
        except RuntimeError as e:
            errors.append(str(e))

    t = threading.Thread(target=other, name="worker-x")
    t.start()
    t.join(30)
    assert errors == ["There is no current event loop in thread 'worker-x'."]


def test_run_returns_result_on_impl_loop(impl):
    async def main(x):
        loop = asyncio.get_running_loop()
        return x, isinstance(loop, impl.loop_class)

    assert impl.run(main(7)) == (7, True)


def test_run_closes_loop_and_cancels_leftover_tasks(impl):
    state = {}

    async def leftover():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            state["leftover_cancelled"] = True
            raise

    async def main():
        state["loop"] = asyncio.get_running_loop()
        asyncio.get_running_loop().create_task(leftover())
        await asyncio.sleep(0)

    impl.run(main())
    assert state["leftover_cancelled"] is True
    assert state["loop"].is_closed()


def test_run_propagates_exception(impl):
    async def main():
        raise OSError("from main")

    with pytest.raises(OSError, match="from main"):
        impl.run(main())


def test_run_rejects_non_coroutine(impl):
    with pytest.raises(ValueError) as info:
        impl.run(123)
    assert str(info.value) == "a coroutine was expected, got 123"


def test_run_inside_running_loop_raises(impl):
    async def inner():
        return None

    async def main():
        coro = inner()
        try:
            impl.run(coro)
        except RuntimeError as e:
            return str(e)
        finally:
            coro.close()

    msg = impl.run(main())
    assert msg.endswith("cannot be called from a running event loop")


def test_run_sets_and_clears_event_loop(impl):
    async def main():
        return asyncio.get_event_loop() is asyncio.get_running_loop()

    assert impl.run(main()) is True
    policy = asyncio.get_event_loop_policy()
    assert policy._local._loop is None


def test_run_shuts_down_default_executor(impl):
    state = {}

    async def main():
        loop = asyncio.get_running_loop()
        state["loop"] = loop
        await loop.run_in_executor(None, lambda: None)

    impl.run(main())
    with pytest.raises(RuntimeError):
        state["loop"].run_in_executor(None, print)


def test_run_keyboard_interrupt_propagates(impl):
    async def main():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        impl.run(main())
