"""test_sock_lowlevel: ``loop.sock_*()`` on a backend loop.

Built like the stdlib's ``EPollEventLoopTests``: ``BaseSockTestsMixin`` with
``create_event_loop()`` returning a backend loop (asyncio's ``SelectorEventLoop``, i.e.
epoll, in the baseline run).
"""

from __future__ import annotations

import test.test_asyncio.test_sock_lowlevel as std
from test.test_asyncio import utils as test_utils

from ferro_conformance import backend

B = backend.active()


class FerroSockTests(std.BaseSockTestsMixin, test_utils.TestCase):
    """Low-level socket operations (sock_connect/accept/recv/sendall/...)."""

    def create_event_loop(self):
        return B.new_event_loop()
