"""test_sendfile: ``loop.sendfile()``/``loop.sock_sendfile()`` on a backend loop.

Built like the stdlib's ``EPollEventLoopTests``: ``SendfileTestsBase`` (the
``SendfileMixin`` and ``SockSendfileMixin`` tests) with ``create_event_loop()``
returning a backend loop (asyncio's ``SelectorEventLoop`` in the baseline run).
"""

from __future__ import annotations

import test.test_asyncio.test_sendfile as std
from test.test_asyncio import utils as test_utils

from ferro_conformance import backend

B = backend.active()


class FerroSendfileTests(std.SendfileTestsBase, test_utils.TestCase):
    """Transport and socket sendfile, native and fallback."""

    def create_event_loop(self):
        return B.new_event_loop()
