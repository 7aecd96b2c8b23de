r"""Run one conformance suite against one backend and stream per-test outcomes.

Usage (the orchestrator starts it; ``tests/conformance`` must be on ``PYTHONPATH``)::

    python -m ferro_conformance.worker --suite test_futures --backend ferroloop \\
        --out events.jsonl [--only keys.txt] [--test-timeout 10]

``--out`` receives one JSON object per line, flushed as soon as it is known:

* ``{"event": "plan", "keys": [...]}`` -- every selected test, in run order;
* ``{"event": "start", "key": K}`` / ``{"event": "end", "key": K, "outcome": O, ...}``
  around each test, ``O`` being ``pass``, ``fail``, ``error``, ``skip``, ``xfail`` or
  ``unexpected-success``; ``end`` also carries ``summary`` (one line), ``detail``
  (the traceback) and ``seconds``;
* ``{"event": "fixture-error", "key": K, ...}`` for setUpClass/setUpModule failures;
* ``{"event": "load-error", "detail": ...}`` if the suite cannot even be loaded;
* ``{"event": "abort", "key": K, ...}`` if a BaseException escapes unittest (``K``:
  the test running, or else the last one run);
* ``{"event": "done"}`` at the end of a complete run.

A test that runs longer than ``--test-timeout`` makes :mod:`faulthandler` dump every
thread's stack to stderr and end the process; the orchestrator sees the ``start``
without an ``end``, records a timeout and restarts the worker for the remaining tests.
Keys are ``Class.test_method``; they are identical for both backends.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import importlib
import json
import os
import sys
import time
import traceback
import unittest
from collections.abc import Iterator
from typing import IO, Any

#: Exit status of a worker whose run was cut short by an escaped BaseException.
EXIT_ABORTED = 3
#: Exit status of a worker that could not load its suite.
EXIT_LOAD_ERROR = 4

SUMMARY_LIMIT = 300
DETAIL_LIMIT = 6000


class EventSink:
    """Append JSON events to a file, flushing each one immediately."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def emit(self, event: str, **fields: Any) -> None:
        """Write one event line."""
        self._stream.write(json.dumps({"event": event, **fields}) + "\n")
        self._stream.flush()


def test_key(test: unittest.TestCase) -> str:
    """``Class.test_method`` for a test case (its id if it is not a plain test)."""
    method = getattr(test, "_testMethodName", None)
    if method is None:
        return test.id()
    return f"{type(test).__name__}.{method}"


def summarize(exc_type: type[BaseException], value: BaseException) -> str:
    """The first line of the exception as ``traceback`` would print it."""
    text = "".join(traceback.format_exception_only(exc_type, value)).strip()
    line = text.splitlines()[0] if text else exc_type.__name__
    return line[:SUMMARY_LIMIT]


