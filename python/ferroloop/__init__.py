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
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from . import _graph, _views  # noqa: F401  (3.14 call graphs; the isinstance views)
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


def _installed_version() -> str:
    """The version of the installed distribution (written once, in Cargo.toml)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ferroloop")
    except PackageNotFoundError:  # imported from a source tree that was never built
        return "0+unknown"


__version__ = _installed_version()

_T = TypeVar("_T")

#: The newest Python whose asyncio ferroloop was written against (3.11-3.13 are run
#: in CI; 3.14 is written from its source). Newer ones get a warning at import: the
#: stdlib code ferroloop reuses changes with every minor release.
_NEWEST_KNOWN_PYTHON = (3, 14)

if _sys.version_info[:2] > _NEWEST_KNOWN_PYTHON:
    import warnings as _warnings

    _warnings.warn(
        f"ferroloop {__version__} has not been checked against Python "
        f"{_sys.version_info[0]}.{_sys.version_info[1]}'s asyncio; please report problems",
        RuntimeWarning,
        stacklevel=2,
    )


def new_event_loop() -> Loop:
    """Return a new ferroloop event loop."""
    return Loop()


if _sys.version_info >= (3, 14):
    # 3.14 deprecates asyncio's policy system (removed in 3.16): the public
    # `asyncio.DefaultEventLoopPolicy` and `set_event_loop_policy` warn, so ferroloop
    # uses the private names the stdlib itself uses.
    from asyncio.events import _set_event_loop_policy
    from asyncio.unix_events import _DefaultEventLoopPolicy as _BasePolicy
else:
    from asyncio import set_event_loop_policy as _set_event_loop_policy

    _BasePolicy = _asyncio.DefaultEventLoopPolicy


class EventLoopPolicy(_BasePolicy):
    """An asyncio event-loop policy whose loops are ferroloop loops.

    Policies are deprecated from Python 3.14 (removed in 3.16); there, prefer
    ``ferroloop.run(main())`` or ``asyncio.run(main(), loop_factory=ferroloop.new_event_loop)``.
    """

    def _loop_factory(self) -> Loop:  # type: ignore[override]
        return new_event_loop()

    def __repr__(self) -> str:
        return f"<{self.__class__.__module__}.{self.__class__.__name__} object at {id(self):#x}>"


def install() -> None:
    """Make ferroloop the loop that asyncio creates from now on.

    On Python 3.14+, where asyncio's policies are deprecated, this warns once with a
    DeprecationWarning (as ``uvloop.install()`` does from 3.12) and installs the policy
    without asyncio's own second warning.
    """
    if _sys.version_info >= (3, 14):
        import warnings

        warnings.warn(
            "ferroloop.install() relies on asyncio's event loop policies, deprecated "
            "in Python 3.14; use ferroloop.run(main()) or "
            "asyncio.run(main(), loop_factory=ferroloop.new_event_loop)",
            DeprecationWarning,
            stacklevel=2,
        )
    _set_event_loop_policy(EventLoopPolicy())


def _checked_factory(loop_factory: Callable[[], Any]) -> Callable[[], Any]:
    """``loop_factory`` that refuses to make anything but a ferroloop loop."""

    def factory():
        loop = loop_factory()
        if not isinstance(loop, Loop):
            close = getattr(loop, "close", None)
            if close is not None:
                close()
            raise TypeError("ferroloop.run() uses a non-ferroloop event loop")
        return loop

    return factory


def run(
    main: Coroutine[Any, Any, _T] | Awaitable[_T],
    *,
    loop_factory: Callable[[], Loop] | None = new_event_loop,
    debug: bool | None = None,
    **run_kwargs: Any,
) -> _T:
    """Run a coroutine on a new ferroloop loop, the way asyncio.run does.

    ``loop_factory`` (like uvloop.run's) makes the loop; it must return a
    ``ferroloop.Loop`` (or a subclass), else TypeError. Other keyword arguments go to
    ``asyncio.run`` (3.12+) or ``asyncio.Runner`` (3.11).
    """
    if _asyncio._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    if loop_factory is None or loop_factory is new_event_loop:
        factory = new_event_loop
    else:
        factory = _checked_factory(loop_factory)
    if _sys.version_info >= (3, 12):
        return _asyncio.run(main, debug=debug, loop_factory=factory, **run_kwargs)
    with _asyncio.Runner(debug=debug, loop_factory=factory, **run_kwargs) as runner:
        return runner.run(main)
