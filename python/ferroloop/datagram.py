"""ferroloop's datagram (UDP) transport: asyncio's ``_SelectorDatagramTransport``
with native per-datagram paths.

Closing, aborting, error reporting, the write buffer and its flow control are the
stdlib's code. The reader the loop runs when the socket is readable
(``_read_ready``) and ``sendto`` are a native ``DatagramPump``: one ``recvfrom``
into a shared buffer with the address tuple built natively (IPv4/IPv6), and the
stdlib's send-or-queue logic without a Python frame.
"""

from __future__ import annotations

import sys
from asyncio import selector_events

from ._ferroloop import DatagramPump

__all__ = ("DatagramTransport",)


def _kept_by_pump(index: int) -> property:
    """A transport attribute stored on the native pump, which reads it per datagram."""

    def get(self):
        return self._pump._state(index)

    def put(self, value):
        self._pump._set_state(index, value)

    return property(get, put)


class DatagramTransport(selector_events._SelectorDatagramTransport):
    """A UDP (or other datagram socket) transport driven by the native pump."""

    # The stdlib's code reads and writes these as before; the pump reads them
    # without an attribute lookup.
    _protocol = _kept_by_pump(0)
    _conn_lost = _kept_by_pump(1)
    _closing = _kept_by_pump(2)
    _buffer = _kept_by_pump(3)

    def __init__(self, loop, sock, protocol, address=None, waiter=None, extra=None):
        pump = DatagramPump(self, sock, sock.fileno(), int(sock.family))
        # Instance attributes shadow the stdlib's methods of the same names: the
        # reader the stdlib's __init__ registers, and ``transport.sendto``.
        self._pump = pump
        self._read_ready = pump
        self.sendto = pump.sendto
        super().__init__(loop, sock, protocol, address, waiter, extra)
        pump._configure(
            self._address,
            bool(self._extra["peername"]),
            sys.version_info < (3, 12),  # 3.12 sends empty datagrams
            getattr(self, "_header_size", 0),  # 3.12 counts a header per queued datagram
        )

    def _call_connection_lost(self, exc):
        try:
            super()._call_connection_lost(exc)
        finally:
            # Once lost, the stdlib's own methods answer (and nothing keeps the
            # transport in a reference cycle with its pump).
            del self._read_ready, self.sendto
            self._pump._detach()
