"""ferroloop's socket transport: the native ``StreamTransport`` (reads, writes,
flow control) plus the rare paths (set-up, close, abort, errors, EOF) in Python,
with the semantics of asyncio's ``_SelectorSocketTransport``."""

from __future__ import annotations

import contextvars
import socket
import sys
import warnings
from asyncio import base_events, constants, futures, protocols, transports, trsock
from asyncio.log import logger

from ._ferroloop import StreamTransport
from .sslproto import SSLProtocol

__all__ = ("SocketTransport", "make_ssl_transport")


if sys.version_info >= (3, 13):
    # 3.13's Server keeps a WeakSet of its client transports (close_clients(),
    # abort_clients()): _attach/_detach take the transport.

    def _server_attach(server, transport) -> None:
        server._attach(transport)

    def _server_detach(server, transport) -> None:
        server._detach(transport)

else:

    def _server_attach(server, transport) -> None:
        server._attach()

    def _server_detach(server, transport) -> None:
        server._detach()


class _SocketTransportClass(transports._FlowControlMixin, transports.Transport):
    """What ``transport.__class__`` reports, so that ``isinstance(transport,
    asyncio.Transport)`` (and the stdlib's ``_FlowControlMixin`` check in the
    sendfile fallback) holds although the native base class cannot inherit from
    asyncio's Python classes (their ``__slots__`` clash with the native layout).
    Never instantiated."""

    __slots__ = ()


class SocketTransport(StreamTransport):
    """A TCP or Unix stream transport driven natively by the loop."""

    @property
    def __class__(self):
        cls = type(self)
        return _SocketTransportClass if cls is SocketTransport else cls

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE
    max_size = 256 * 1024

    def __init__(self, loop, sock, protocol, waiter=None, extra=None, server=None):
        self._extra = {} if extra is None else extra
        self._extra["socket"] = trsock.TransportSocket(sock)
        try:
            self._extra["sockname"] = sock.getsockname()
        except OSError:
            self._extra["sockname"] = None
        if "peername" not in self._extra:
            try:
                self._extra["peername"] = sock.getpeername()
            except OSError:
                self._extra["peername"] = None
        self._loop = loop
        self._sock = sock
        # The protocol's callbacks run in a copy of the creator's context, as on
        # asyncio (whose reader handle copies it); connection_lost too, as on uvloop.
        self._context = contextvars.copy_context()
        self._native_init(loop, sock.fileno(), self._context)
        self._protocol_connected = False
        self.set_protocol(protocol)
        self._server = server
        self._empty_waiter = None
        if server is not None:
            _server_attach(server, self)
        loop._transports[self._sock_fd] = self
        base_events._set_nodelay(sock)
        loop.call_soon(self._protocol.connection_made, self)
        # Reading starts only once connection_made() has run.
        loop.call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        info = [self.__class__.__name__]
        if self._sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        if self._loop is not None and not self._loop.is_closed():
            info.append("read=polling" if self.is_reading() else "read=idle")
            bufsize = self.get_write_buffer_size()
            state = "polling" if bufsize else "idle"
            info.append(f"write=<{state}, bufsize={bufsize}>")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn=warnings.warn):
        if self._sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._native_detach()
            self._sock.close()

    def _start_reading(self) -> None:
        if self.is_reading() and self._sock is not None:
            self._set_reading(True)

    def get_extra_info(self, name, default=None):
        """Information about the connection ('socket', 'sockname', 'peername', ...)."""
        return self._extra.get(name, default)

    def set_protocol(self, protocol) -> None:
        """Switch the protocol that receives the data."""
        self._native_set_protocol(protocol, isinstance(protocol, protocols.BufferedProtocol))
        self._protocol = protocol
        self._protocol_connected = True

    def get_protocol(self):
        """The current protocol."""
        return self._protocol

    def is_closing(self) -> bool:
        """Whether the transport is closing or closed."""
        return self._closing

    def can_write_eof(self) -> bool:
        """Stream sockets can be half-closed."""
        return True

    def write_eof(self) -> None:
        """Close the write side once the buffer is flushed."""
        if self._closing or self._eof:
            return
        self._eof = True
        if not self.get_write_buffer_size():
            self._sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Close after the buffered data is flushed; connection_lost(None) follows."""
        if self._closing:
            return
        self._closing = True
        self._set_reading(False)
        if not self.get_write_buffer_size():
            self._conn_lost += 1
            self._discard_write_buffer()
            self._loop.call_soon(self._call_connection_lost, None, context=self._context)

    def abort(self) -> None:
        """Close at once, dropping buffered data."""
        self._force_close(None)

    def _force_close(self, exc) -> None:
        if self._conn_lost:
            return
        if self.get_write_buffer_size():
            self._discard_write_buffer()
        if not self._closing:
            self._closing = True
            self._set_reading(False)
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc, context=self._context)

    def _fatal_error(self, exc, message="Fatal error on transport") -> None:
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        self._force_close(exc)

    def _call_connection_lost(self, exc) -> None:
        try:
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            self._native_detach()
            self._sock.close()
            self._sock = None
            self._protocol = None
            self._loop = None
            server = self._server
            if server is not None:
                _server_detach(server, self)
                self._server = None

    def _read_ready__on_eof(self) -> None:
        if self._loop.get_debug():
            logger.debug("%r received EOF", self)
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # noqa: BLE001 - asyncio's transport semantics
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if keep_open:
            # Half-closed: stop watching for reads, keep the write side.
            self._set_reading(False)
        else:
            self.close()

    def _read_ready__get_buffer(self) -> bool:
        if self._conn_lost:
            return False
        try:
            buf = self._protocol.get_buffer(-1)
            if not len(buf):
                raise RuntimeError("get_buffer() returned an empty buffer")
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # noqa: BLE001 - asyncio's transport semantics
            self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
            return False
        try:
            nbytes = self._sock.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            return False
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # noqa: BLE001 - asyncio's transport semantics
            self._fatal_error(exc, "Fatal read error on socket transport")
            return False
        if not nbytes:
            self._read_ready__on_eof()
            return False
        try:
            self._protocol.buffer_updated(nbytes)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # noqa: BLE001 - asyncio's transport semantics
            self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")
            return False
        # A full buffer means more may be waiting: the native side re-arms the fd.
        return nbytes == len(buf)

    def _make_empty_waiter(self):
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        self._empty_waiter = self._loop.create_future()
        self._sendfile_waiting = True
        if not self.get_write_buffer_size():
            self._empty_waiter.set_result(None)
        return self._empty_waiter

    def _reset_empty_waiter(self) -> None:
        self._empty_waiter = None
        self._sendfile_waiting = False

    def _wake_empty_waiter(self, exc) -> None:
        waiter = self._empty_waiter
        if waiter is None or waiter.done():
            return
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)


def make_ssl_transport(
    loop,
    rawsock,
    protocol,
    sslcontext,
    waiter=None,
    *,
    server_side=False,
    server_hostname=None,
    extra=None,
    server=None,
    ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
    ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
):
    """ferroloop's SSLProtocol (asyncio's, with a native record pump) over a
    native socket transport."""
    ssl_protocol = SSLProtocol(
        loop,
        protocol,
        sslcontext,
        waiter,
        server_side,
        server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
    SocketTransport(loop, rawsock, ssl_protocol, extra=extra, server=server)
    return ssl_protocol._app_transport


_SocketTransportClass.__name__ = _SocketTransportClass.__qualname__ = "SocketTransport"
_SocketTransportClass.__module__ = SocketTransport.__module__
