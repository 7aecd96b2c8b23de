"""The classes ``__class__`` reports for ferroloop's native Future, Task and handles.

A pyo3 class cannot inherit from the C accelerator's ``asyncio.Future`` and
``asyncio.Task``, so ``isinstance(fut, asyncio.Future)`` would be false for
ferroloop's futures. ``isinstance`` also consults ``obj.__class__``; the native
classes report these (never instantiated) subclasses of asyncio's types there,
named like the native ones, so such checks pass as they do on uvloop.
"""

from __future__ import annotations

import asyncio

from ._ferroloop import _set_class_views, _set_handle_views


class Future(asyncio.Future):  # type: ignore[misc]
    """Stands for ``ferroloop.Future`` in ``isinstance`` checks; never instantiated."""

    __slots__ = ()


class Task(asyncio.Task):  # type: ignore[misc]
    """Stands for ``ferroloop.Task`` in ``isinstance`` checks; never instantiated."""

    __slots__ = ()


_set_class_views(Future, Task)


class Handle(asyncio.Handle):
    """Stands for ``ferroloop.Handle`` in ``isinstance`` checks; never instantiated."""

    __slots__ = ()


class TimerHandle(asyncio.TimerHandle):
    """Stands for ``ferroloop.TimerHandle`` in ``isinstance`` checks; never instantiated."""

    __slots__ = ()


_set_handle_views(Handle, TimerHandle)
