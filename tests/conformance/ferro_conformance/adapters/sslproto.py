"""test_sslproto: asyncio's ``SSLProtocol`` and ``loop.start_tls()`` on a backend loop.

* ``SslProtoHandshakeTests`` creates its loop with ``asyncio.new_event_loop()``, so it
  gets a backend loop from the installed policy; it is re-declared unchanged.
* ``FerroStartTLSTests`` is ``SelectorStartTLSTests`` (``BaseStartTLS``) with
  ``new_loop()`` returning a backend loop instead of asyncio's ``SelectorEventLoop``.
"""

from __future__ import annotations

import test.test_asyncio.test_sslproto as std

from ferro_conformance import backend

B = backend.active()


class SslProtoHandshakeTests(std.SslProtoHandshakeTests):
    """The stdlib class as-is: it runs on the backend loop through the policy."""


class FerroStartTLSTests(std.SelectorStartTLSTests):
    """start_tls() upgrades, SSL servers and clients, on a backend loop."""

    def new_loop(self):
        return B.new_event_loop()
