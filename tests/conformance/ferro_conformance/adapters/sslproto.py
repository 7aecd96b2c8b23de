"""test_sslproto: asyncio's ``SSLProtocol`` and ``loop.start_tls()`` on a backend loop.

* ``SslProtoHandshakeTests`` is the stdlib class with ``sslproto.SSLProtocol`` (the name
  its test methods construct) bound to the backend's SSL protocol class, and its loop
  from ``asyncio.new_event_loop()``, i.e. a backend loop through the installed policy.
* ``FerroStartTLSTests`` is ``SelectorStartTLSTests`` (``BaseStartTLS``) with
  ``new_loop()`` returning a backend loop instead of asyncio's ``SelectorEventLoop``.
"""

from __future__ import annotations

import types
from unittest import mock

import test.test_asyncio.test_sslproto as std

from ferro_conformance import backend

B = backend.active()


class SslProtoHandshakeTests(std.SslProtoHandshakeTests):
    """The stdlib tests, constructing the backend's SSL protocol class."""

    def setUp(self):
        super().setUp()
        patcher = mock.patch.object(
            std, "sslproto", types.SimpleNamespace(SSLProtocol=B.SSLProtocol)
        )
        patcher.start()
        self.addCleanup(patcher.stop)


class FerroStartTLSTests(std.SelectorStartTLSTests):
    """start_tls() upgrades, SSL servers and clients, on a backend loop."""

    def new_loop(self):
        return B.new_event_loop()
