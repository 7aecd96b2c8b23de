"""test_server: ``asyncio.start_server()``/``start_unix_server()`` on a backend loop.

``SelectorStartServerTests`` (``BaseStartServer`` plus its Unix-socket test) with
``new_loop()`` returning a backend loop instead of asyncio's ``SelectorEventLoop``.
"""

from __future__ import annotations

import test.test_asyncio.test_server as std

from ferro_conformance import backend

B = backend.active()


class FerroStartServerTests(std.SelectorStartServerTests):
    """Server start/serve_forever/close on a backend loop."""

    def new_loop(self):
        return B.new_event_loop()
