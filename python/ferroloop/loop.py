"""``ferroloop.Loop``: the native event loop plus asyncio's long tail.

The hot paths (scheduling, timers, polling, futures, tasks) live in Rust in
``ferroloop._ferroloop.EventLoop``. The methods here are the ones whose cost
does not matter per call (running, closing, exception handling, async
generator and executor bookkeeping). Where the standard library's own
implementation only relies on the loop's public surface, it is reused as is,
so the behaviour (messages, warnings, logging) is the stdlib's by construction.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import selectors
import socket
import sys
import threading
import time
import warnings
import weakref
from asyncio import base_events, coroutines, events, futures, selector_events, unix_events

from ._ferroloop import (
    EventLoop,
    _after_fork_child,
    _shutdown_all_pools,
    _sock_recv_now,
    _sock_send_now,
)
from .datagram import DatagramTransport
from .sslproto import start_tls
from .transports import SocketTransport, make_ssl_transport

__all__ = ("Loop",)

_Base = base_events.BaseEventLoop
_Selector = selector_events.BaseSelectorEventLoop
_Unix = unix_events._UnixSelectorEventLoop

# Network, pipe, subprocess and signal methods of the stdlib's Unix loop that
# only rely on the loop's public surface and on `_add_reader`/`_add_writer`/
# `_remove_reader`/`_remove_writer`/`_add_callback` (native here). Borrowed as
# plain functions: the protocol/transport semantics are then the stdlib's.
_BORROWED = {
    _Base: (
        "create_connection",
        "_connect_sock",
        "_create_connection_transport",
        "create_datagram_endpoint",
        "_ensure_resolved",
        "_create_server_getaddrinfo",
        "create_server",
        "connect_accepted_socket",
        "sock_sendfile",
        "_sock_sendfile_fallback",
        "_check_sendfile_params",
        "sendfile",
        "_sendfile_fallback",
        "connect_read_pipe",
        "connect_write_pipe",
        "subprocess_shell",
        "subprocess_exec",
        "_log_subprocess",
    ),
    _Selector: (
        "_make_self_pipe",
        "_close_self_pipe",
        "_read_from_self",
        "_start_serving",
        "_accept_connection",
        "_accept_connection2",
        "add_reader",
        "remove_reader",
        "add_writer",
        "remove_writer",
        "sock_recv",
        "_sock_read_done",
        "_sock_recv",
        "sock_recv_into",
        "_sock_recv_into",
        "sock_recvfrom",
        "_sock_recvfrom",
        "sock_recvfrom_into",
        "_sock_recvfrom_into",
        "_sock_sendall",
        "sock_sendto",
        "_sock_sendto",
        "sock_connect",
        "_sock_connect",
        "_sock_write_done",
        "_sock_connect_cb",
        "sock_accept",
        "_sock_accept",
        "_sendfile_native",
    ),
    _Unix: (
        "_process_self_data",
        "_handle_signal",
        "remove_signal_handler",
        "_check_signal",
        "_make_read_pipe_transport",
        "_make_write_pipe_transport",
        "_make_subprocess_transport",
        "_child_watcher_callback",
        "create_unix_connection",
        "create_unix_server",
        "_sock_sendfile_native",
        "_sock_sendfile_native_impl",
        "_sock_sendfile_update_filepos",
        "_sock_add_cancellation_callback",
    ),
}


def _interpreter_finalizing() -> bool:
    """Whether the interpreter is shutting down (for `close()`).

    Read through ``unix_events.sys``, where the stdlib's tests fake a shutdown. A loop
    left unclosed may be collected after the modules' globals were cleared, when that
    name (or this module's) is already None: that is a shutdown too.
    """
    try:
        return bool(unix_events.sys.is_finalizing())
    except AttributeError:
        return True


class _SelectorView:
    """The part of ``loop._selector`` asyncio's transports read (``get_key``), backed
    by the native fd registrations."""

    def __init__(self, loop: Loop) -> None:
        self._loop = weakref.ref(loop)

    def get_key(self, fileobj):
        loop = self._loop()
        key = None if loop is None else loop._io_key(fileobj)
        if key is None:
            raise KeyError(f"{fileobj!r} is not registered")
        mask, reader, writer = key
        events_mask = (selectors.EVENT_READ if mask & 1 else 0) | (
            selectors.EVENT_WRITE if mask & 2 else 0
        )
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        return selectors.SelectorKey(fileobj, fd, events_mask, (reader, writer))


class Loop(EventLoop, asyncio.AbstractEventLoop):
    """An asyncio event loop implemented in Rust."""

    def __init__(self) -> None:
        self._exception_handler = None
        self._current_handle = None
        self._default_executor = None
        self._executor_shutdown_called = False
        self._asyncgens: weakref.WeakSet = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        self._clock_resolution = time.get_clock_info("monotonic").resolution
        self._transports: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._signal_handlers: dict = {}
        self._internal_fds = 0
        self._ssock = self._csock = None
        self._selector = _SelectorView(self)
        # Listening Unix sockets whose path create_unix_server (3.13+,
        # cleanup_socket=True) unlinks when the server stops: socket -> st_ino.
        self._unix_server_sockets: dict = {}
        # 3.11: pidfds of the children being watched (pidfd -> pid), closed by close().
        self._child_pidfds: dict = {}
        self.set_debug(coroutines._is_debug_mode())

    # -- running and stopping -------------------------------------------------

    def run_forever(self) -> None:
        """Run until ``stop()`` is called."""
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        old_agen_hooks = sys.get_asyncgen_hooks()
        try:
            self._thread_id = threading.get_ident()
            sys.set_asyncgen_hooks(
                firstiter=self._asyncgen_firstiter_hook,
                finalizer=self._asyncgen_finalizer_hook,
            )
            events._set_running_loop(self)
            self._run_forever_native()
        finally:
            self._stopping = False
            self._thread_id = None
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_agen_hooks)

    def close(self) -> None:
        """Close the loop: drop pending callbacks, shut the default executor down."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self._closed:
            return
        if self._debug:
            base_events.logger.debug("Close %r", self)
        if self._ssock is not None:
            self._close_self_pipe()
        self._close_native()
        for pidfd in self._child_pidfds:
            os.close(pidfd)
        self._child_pidfds.clear()
        self._pool_shutdown(False)
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)
        self._selector = None
        if not _interpreter_finalizing():
            for sig in list(self._signal_handlers):
                self.remove_signal_handler(sig)
        elif self._signal_handlers and warnings is not None:
            warnings.warn(
                f"Closing the loop {self!r} on interpreter shutdown stage, "
                "skipping signal handlers removal",
                ResourceWarning,
                source=self,
            )
            self._signal_handlers.clear()

    # -- executor -----------------------------------------------------------------

    def run_in_executor(self, executor, func, *args):
        """Run ``func(*args)`` in ``executor`` (default: ferroloop's native thread pool)."""
        self._check_closed()
        if self._debug:
            self._check_callback(func, "run_in_executor")
        if executor is None:
            executor = self._default_executor
            self._check_default_executor()
            if executor is None:
                return self._run_in_native_pool(func, args)
        return futures.wrap_future(executor.submit(func, *args), loop=self)

    async def shutdown_default_executor(self, timeout=None):
        """Wait for the default executor's calls to finish and join its threads."""
        self._executor_shutdown_called = True
        if self._default_executor is not None:
            if sys.version_info >= (3, 12):
                await _Base.shutdown_default_executor(self, timeout)
            else:
                await _Base.shutdown_default_executor(self)
        if not self._pool_started():
            return
        future = self.create_future()
        thread = threading.Thread(target=self._join_native_pool, args=(future,))
        thread.start()
        try:
            if timeout is None:
                await future
            else:
                await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            warnings.warn(
                f"The executor did not finishing joining its threads within {timeout} seconds.",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            thread.join()

    def _join_native_pool(self, future) -> None:
        try:
            self._pool_shutdown(True)
            if not self.is_closed():
                self.call_soon_threadsafe(futures._set_result_unless_cancelled, future, None)
        except Exception as ex:  # noqa: BLE001 - handed to the waiting future
            if not self.is_closed() and not future.cancelled():
                self.call_soon_threadsafe(future.set_exception, ex)

    # -- transports -------------------------------------------------------------

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
        return SocketTransport(self, sock, protocol, waiter, extra, server)

    _make_ssl_transport = make_ssl_transport

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        return DatagramTransport(self, sock, protocol, address, waiter, extra)

    start_tls = start_tls

    # -- low-level socket operations --------------------------------------------

    def _ensure_fd_no_transport(self, fd):
        """Raise if a transport uses ``fd`` (the stdlib's check, for every ``sock_*``
        wait and ``add_reader``/``add_writer``).

        The stdlib's reads ``self._transports[fd]`` and catches the KeyError that a
        socket with no transport -- nearly always -- raises: an exception per wait.
        An int that is not a key of the weak dictionary's table has no transport;
        anything else gets the stdlib's code, its errors and its messages.
        """
        if type(fd) is int and fd not in self._transports.data:
            return
        self._stdlib_ensure_fd_no_transport(fd)

    _stdlib_ensure_fd_no_transport = _Selector._ensure_fd_no_transport

    async def sock_recv(self, sock, n):
        """Receive up to ``n`` bytes from the non-blocking socket ``sock``.

        A plain non-blocking ``socket.socket`` is read natively (no exception when
        nothing is waiting, a native reader while waiting); any other socket takes
        the stdlib's path, with its checks and errors.
        """
        if type(sock) is not socket.socket or type(n) is not int or sock.gettimeout() != 0:
            return await _Selector.sock_recv(self, sock, n)
        fd = sock.fileno()
        data = _sock_recv_now(fd, n)
        if data is not None:
            return data
        fut = self.create_future()
        self._ensure_fd_no_transport(fd)
        self._sock_recv_wait(fut, sock, fd, n)
        return await fut

    async def sock_sendall(self, sock, data):
        """Send all of ``data`` on the non-blocking socket ``sock``.

        ``bytes`` on a plain non-blocking ``socket.socket`` are sent natively (no
        argument parsing, no exception when the socket is full); what does not fit
        waits for the socket as in the stdlib. Any other socket or data takes the
        stdlib's path, with its checks and errors.
        """
        if type(sock) is not socket.socket or type(data) is not bytes or sock.gettimeout() != 0:
            return await _Selector.sock_sendall(self, sock, data)
        fd = sock.fileno()
        n = _sock_send_now(fd, data)
        if n == len(data):
            return
        fut = self.create_future()
        self._ensure_fd_no_transport(fd)
        handle = self._add_writer(fd, self._sock_sendall, fut, sock, memoryview(data), [n])
        fut.add_done_callback(functools.partial(self._sock_write_done, fd, handle=handle))
        return await fut

    # -- subprocesses -------------------------------------------------------------

    if sys.version_info < (3, 12):

        async def _make_subprocess_transport(
            self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra=None, **kwargs
        ):
            """Start a child; on 3.11 watch it with a pidfd when no child watcher was chosen.

            3.11's policy would create a ``ThreadedChildWatcher`` (a thread blocked in
            ``waitpid`` per child); 3.12 made the pidfd watcher the default where the
            kernel has ``pidfd_open``, and so does ferroloop on 3.11. A watcher set or
            created through the policy (``set_child_watcher``/``get_child_watcher``)
            is used as the stdlib would.
            """
            policy = events.get_event_loop_policy()
            if (
                not _CAN_USE_PIDFD
                or not isinstance(policy, unix_events._UnixDefaultEventLoopPolicy)
                or policy._watcher is not None
            ):
                return await _Unix._make_subprocess_transport(
                    self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra, **kwargs
                )
            waiter = self.create_future()
            transp = unix_events._UnixSubprocessTransport(
                self,
                protocol,
                args,
                shell,
                stdin,
                stdout,
                stderr,
                bufsize,
                waiter=waiter,
                extra=extra,
                **kwargs,
            )
            self._watch_child_pidfd(transp.get_pid(), transp)
            try:
                await waiter
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                transp.close()
                await transp._wait()
                raise
            return transp

        def _watch_child_pidfd(self, pid, transp):
            """Learn of the child's exit through a pidfd reader (3.12's default watcher)."""
            pidfd = os.pidfd_open(pid)
            self._child_pidfds[pidfd] = pid
            self._add_reader(pidfd, self._child_pidfd_ready, pidfd, pid, transp)

        def _child_pidfd_ready(self, pidfd, pid, transp):
            """The child exited: reap it and report its exit code to the transport."""
            self._remove_reader(pidfd)
            del self._child_pidfds[pidfd]
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                # Reaped elsewhere (a waitpid of the program's own): as asyncio.
                returncode = 255
                base_events.logger.warning(
                    "child process pid %d exit status already read:  will report returncode 255",
                    pid,
                )
            else:
                returncode = os.waitstatus_to_exitcode(status)
            finally:
                os.close(pidfd)
            self._child_watcher_callback(pid, returncode, transp)

    # -- servers ------------------------------------------------------------------

    def _stop_serving(self, sock) -> None:
        """Stop accepting on ``sock`` and close it; a Unix socket registered by
        ``create_unix_server(cleanup_socket=True)`` (3.13+) has its path unlinked
        if the path still names the same inode."""
        ino = self._unix_server_sockets.pop(sock, None)
        path = sock.getsockname() if ino is not None else None
        self._remove_reader(sock.fileno())
        sock.close()
        if path is None:
            return
        try:
            if os.stat(path).st_ino == ino:
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            base_events.logger.error("Unable to clean up listening UNIX socket %r: %r", path, err)

    # -- signals ----------------------------------------------------------------

    def add_signal_handler(self, sig, callback, *args):
        """Run ``callback(*args)`` on the loop when signal ``sig`` arrives (main thread only)."""
        if coroutines.iscoroutine(callback) or coroutines.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        if self._ssock is None:
            # The wake-up socket pair exists only once signals are used, so a
            # loop without them polls nothing but its own waker.
            self._make_self_pipe()
        return _Unix.add_signal_handler(self, sig, callback, *args)

    def _add_callback_signalsafe(self, handle) -> None:
        self._add_callback(handle)
        self._write_to_self()

    def set_debug(self, enabled: bool) -> None:
        """Switch debug mode (slow-callback warnings, thread checks, tracebacks)."""
        EventLoop.set_debug(self, enabled)
        if self.is_running():
            self.call_soon_threadsafe(self._set_coroutine_origin_tracking, enabled)

    # -- reused from asyncio.BaseEventLoop (they only use the public surface) --

    __repr__ = _Base.__repr__
    __del__ = _Base.__del__
    _check_closed = _Base._check_closed
    _check_running = _Base._check_running
    _check_callback = _Base._check_callback
    _check_thread = _Base._check_thread
    _check_default_executor = _Base._check_default_executor
    _set_coroutine_origin_tracking = _Base._set_coroutine_origin_tracking
    run_until_complete = _Base.run_until_complete
    shutdown_asyncgens = _Base.shutdown_asyncgens
    _do_shutdown = _Base._do_shutdown
    _asyncgen_finalizer_hook = _Base._asyncgen_finalizer_hook
    _asyncgen_firstiter_hook = _Base._asyncgen_firstiter_hook
    set_default_executor = _Base.set_default_executor
    _getaddrinfo_debug = _Base._getaddrinfo_debug
    getaddrinfo = _Base.getaddrinfo
    getnameinfo = _Base.getnameinfo
    get_exception_handler = _Base.get_exception_handler
    set_exception_handler = _Base.set_exception_handler
    default_exception_handler = _Base.default_exception_handler
    call_exception_handler = _Base.call_exception_handler


def _can_use_pidfd() -> bool:
    """Whether this kernel has ``pidfd_open`` (Linux 5.3+) and it is allowed here."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError:
        return False
    os.close(fd)
    return True


#: Whether 3.11's subprocesses are watched with pidfds (see `_make_subprocess_transport`).
_CAN_USE_PIDFD = sys.version_info < (3, 12) and _can_use_pidfd()

# Worker threads must not outlive the interpreter, nor be assumed alive after fork.
atexit.register(_shutdown_all_pools)
os.register_at_fork(after_in_child=_after_fork_child)

for _source, _names in _BORROWED.items():
    for _name in _names:
        if hasattr(_source, _name) and _name not in Loop.__dict__:
            setattr(Loop, _name, getattr(_source, _name))
del _source, _names, _name
