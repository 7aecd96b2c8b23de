"""Glue that plugs the active backend into CPython's asyncio test mixins.

Every adapter module imports the stdlib test module *as a module* (never
``from ... import SomeTests``): the unittest loader collects every ``TestCase`` found in
an adapter's namespace, and only the classes defined here must be collected.  Stdlib
test classes that already exercise the backend unchanged (they create their loops with
``asyncio.new_event_loop()`` while the backend's policy is installed) are re-declared
as plain subclasses, so that their ids name the adapter module and the stdlib module's
``tearDownModule`` (which resets the policy) does not run in the middle of a suite.
"""

from __future__ import annotations

import asyncio
from typing import Any, Self
from unittest import mock


def subclass(base: type, name: str, namespace: dict[str, Any] | None = None) -> type:
    """Return ``class name(base)``, or a stand-in that explains why it cannot exist.

    asyncio's Future and Task can be subclassed, and the stdlib tests do so.  If the
    backend's class refuses, the stand-in raises the same ``TypeError`` on use, so the
    affected tests report the reason instead of the whole adapter failing to import.
    """
    try:
        return type(name, (base,), dict(namespace or {}))
    except TypeError as exc:
        message = f"cannot subclass {base.__module__}.{base.__qualname__}: {exc}"

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise TypeError(message)

    return type(name, (), {"__init__": refuse, "__class_getitem__": classmethod(refuse)})


class InertChildWatcher(asyncio.AbstractChildWatcher):
    """A child watcher that watches nothing, so it needs no SIGCHLD handler.

    Some stdlib fixtures attach a ``SafeChildWatcher`` to their loop, which calls
    ``loop.add_signal_handler()``; the tests using those fixtures never start a
    subprocess, so they run with this watcher to keep signal support out of them.
    """

    def add_child_handler(self, pid: int, callback: Any, *args: Any) -> None:
        """Refuse: this watcher cannot watch children."""
        raise NotImplementedError("InertChildWatcher cannot watch child processes")

    def remove_child_handler(self, pid: int) -> bool:
        """Nothing is ever registered."""
        return False

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Accept any loop without installing a signal handler."""

    def close(self) -> None:
        """Nothing to release."""

    def is_active(self) -> bool:
        """Always usable (and never used)."""
        return True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


class PatchMixin:
    """Apply ``patches`` (``(target, attribute, value)`` triples) around each test."""

    patches: tuple[tuple[Any, str, Any], ...] = ()

    def setUp(self) -> None:
        for target, attribute, value in self.patches:
            patcher = mock.patch.object(target, attribute, value)
            patcher.start()
            self.addCleanup(patcher.stop)
        super().setUp()
