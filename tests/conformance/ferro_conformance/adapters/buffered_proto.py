"""test_buffered_proto: ``asyncio.BufferedProtocol`` over TCP on a backend loop.

``BufferedProtocolSelectorTests`` with ``new_loop()`` returning a backend loop instead
of asyncio's ``SelectorEventLoop``.
"""

from __future__ import annotations

import test.test_asyncio.test_buffered_proto as std

from ferro_conformance import backend

B = backend.active()


class FerroBufferedProtocolTests(std.BufferedProtocolSelectorTests):
    """get_buffer()/buffer_updated() driven by a backend loop's socket transport."""

    def new_loop(self):
        return B.new_event_loop()
