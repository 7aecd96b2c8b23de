"""test_tasks: the stdlib Task test mixins, run on the backend's ``Task`` and ``Future``.

``BaseTaskTests`` drives its tasks on ``test_utils.TestLoop`` (virtual time) and, in
some tests, on ``asyncio.new_event_loop()`` -- a backend loop, since the backend's policy
is installed.  The Task/Future pairings mirror the stdlib's ``CTask_CFuture_Tests``,
``CTask_CFuture_SubclassTests``, ``CTask_PyFuture_Tests`` and ``PyTask_CFuture_Tests``
with the backend's classes in place of the C ones.  Classes that only exercise asyncio's
own helpers on asyncio's own futures (introspection, ``GenericTaskTests``) are left out.
"""

from __future__ import annotations

import asyncio.futures
import asyncio.tasks
import functools

import test.test_asyncio.test_tasks as std
from test.test_asyncio import utils as test_utils

from ferro_conformance import backend

B = backend.active()


def _with_subclass_tests(cls: type) -> type:
    """Apply the stdlib's ``add_subclass_tests``; if that cannot subclass, say why.

    ``add_subclass_tests`` subclasses ``cls.Task`` and ``cls.Future`` at decoration
    time.  If the backend refuses, every test of ``cls`` fails with that reason instead
    of the adapter failing to import (which would lose the whole module).
    """
    try:
        return std.add_subclass_tests(cls)
    except TypeError as exc:
        reason = f"add_subclass_tests could not subclass the backend's Task/Future: {exc}"

    def setUp(self):
        raise TypeError(reason)

    cls.setUp = setUp
    return cls


class FerroTask_FerroFuture_Tests(std.BaseTaskTests, std.SetMethodsTest, test_utils.TestCase):
    """Backend Task awaiting backend Futures (like ``CTask_CFuture_Tests``)."""

    Task = B.Task
    Future = B.Future
    test_del__log_destroy_pending_segfault = (
        std.CTask_CFuture_Tests.test_del__log_destroy_pending_segfault
    )


@_with_subclass_tests
class FerroTask_FerroFuture_SubclassTests(std.BaseTaskTests, test_utils.TestCase):
    """Python subclasses of the backend's Task and Future."""

    Task = B.Task
    Future = B.Future


class FerroTask_PyFuture_Tests(std.BaseTaskTests, test_utils.TestCase):
    """Backend Task awaiting asyncio's pure-Python Future (a foreign future)."""

    Task = B.Task
    Future = asyncio.futures._PyFuture


class PyTask_FerroFuture_Tests(std.BaseTaskTests, test_utils.TestCase):
    """asyncio's pure-Python Task awaiting backend Futures (a foreign task)."""

    Task = asyncio.tasks._PyTask
    Future = B.Future


class FerroCurrentLoopTests(std.BaseCurrentLoopTests, test_utils.TestCase):
    """``asyncio.current_task()`` for backend Tasks on a backend loop."""

    # 3.12+'s mixin leaves current_task to its subclasses (None otherwise).
    current_task = staticmethod(asyncio.current_task)

    def new_task(self, coro):
        return B.Task(coro, loop=self.loop)


class _BackendGatherMixin:
    """Make both TestLoops of the gather tests create backend Futures and Tasks."""

    def setUp(self):
        super().setUp()
        for loop in (self.one_loop, self.other_loop):
            loop.create_future = functools.partial(B.Future, loop=loop)
            loop.set_task_factory(lambda loop, coro, **kwargs: B.Task(coro, loop=loop, **kwargs))


class FerroFutureGatherTests(_BackendGatherMixin, std.FutureGatherTests):
    """``asyncio.gather()`` over backend Futures."""


class FerroCoroutineGatherTests(_BackendGatherMixin, std.CoroutineGatherTests):
    """``asyncio.gather()`` over coroutines wrapped in backend Tasks."""


class CTask_Future_Tests(std.CTask_Future_Tests):
    """As in the stdlib, on a backend loop (a Future subclass hiding ``get_loop``)."""


class RunCoroutineThreadsafeTests(std.RunCoroutineThreadsafeTests):
    """``asyncio.run_coroutine_threadsafe()`` into a backend loop."""


class SleepTests(std.SleepTests):
    """``asyncio.sleep(0)`` ordering on a backend loop."""
