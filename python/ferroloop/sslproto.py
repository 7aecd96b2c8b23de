"""ferroloop's TLS protocol: asyncio's ``sslproto.SSLProtocol`` with a native
record pump.

The state machine (handshake, shutdown, timeouts, errors, flow-control
decisions) is the stdlib's own code. ``TlsProtocolCore``, the first base, holds
the state the per-record paths read as native fields under the stdlib's
attribute names and overrides those paths (``_do_read``, ``_do_write``,
``_process_outgoing``, ``_control_ssl_reading`` and the buffer sizes) with
native code of the same semantics. The native socket transport feeds received
bytes to it directly, and the app transport's ``write`` goes straight to it.
"""

from __future__ import annotations

import types
from asyncio import base_events, sslproto

from ._ferroloop import TlsProtocolCore

__all__ = ("SSLProtocol", "start_tls")


def _with_globals(func, **overrides):
    """``func`` with some of the global names it reads bound to other objects."""
    namespace = dict(func.__globals__)
    namespace.update(overrides)
    clone = types.FunctionType(
        func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__
    )
    clone.__kwdefaults__ = func.__kwdefaults__
    clone.__qualname__ = func.__qualname__
    clone.__doc__ = func.__doc__
    return clone


class _SSLProtocolTransport(sslproto._SSLProtocolTransport):
    """asyncio's app-side TLS transport; ``write`` enters the native pump."""

    def __init__(self, loop, ssl_protocol):
        super().__init__(loop, ssl_protocol)
        # The pump's bound method as an instance attribute: ``transport.write(data)``
        # then runs no Python frame (the method below is the same, for class calls).
        self.write = ssl_protocol._write_app

    def write(self, data):
        """Encrypt and send ``data`` (buffered until the handshake completes)."""
        self._ssl_protocol._write_app(data)

    def close(self):
        """Close as asyncio does (which drops ``_ssl_protocol``), and drop the bound
        ``write`` with it so that the transport no longer keeps the protocol (and its
        SSLContext) alive."""
        super().close()
        if self._ssl_protocol is None:
            self.__dict__.pop("write", None)


class SSLProtocol(TlsProtocolCore, sslproto.SSLProtocol):
    """asyncio's SSL/TLS protocol (``ssl.MemoryBIO``) with a native record pump."""

    _get_app_transport = _with_globals(
        sslproto.SSLProtocol._get_app_transport, _SSLProtocolTransport=_SSLProtocolTransport
    )


#: ``loop.start_tls``: the stdlib's, creating ferroloop's SSLProtocol.
start_tls = _with_globals(
    base_events.BaseEventLoop.start_tls,
    sslproto=types.SimpleNamespace(SSLProtocol=SSLProtocol),
)
