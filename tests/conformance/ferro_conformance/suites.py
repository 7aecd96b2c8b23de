"""The one list of what the conformance harness runs.

Each :class:`Suite` names a module of CPython's ``test.test_asyncio`` package.  A suite
either runs that module as it is, with the backend's event-loop policy installed (every
``asyncio.new_event_loop()``, ``asyncio.run()`` and ``IsolatedAsyncioTestCase`` then gets
a backend loop), or, when ``adapter`` is set, runs the test classes that
``ferro_conformance/adapters/<adapter>.py`` builds from the module's mixins so that the
backend's own ``Future``/``Task``/loop classes are what the tests exercise.

``select`` keeps only the tests whose ``Class.test_method`` key matches one of its
:mod:`fnmatch` patterns.  To enable more of the stdlib suite later, add a ``Suite`` to
:data:`SUITES` (a module without an adapter runs as-is) or add patterns to a
``select``; :data:`DEFERRED` records what is left out on purpose and why.
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

    def selects(self, key: str) -> bool:
        """Whether the test ``key`` (``Class.test_method``) belongs to this suite."""
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.select)


#: Tests of test_events that do not need sockets, pipes, ptys, subprocesses or signal
#: handlers.  ``FerroEventLoopTests`` is ``EventLoopTestsMixin`` on a backend loop.
EVENTS_SELECTION = (
    # Running, stopping and closing the loop; scheduling callbacks; the executor.
    "FerroEventLoopTests.test_run_until_complete",
    "FerroEventLoopTests.test_run_until_complete_nesting",
    "FerroEventLoopTests.test_run_until_complete_stopped",
    "FerroEventLoopTests.test_call_later",
    "FerroEventLoopTests.test_call_soon",
    "FerroEventLoopTests.test_call_soon_threadsafe",
    "FerroEventLoopTests.test_call_soon_threadsafe_same_thread",
    "FerroEventLoopTests.test_run_in_executor",
    "FerroEventLoopTests.test_run_in_executor_cancel",
    "FerroEventLoopTests.test_close",
    "FerroEventLoopTests.test_close_running_event_loop",
    # Source tracebacks of the handles call_soon() & co return, in debug mode.
    "FerroHandleTests.test_handle_source_traceback",
    # asyncio.DefaultEventLoopPolicy is patched to the backend's policy.
    "FerroPolicyTests.*",
    # get_event_loop()/get_running_loop() with the C and the pure-Python accessors.
    "FerroCGetEventLoopTests.*",
    "FerroPyGetEventLoopTests.*",
)

#: test_events tests left out for now, by reason (bare names are EventLoopTestsMixin's).
EVENTS_DEFERRED = {
    "fd readers/writers on socketpairs": (
        "test_reader_callback",
        "test_writer_callback",
        "test_remove_fds_after_closing",
        "test_add_fds_after_closing",
    ),
    "signal handlers": (
        "test_add_signal_handler",
        "test_signal_handling_while_selecting",
        "test_signal_handling_args",
    ),
    "TCP/UDP/unix sockets, servers, SSL, sock_*": (
        "test_create_*",
        "test_*server*",
        "test_*ssl*",
        "test_connect_accepted_socket",
        "test_prompt_cancellation",
    ),
    "pipes and ptys": (
        "test_read_pipe",
        "test_write_pipe*",
        "test_*pty*",
        "test_unclosed_pipe_transport",
    ),
    "subprocesses (SubprocessTestsMixin)": ("test_subprocess_*",),
    "constructing Handle/TimerHandle directly (FerroHandleTests/FerroTimerTests patch "
    "asyncio.Handle/TimerHandle to the backend's; ferroloop's are made by the loop only)": (
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
    "BaseEventLoop internals (_run_once, _selector, _internal_fds)": (
        "test_timeout_rounding",
        "test_internal_fds",
    ),
}

#: The suites the harness runs, slowest first.
SUITES = (
    Suite("test_tasks", adapter="tasks", weight=15),
    Suite("test_events", adapter="events", select=EVENTS_SELECTION, weight=4),
    Suite("test_taskgroups", weight=6),
    Suite("test_futures", adapter="futures", weight=2),
    Suite("test_locks", weight=1),
    Suite("test_waitfor", weight=1),
    Suite("test_timeouts", weight=1),
    Suite("test_queues", weight=1),
    Suite("test_runners", adapter="runners", weight=1),
    Suite("test_context", weight=1),
    Suite("test_futures2", adapter="futures2", weight=1),
)

#: Stdlib modules not run yet, by reason (candidates to add to SUITES later).
DEFERRED = {
    "test_streams": "TCP/unix sockets",
    "test_server": "servers",
    "test_sock_lowlevel": "sock_* methods",
    "test_sendfile": "sockets and sendfile",
    "test_ssl": "SSL",
    "test_sslproto": "SSL",
    "test_subprocess": "subprocesses",
    "test_unix_events": "unix sockets, pipes, signals and child watchers",
    "test_buffered_proto": "sockets",
    "test_threads": "asyncio.to_thread (could run as-is once the executor is solid)",
    "test_pep492": "mostly a mocked BaseEventLoop (candidate to run as-is)",
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