class RecordingResult(unittest.TestResult):
    """A TestResult that emits one ``start``/``end`` event pair per test."""

    def __init__(self, sink: EventSink, test_timeout: float) -> None:
        super().__init__()
        self._sink = sink
        self._test_timeout = test_timeout
        self._current: str | None = None
        self._last: str | None = None
        self._started = 0.0
        self._outcome: dict[str, Any] = {}

    @property
    def current(self) -> str | None:
        """The key of the test being run, else of the last test run, if any."""
        return self._current or self._last

    def startTest(self, test: unittest.TestCase) -> None:
        super().startTest(test)
        self._current = test_key(test)
        self._outcome = {}
        self._sink.emit("start", key=self._current)
        if self._test_timeout > 0:
            faulthandler.dump_traceback_later(self._test_timeout, exit=True, file=sys.stderr)
        self._started = time.monotonic()

    def stopTest(self, test: unittest.TestCase) -> None:
        elapsed = time.monotonic() - self._started
        faulthandler.cancel_dump_traceback_later()
        outcome = self._outcome or {"outcome": "error", "summary": "no outcome was reported"}
        self._sink.emit("end", key=test_key(test), seconds=round(elapsed, 3), **outcome)
        self._last = self._current
        self._current = None
        super().stopTest(test)

    def _record(self, outcome: str, test: Any, err: Any = None, reason: str = "") -> None:
        if not isinstance(test, unittest.TestCase) or self._current is None:
            # setUpClass/setUpModule/tearDown* failures arrive on an _ErrorHolder.
            if err is not None:
                self._sink.emit(
                    "fixture-error",
                    key=str(test),
                    summary=summarize(err[0], err[1]),
                    detail=self._exc_info_to_string(err, test)[:DETAIL_LIMIT],
                )
            return
        if self._outcome.get("outcome") in ("fail", "error"):
            return  # keep the first failure (e.g. of a subtest)
        fields: dict[str, Any] = {"outcome": outcome}
        if err is not None:
            fields["summary"] = summarize(err[0], err[1])
            fields["detail"] = self._exc_info_to_string(err, test)[:DETAIL_LIMIT]
        elif reason:
            fields["summary"] = reason[:SUMMARY_LIMIT]
        self._outcome = fields

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self._record("pass", test)

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self._record("fail", test, err)

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self._record("error", test, err)

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        self._record("skip", test, reason=reason)

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._record("xfail", test)

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self._record("unexpected-success", test, reason="unexpected success")

    def addSubTest(self, test: unittest.TestCase, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._record("fail" if failed else "error", test, err)


def iter_tests(suite: unittest.TestSuite) -> Iterator[unittest.TestCase]:
    """Flatten nested test suites."""
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from iter_tests(item)
        else:
            yield item


def load_tests(suite_name: str) -> list[tuple[str, unittest.TestCase]]:
    """Import the suite's adapter (or stdlib module) and return its selected tests."""
    from ferro_conformance import suites

    spec = suites.find(suite_name)
    if spec.adapter:
        module = importlib.import_module(f"ferro_conformance.adapters.{spec.adapter}")
    else:
        module = importlib.import_module(spec.module)
    loaded = unittest.defaultTestLoader.loadTestsFromModule(module)
    errors = unittest.defaultTestLoader.errors
    if errors:
        raise ImportError("\n".join(errors))
    selected = []
    seen: set[str] = set()
    for test in iter_tests(loaded):
        key = test_key(test)
        if key in seen:
            raise ValueError(f"duplicate test key {key!r} in suite {suite_name}")
        seen.add(key)
        if spec.selects(key):
            selected.append((key, test))
    return selected


def install_shims() -> None:
    """Adapt stdlib test plumbing that reaches into BaseEventLoop internals.

    ``test_utils.TestCase.close_loop()`` reads ``loop._default_executor`` to decide
    whether to shut the default executor down.  For loops without that private
    attribute it does the same through the public ``shutdown_default_executor()``.
    Loops that have the attribute (all asyncio loops) take the original path.
    """
    from test.test_asyncio import utils as test_utils

    original = test_utils.TestCase.close_loop

    def close_loop(loop: asyncio.AbstractEventLoop) -> None:
        if hasattr(loop, "_default_executor"):
            original(loop)
            return
        if not loop.is_closed():
            loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    test_utils.TestCase.close_loop = staticmethod(close_loop)


def read_keys(path: str) -> set[str]:
    """Read a file of test keys, one a line."""
    with open(path, encoding="utf-8") as stream:
        return {line.strip() for line in stream if line.strip()}


def run(args: argparse.Namespace, sink: EventSink) -> int:
    """Load, filter and run the suite; return the process exit status."""
    from ferro_conformance import backend

    try:
        chosen = backend.activate(args.backend)
        tests = load_tests(args.suite)
        install_shims()
    except BaseException:  # noqa: BLE001 -- anything here means "cannot load"
        sink.emit("load-error", detail=traceback.format_exc()[-DETAIL_LIMIT:])
        return EXIT_LOAD_ERROR

    if args.only:
        only = read_keys(args.only)
        tests = [(key, test) for key, test in tests if key in only]
    sink.emit("plan", keys=[key for key, _ in tests])

    asyncio.set_event_loop_policy(chosen.EventLoopPolicy())
    result = RecordingResult(sink, args.test_timeout)
    try:
        unittest.TestSuite([test for _, test in tests]).run(result)
    except BaseException as exc:  # noqa: BLE001 -- e.g. a KeyboardInterrupt escaping
        faulthandler.cancel_dump_traceback_later()
        sink.emit(
            "abort",
            key=result.current,
            summary=f"escaped unittest: {summarize(type(exc), exc)}",
            detail=traceback.format_exc()[-DETAIL_LIMIT:],
        )
        return EXIT_ABORTED
    sink.emit("done")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the worker's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", required=True, help="suite name, e.g. test_futures")
    parser.add_argument("--backend", required=True, choices=("asyncio", "ferroloop"))
    parser.add_argument("--out", required=True, help="JSON-lines event file to append to")
    parser.add_argument("--only", help="file of test keys to run (all others are skipped)")
    parser.add_argument(
        "--test-timeout",
        type=float,
        default=10.0,
        help="seconds before a single test is declared hung (0: never)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Entry point; exits the process without running interpreter shutdown."""
    args = parse_args(argv)
    faulthandler.enable(file=sys.stderr, all_threads=True)
    with open(args.out, "a", encoding="utf-8") as stream:
        status = run(args, EventSink(stream))
    sys.stdout.flush()
    sys.stderr.flush()
    # Leftover non-daemon threads or a wedged loop must not hang the exit; every
    # outcome is already on disk.
    os._exit(status)


if __name__ == "__main__":
    main()
