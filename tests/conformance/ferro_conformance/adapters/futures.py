"""test_futures: the stdlib Future test mixins, run on the backend's ``Future``.

These tests use ``test_utils.TestLoop`` (virtual time), so they check that the backend's
Future honours asyncio's contract on a foreign loop.  The classes mirror the stdlib's
``CFutureTests``, ``CSubFutureTests``, ``CFutureDoneCallbackTests``,
``CSubFutureDoneCallbackTests`` and ``CFutureInheritanceTests``.
"""

from __future__ import annotations

import test.test_asyncio.test_futures as std
from test.test_asyncio import utils as test_utils

from ferro_conformance import backend
from ferro_conformance.adapters import subclass

B = backend.active()
FerroSubFuture = subclass(B.Future, "FerroSubFuture")


class FerroFutureTests(std.BaseFutureTests, test_utils.TestCase):
    """``BaseFutureTests`` plus the C Future's attribute-deletion check."""

    cls = B.Future
    test_future_del_segfault = std.CFutureTests.test_future_del_segfault


class FerroSubFutureTests(std.BaseFutureTests, test_utils.TestCase):
    """``BaseFutureTests`` on a Python subclass of the backend's Future."""

    cls = FerroSubFuture


class FerroFutureDoneCallbackTests(std.BaseFutureDoneCallbackTests, test_utils.TestCase):
    """Done-callback bookkeeping of the backend's Future."""

    def _new_future(self):
        return B.Future(loop=self.loop)


class FerroSubFutureDoneCallbackTests(std.BaseFutureDoneCallbackTests, test_utils.TestCase):
    """Done-callback bookkeeping of a subclass of the backend's Future."""

    def _new_future(self):
        return FerroSubFuture(loop=self.loop)


class FerroFutureInheritanceTests(std.BaseFutureInheritanceTests, test_utils.TestCase):
    """A subclass whose ``__init__`` skips ``super().__init__()``."""

    def _get_future_cls(self):
        return B.Future
