"""The one list of what the conformance harness runs.

Each :class:`Suite` names a module of CPython's ``test.test_asyncio`` package.  A suite
either runs that module as it is, with the backend's event-loop policy installed (every
``asyncio.new_event_loop()``, ``asyncio.run()`` and ``IsolatedAsyncioTestCase`` then gets
a backend loop), or, when ``adapter`` is set, runs the test classes that
``ferro_conformance/adapters/<adapter>.py`` builds from the module's mixins so that the
backend's own ``Future``/``Task``/loop classes are what the tests exercise.

``select`` keeps only the tests whose ``Class.test_method`` key matches one of its
:mod:`fnmatch` patterns, and :data:`DEFERRED_TESTS` then removes, per suite and with
the reason, the tests that are about asyncio's internals rather than about the loop.
To enable more of the stdlib suite later, add a ``Suite`` to :data:`SUITES` (a module
without an adapter runs as-is) or shrink :data:`DEFERRED_TESTS`; :data:`DEFERRED`
records the modules left out on purpose and why.
"""

from __future__ import annotations

import dataclasses
import fnmatch


@dataclasses.dataclass(frozen=True)
class Suite:
    """One stdlib asyncio test module, as the harness runs it."""

    #: Module name inside ``test.test_asyncio``; also the key in the report.
    name: str
    #: Module of ``ferro_conformance.adapters`` that adapts it; ``None`` runs it as-is.
    adapter: str | None = None
    #: fnmatch patterns on ``Class.test_method``; a test runs if any pattern matches.
    select: tuple[str, ...] = ("*",)
    #: Rough relative run time, used to start the slow suites first.
    weight: int = 1

    @property
    def module(self) -> str:
        """Import path of the stdlib test module."""
        return f"test.test_asyncio.{self.name}"

    @property
    def deselect(self) -> tuple[str, ...]:
        """fnmatch patterns of the tests :data:`DEFERRED_TESTS` leaves out of this suite."""
        deferred = DEFERRED_TESTS.get(self.name, {})
        return tuple(pattern for patterns in deferred.values() for pattern in patterns)

    def selects(self, key: str) -> bool:
        """Whether the test ``key`` (``Class.test_method``) belongs to this suite."""
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.select) and not any(
            fnmatch.fnmatchcase(key, pattern) for pattern in self.deselect
        )


#: Tests deliberately left out of a suite, by suite and reason: the keys
#: (``Class.test_method`` fnmatch patterns) are removed from that suite's selection.
#: These are tests about asyncio's own internals or helpers rather than about the loop
#: they run on; a test that merely fails on ferroloop is never listed here.
DEFERRED_TESTS: dict[str, dict[str, tuple[str, ...]]] = {
    "test_events": {
        "constructing Handle/TimerHandle directly (FerroHandleTests/FerroTimerTests patch "
        "asyncio.Handle/TimerHandle to the backend's; ferroloop's are made by the loop "
        "only)": (
            "FerroHandleTests.test_handle",
            "FerroHandleTests.test_handle_weakref",
            "FerroHandleTests.test_handle_repr",
            "FerroHandleTests.test_handle_repr_debug",
            "FerroHandleTests.test_callback_with_exception",
            "FerroTimerTests.*",
        ),
        "asyncio-only helpers, whatever the loop": (
            "FerroHandleTests.test_coroutine_like_object_debug_formatting",
            "AbstractEventLoopTests.*",
            "TestServer.*",
            "TestAbstractServer.*",
        ),
        "BaseEventLoop internals (_run_once patched in; _internal_fds of a "
        "BaseSelectorEventLoop, skipped by the test itself for other loops)": (
            "FerroEventLoopTests.test_timeout_rounding",
            "FerroEventLoopTests.test_internal_fds",
        ),
    },
    "test_subprocess": {
        "runs BaseSubprocessTransport on test_utils.TestLoop with a mocked process, "
        "whatever the backend": ("SubprocessTransportTests.*",),
        "skipped by the stdlib itself (bpo-38323) or Windows only": (
            "SubprocessMultiLoopWatcherTests.*",
            "SubprocessProactorTests.*",
        ),
    },
    "test_unix_events": {
        "asyncio's pipe transports driven by test_utils.TestLoop with mocked pipes, "
        "os.fstat and os.set_blocking (no backend loop involved)": (
            "UnixReadPipeTransportTests.*",
            "UnixWritePipeTransportTests.*",
        ),
        "child watchers driven by test_utils.TestLoop with a mocked os.waitpid, and "
        "abstract classes (no backend loop involved)": (
            "SafeChildWatcherTests.*",
            "FastChildWatcherTests.*",
            "AbstractChildWatcherTests.*",
            "BaseChildWatcherTests.*",
        ),
    },
    "test_sslproto": {
        "Windows only": ("ProactorStartTLSTests.*",),
    },
}


#: The suites the harness runs, slowest first.
SUITES = (
    Suite("test_tasks", adapter="tasks", weight=15),
    Suite("test_subprocess", weight=12),
    Suite("test_ssl", weight=10),
    Suite("test_events", adapter="events", weight=8),
    Suite("test_taskgroups", weight=6),
    Suite("test_sslproto", adapter="sslproto", weight=5),
    Suite("test_futures", adapter="futures", weight=2),
    Suite("test_streams", weight=2),
    Suite("test_locks", weight=1),
    Suite("test_waitfor", weight=1),
    Suite("test_timeouts", weight=1),
    Suite("test_queues", weight=1),
    Suite("test_runners", adapter="runners", weight=1),
    Suite("test_context", weight=1),
    Suite("test_futures2", adapter="futures2", weight=1),
    Suite("test_sock_lowlevel", adapter="sock_lowlevel", weight=1),
    Suite("test_sendfile", adapter="sendfile", weight=1),
    Suite("test_unix_events", adapter="unix_events", weight=1),
    Suite("test_server", adapter="server", weight=1),
    Suite("test_buffered_proto", adapter="buffered_proto", weight=1),
    Suite("test_threads", weight=1),
    Suite("test_pep492", adapter="pep492", weight=1),
)

#: Stdlib modules not run, by reason.
DEFERRED = {
    "test_base_events": "BaseEventLoop internals, not the loop contract",
    "test_selector_events": "selector-loop internals",
    "test_proactor_events": "Windows only",
    "test_windows_events": "Windows only",
    "test_windows_utils": "Windows only",
    "test_protocols": "abstract protocol classes only",
    "test_transports": "abstract transport classes only",
}


def find(name: str) -> Suite:
    """Return the suite called ``name`` (the ``test_`` prefix may be left out)."""
    wanted = name if name.startswith("test_") else f"test_{name}"
    for suite in SUITES:
        if suite.name == wanted:
            return suite
    known = ", ".join(suite.name for suite in SUITES)
    raise KeyError(f"unknown suite {name!r}; known suites: {known}")
