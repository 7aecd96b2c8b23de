"""Python 3.14's ``asyncio.graph`` on native futures and tasks.

``capture_call_graph`` walks ``future._asyncio_awaited_by``. Native tasks record
themselves on the native futures they await (``src/call_graph.rs``); the stdlib's
``gather``, ``shield`` and ``TaskGroup`` record edges with
``asyncio.futures.future_add_to_awaited_by``, whose C version only knows asyncio's
own C futures, so on 3.14 those two functions are wrapped to reach native futures
too. Written from CPython 3.14's ``Lib/asyncio``; CI here has no 3.14 to run it on.
"""

from __future__ import annotations

import sys
from asyncio import futures, tasks

from ._ferroloop import Future, _set_call_graph_tracking

_installed = False


def _wrap(original, method_name):
    def wrapper(fut, waiter, /):
        if isinstance(fut, Future):
            getattr(fut, method_name)(waiter)
        else:
            original(fut, waiter)

    wrapper.__name__ = original.__name__
    wrapper.__qualname__ = original.__qualname__
    wrapper.__doc__ = original.__doc__
    return wrapper


def enable() -> None:
    """Record await edges on native futures and route the stdlib's edge helpers to
    them (done at import on 3.14; tests call it on older versions)."""
    global _installed
    _set_call_graph_tracking(True)
    if _installed:
        return
    _installed = True
    for name, method in (
        ("future_add_to_awaited_by", "_awaited_by_add"),
        ("future_discard_from_awaited_by", "_awaited_by_discard"),
    ):
        original = getattr(futures, name, None)
        if original is None:
            continue
        wrapped = _wrap(original, method)
        setattr(futures, name, wrapped)
        if getattr(tasks, name, None) is original:
            setattr(tasks, name, wrapped)


if sys.version_info >= (3, 14):
    enable()
