"""The implementation a worker process tests: stdlib asyncio or ferroloop.

A worker calls :func:`activate` once, before importing any adapter; adapters then
read :func:`active` at import time and build their test classes from it.  Both
backends expose the same names, so the baseline run and the ferroloop run execute
the very same test classes and produce the very same test ids.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import dataclasses
from collections.abc import Callable

#: Backend names a worker accepts.
NAMES = ("asyncio", "ferroloop")


@dataclasses.dataclass(frozen=True)
class Backend:
    """The classes and factories of one event-loop implementation."""

    name: str
    Future: type
    Task: type
    Loop: type
    new_event_loop: Callable[[], asyncio.AbstractEventLoop]
    EventLoopPolicy: type
    Handle: type | None
    TimerHandle: type | None
    #: The SSL/TLS protocol (``ssl.MemoryBIO``) the loop's TLS transports use.
    SSLProtocol: type


def _asyncio_backend() -> Backend:
    """Stdlib asyncio with its C-accelerated Future and Task (the usual default)."""
    return Backend(
        name="asyncio",
        Future=asyncio.Future,
        Task=asyncio.Task,
        Loop=asyncio.SelectorEventLoop,
        new_event_loop=asyncio.SelectorEventLoop,
        EventLoopPolicy=asyncio.DefaultEventLoopPolicy,
        Handle=asyncio.Handle,
        TimerHandle=asyncio.TimerHandle,
        SSLProtocol=asyncio.sslproto.SSLProtocol,
    )


def _ferroloop_backend() -> Backend:
    """The native classes of ferroloop; ``Handle``/``TimerHandle`` are optional."""
    import ferroloop
    import ferroloop.sslproto

    return Backend(
        name="ferroloop",
        Future=ferroloop.Future,
        Task=ferroloop.Task,
        Loop=ferroloop.Loop,
        new_event_loop=ferroloop.new_event_loop,
        EventLoopPolicy=ferroloop.EventLoopPolicy,
        Handle=getattr(ferroloop, "Handle", None),
        TimerHandle=getattr(ferroloop, "TimerHandle", None),
        SSLProtocol=ferroloop.sslproto.SSLProtocol,
    )


_active: Backend | None = None


def activate(name: str) -> Backend:
    """Select the backend of this process (imports ferroloop if asked to)."""
    global _active
    if name == "asyncio":
        _active = _asyncio_backend()
    elif name == "ferroloop":
        _active = _ferroloop_backend()
    else:
        raise ValueError(f"unknown backend {name!r}; expected one of {NAMES}")
    return _active


def active() -> Backend:
    """Return the backend selected by :func:`activate`."""
    if _active is None:
        raise RuntimeError("ferro_conformance.backend.activate() was not called")
    return _active
