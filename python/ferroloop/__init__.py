"""ferroloop: a fast, drop-in asyncio event loop written in Rust.

Use it like uvloop::

    import ferroloop
    ferroloop.run(main())                                   # like asyncio.run
    asyncio.set_event_loop_policy(ferroloop.EventLoopPolicy())
    ferroloop.install()                                     # the same, in one call
    asyncio.run(main(), loop_factory=ferroloop.new_event_loop)  # Python 3.12+
"""

from __future__ import annotations

import asyncio as _asyncio
import sys as _sys
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

from . import _views  # noqa: F401  (registers the isinstance views)
from ._ferroloop import Future, Handle, Task, TimerHandle
from .loop import Loop

__all__ = (
    "EventLoopPolicy",
    "Future",
    "Handle",
    "Loop",
    "Task",
    "TimerHandle",
    "install",
    "new_event_loop",
    "run",
)

__version__ = "0.1.0"

_T = TypeVar("_T")


def new_event_loop() -> Loop:
    """Return a new ferroloop event loop."""
    return Loop()


class EventLoopPolicy(_asyncio.DefaultEventLoopPolicy):
    """An asyncio event-loop policy whose loops are ferroloop loops."""

    def _loop_factory(self) -> Loop:  # type: ignore[override]
        return new_event_loop()

    def __repr__(self) -> str:
        return f"<{self.__class__.__module__}.{self.__class__.__name__} object at {id(self):#x}>"


def install() -> None:
    """Make ferroloop the loop that asyncio creates from now on."""
    _asyncio.set_event_loop_policy(EventLoopPolicy())


def run(
    main: Coroutine[Any, Any, _T] | Awaitable[_T],
    *,
    debug: bool | None = None,
    **run_kwargs: Any,
) -> _T:
    """Run a coroutine on a new ferroloop loop, the way asyncio.run does."""
    if _asyncio._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    if _sys.version_info >= (3, 12):
        return _asyncio.run(main, debug=debug, loop_factory=new_event_loop, **run_kwargs)
    with _asyncio.Runner(debug=debug, loop_factory=new_event_loop, **run_kwargs) as runner:
        return runner.run(main)
