"""test_unix_events: the Unix loop's signals, Unix sockets and sendfile, on a backend loop.

* ``FerroSignalTests``/``FerroUnixSocketTests`` are ``SelectorEventLoopSignalTests``/
  ``SelectorEventLoopUnixSocketTests`` with the loop that their ``setUp()`` makes with
  ``asyncio.SelectorEventLoop()`` replaced by a backend loop.  The signal tests mock
  the ``signal`` module as ``asyncio.unix_events`` sees it and read the loop's
  ``_signal_handlers``/``_check_signal``/``_handle_signal``, which ferroloop has (it
  takes its signal handling from ``asyncio.unix_events``).
* ``FerroPolicyTests`` is ``PolicyTests`` (child watchers of the default policy) with
  ``create_policy()`` returning the backend's policy.
* ``SelectorEventLoopUnixSockSendfileTests`` and ``TestFunctional`` create their loop
  with ``asyncio.new_event_loop()``, so they get a backend loop from the installed
  policy; they are re-declared unchanged.

The pipe-transport and child-watcher unit tests run on ``test_utils.TestLoop`` with
mocks, not on the backend; ``DEFERRED_TESTS`` in :mod:`ferro_conformance.suites` lists
them (they are not even collected here).
"""

from __future__ import annotations

import test.test_asyncio.test_unix_events as std

from ferro_conformance import backend

B = backend.active()


class FerroSignalTests(std.SelectorEventLoopSignalTests):
    """add_signal_handler()/remove_signal_handler()/close() with a mocked ``signal``."""

    def setUp(self):
        super(std.SelectorEventLoopSignalTests, self).setUp()
        self.loop = B.new_event_loop()
        self.set_event_loop(self.loop)


class FerroUnixSocketTests(std.SelectorEventLoopUnixSocketTests):
    """create_unix_server()/create_unix_connection() argument handling and errors."""

    def setUp(self):
        super(std.SelectorEventLoopUnixSocketTests, self).setUp()
        self.loop = B.new_event_loop()
        self.set_event_loop(self.loop)


class SelectorEventLoopUnixSockSendfileTests(std.SelectorEventLoopUnixSockSendfileTests):
    """The stdlib class as-is: it runs on the backend loop through the policy."""


class FerroPolicyTests(std.PolicyTests):
    """The default child watcher and its loop attachment, with the backend's policy."""

    def create_policy(self):
        return B.EventLoopPolicy()


class TestFunctional(std.TestFunctional):
    """The stdlib class as-is: it runs on the backend loop through the policy."""
