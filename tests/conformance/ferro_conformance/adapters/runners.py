"""test_runners: ``asyncio.run()`` and ``asyncio.Runner`` driving backend loops.

The stdlib tests install their own policy (``TestPolicy``) whose loops come from
``BaseTest.new_loop()``: a ``BaseEventLoop`` with a mocked selector that records
whether ``shutdown_asyncgens()`` ran.  Here ``new_loop()`` returns a real backend loop
of a subclass that records the same thing (after really shutting the generators down),
so the policy plumbing is the stdlib's and the loop is the backend's.  The baseline runs
the same classes on asyncio's ``SelectorEventLoop``.
"""

from __future__ import annotations

import test.test_asyncio.test_runners as std

from ferro_conformance import backend
from ferro_conformance.adapters import subclass

B = backend.active()


async def _shutdown_asyncgens(self):
    """Shut the async generators down as the backend does, then record it."""
    await B.Loop.shutdown_asyncgens(self)
    self.shutdown_ag_run = True


TrackingLoop = subclass(
    B.Loop,
    "TrackingLoop",
    {"shutdown_ag_run": False, "shutdown_asyncgens": _shutdown_asyncgens},
)


class _BackendLoopMixin:
    """Make the stdlib ``TestPolicy`` hand out backend loops."""

    def new_loop(self):
        return TrackingLoop()


class FerroRunTests(_BackendLoopMixin, std.RunTests):
    """``asyncio.run()`` on backend loops."""


class FerroRunnerTests(_BackendLoopMixin, std.RunnerTests):
    """``asyncio.Runner`` on backend loops."""
