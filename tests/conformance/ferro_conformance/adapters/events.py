"""test_events: the stdlib's event-loop tests, on backend loops.

Which of the tests below run is decided by :mod:`ferro_conformance.suites` (everything
but ``DEFERRED_TESTS["test_events"]``).

* ``FerroEventLoopTests`` is built like the stdlib's ``EPollEventLoopTests``:
  ``UnixEventLoopTestsMixin`` (``EventLoopTestsMixin`` plus a ``SafeChildWatcher``, i.e.
  a SIGCHLD handler, attached to the loop) and ``SubprocessTestsMixin``, with
  ``create_event_loop()`` returning a backend loop.  So it covers the loop's TCP, UDP
  and Unix sockets, fd readers/writers, pipes, ptys, subprocesses, signals, SSL and
  sendfile tests.
* ``FerroHandleTests``/``FerroTimerTests`` run ``HandleTests``/``TimerTests`` with
  ``asyncio.Handle``/``asyncio.TimerHandle`` patched to the backend's classes.
* ``FerroPolicyTests`` runs ``PolicyTests`` with ``asyncio.DefaultEventLoopPolicy``
  patched to the backend's policy.
* ``Ferro{C,Py}GetEventLoopTests`` run ``GetEventLoopTestsMixin`` (C and pure-Python
  ``get_event_loop``/``get_running_loop``) on backend loops, with the same policy patch
  and an inert child watcher instead of ``SafeChildWatcher``.
"""

from __future__ import annotations

import asyncio
import unittest

import test.test_asyncio.test_events as std
from test.test_asyncio import utils as test_utils

from ferro_conformance import backend
from ferro_conformance.adapters import InertChildWatcher, PatchMixin

B = backend.active()


class FerroEventLoopTests(
    std.UnixEventLoopTestsMixin, std.SubprocessTestsMixin, test_utils.TestCase
):
    """The Unix event-loop and subprocess tests on a backend loop."""

    def create_event_loop(self):
        return B.new_event_loop()


def _backend_class(name: str) -> type:
    """The backend's ``name`` class, or one whose construction says it is missing."""
    cls = getattr(B, name)
    if cls is not None:
        return cls

    def refuse(*args, **kwargs):
        raise TypeError(f"backend {B.name} exports no {name} class")

    return type(name, (), {"__init__": refuse})


class _BackendHandleMixin(PatchMixin):
    """Patch ``asyncio.Handle``/``TimerHandle`` to the backend's classes."""

    patches = (
        (asyncio, "Handle", _backend_class("Handle")),
        (asyncio, "TimerHandle", _backend_class("TimerHandle")),
    )


class FerroHandleTests(_BackendHandleMixin, std.HandleTests):
    """``asyncio.Handle`` semantics and reprs, on the backend's ``Handle``."""


class FerroTimerTests(_BackendHandleMixin, std.TimerTests):
    """``asyncio.TimerHandle`` semantics and reprs, on the backend's ``TimerHandle``."""


_POLICY_PATCH = ((asyncio, "DefaultEventLoopPolicy", B.EventLoopPolicy),)
_WATCHER_PATCH = ((asyncio, "SafeChildWatcher", InertChildWatcher),)


class FerroPolicyTests(PatchMixin, std.PolicyTests):
    """Policy behaviour, with the backend's policy as the default policy class."""

    patches = _POLICY_PATCH


class FerroCGetEventLoopTests(PatchMixin, std.GetEventLoopTestsMixin, unittest.TestCase):
    """get_event_loop()/get_running_loop() through the C accelerators."""

    patches = _POLICY_PATCH + _WATCHER_PATCH
    _get_running_loop_impl = std.events._c__get_running_loop
    _set_running_loop_impl = std.events._c__set_running_loop
    get_running_loop_impl = std.events._c_get_running_loop
    get_event_loop_impl = std.events._c_get_event_loop


class FerroPyGetEventLoopTests(PatchMixin, std.GetEventLoopTestsMixin, unittest.TestCase):
    """get_event_loop()/get_running_loop() through the pure-Python implementations."""

    patches = _POLICY_PATCH + _WATCHER_PATCH
    _get_running_loop_impl = std.events._py__get_running_loop
    _set_running_loop_impl = std.events._py__set_running_loop
    get_running_loop_impl = std.events._py_get_running_loop
    get_event_loop_impl = std.events._py_get_event_loop
