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
import sys
import threading
import time
import weakref
from asyncio import base_events, coroutines, events

from ._ferroloop import EventLoop

__all__ = ("Loop",)

_Base = base_events.BaseEventLoop


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
        self._close_native()
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)

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
    _asyncgen_finalizer_hook = _Base._asyncgen_finalizer_hook
    _asyncgen_firstiter_hook = _Base._asyncgen_firstiter_hook
    shutdown_default_executor = _Base.shutdown_default_executor
    _do_shutdown = _Base._do_shutdown
    run_in_executor = _Base.run_in_executor
    set_default_executor = _Base.set_default_executor
    _getaddrinfo_debug = _Base._getaddrinfo_debug
    getaddrinfo = _Base.getaddrinfo
    getnameinfo = _Base.getnameinfo
    get_exception_handler = _Base.get_exception_handler
    set_exception_handler = _Base.set_exception_handler
    default_exception_handler = _Base.default_exception_handler
    call_exception_handler = _Base.call_exception_handler
