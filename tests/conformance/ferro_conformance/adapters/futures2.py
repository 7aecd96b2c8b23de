"""test_futures2: traceback and repr checks on ``IsolatedAsyncioTestCase`` (backend loop)."""

from __future__ import annotations

import unittest

import test.test_asyncio.test_futures2 as std

from ferro_conformance import backend

B = backend.active()


class FerroTaskTracebackTests(std.FutureTests, unittest.IsolatedAsyncioTestCase):
    """Awaiting a failed backend Task repeatedly must not grow the traceback."""

    cls = B.Task


class FutureReprTests(std.FutureReprTests):
    """The stdlib class as-is: it runs on the backend loop through the policy."""
