"""test_pep492: ``async with``/``async for``/coroutines, run on a backend loop.

The stdlib's ``BaseTest`` runs these tests on a bare ``asyncio.BaseEventLoop`` with a
mocked selector.  Here ``setUp()`` gives them a real backend loop instead (asyncio's
``SelectorEventLoop`` in the baseline run); the tests themselves are unchanged.
"""

from __future__ import annotations

import test.test_asyncio.test_pep492 as std

from ferro_conformance import backend

B = backend.active()


class _BackendLoopMixin:
    """Replace ``BaseTest.setUp()``'s mocked ``BaseEventLoop`` by a backend loop."""

    def setUp(self):
        super(std.BaseTest, self).setUp()
        self.loop = B.new_event_loop()
        self.set_event_loop(self.loop)


class FerroLockTests(_BackendLoopMixin, std.LockTests):
    """``async with`` on asyncio's locks."""


class FerroStreamReaderTests(_BackendLoopMixin, std.StreamReaderTests):
    """``async for`` over a StreamReader."""


class FerroCoroutineTests(_BackendLoopMixin, std.CoroutineTests):
    """Coroutines, debug mode and coroutine origin tracking."""
