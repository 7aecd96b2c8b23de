"""Start, watch and restart worker processes; collect each test's outcome.

One *column* is one suite run against one backend.  A column may take several worker
processes: when a worker dies in the middle of a test (per-test timeout, crash, a
BaseException escaping unittest), that test is recorded as ``timeout``/``crash``/
``abort`` and a new worker resumes with the tests not yet run.  A whole column has a
wall-clock budget; what has not run when it is spent is recorded as ``not-run``.
Tests ending in ``fail``/``error`` are then re-run once in a fresh worker; those that
pass the second time are recorded as ``pass`` with ``flaky`` set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ferro_conformance.suites import Suite

#: Outcomes that count as passing.
PASSING = frozenset({"pass", "xfail"})
#: Outcomes that are re-run once to tell real failures from flaky ones.
RERUN = frozenset({"fail", "error"})
#: More failures than this in one column are not re-run (the build is just broken).
RERUN_LIMIT = 150
#: At most this many worker processes per column (first run, resumptions, re-run).
MAX_WORKERS = 40

CONFORMANCE_DIR = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class Outcome:
    """What happened to one test in one column."""

    outcome: str
    summary: str = ""
    detail: str = ""
    seconds: float | None = None
    flaky: bool = False
    first_summary: str = ""

    @property
    def passing(self) -> bool:
        """Whether this outcome counts as a pass."""
        return self.outcome in PASSING

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly dict without empty fields."""
        data = dataclasses.asdict(self)
        return {key: value for key, value in data.items() if value not in ("", None, False)}


@dataclasses.dataclass
class Column:
    """All outcomes of one suite against one backend."""

    suite: str
    backend: str
    outcomes: dict[str, Outcome] = dataclasses.field(default_factory=dict)
    order: list[str] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)
    load_error: str = ""
    #: Whether a worker reported the list of tests to run (False: the column never ran).
    planned: bool = False
    workers: int = 0
    seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class Limits:
    """Time limits of a column."""

    column_seconds: float
    #: ``time.monotonic()`` value by which every column must end, whatever its budget.
    run_deadline: float
    test_seconds: float


def _read_events(path: Path) -> list[dict[str, Any]]:
    """Parse a worker's JSON-lines file, ignoring a torn last line."""
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def _stderr_diagnosis(stderr: str) -> tuple[str, str]:
    """Classify a dead worker from its stderr: (kind, one-line summary).

    faulthandler writes ``Timeout (h:mm:ss)!`` for a hung test and ``Fatal Python
    error: ...`` for a crash, followed by the stacks of all threads; the summary names
    the innermost frame of the thread that was running the test.
    """
    lines = stderr.splitlines()
    kind, headline = "crash", ""
    for line in lines:
        if line.startswith("Timeout ("):
            kind, headline = "timeout", "hung"
            break
        if line.startswith("Fatal Python error:"):
            headline = line[len("Fatal Python error:") :].strip()
            break
    frame = ""
    blocks: list[list[str]] = []
    for line in lines:
        if line.startswith(("Thread 0x", "Current thread 0x")):
            blocks.append([])
        elif blocks and line.startswith("  File "):
            blocks[-1].append(line.strip())
    for block in blocks:
        if any("unittest" in entry or "ferro_conformance" in entry for entry in block):
            frame = next((entry for entry in block if "unittest" not in entry), block[0])
            # faulthandler lists the innermost frame first; also name the test's own line.
            in_test = next((entry for entry in block if "test_asyncio" in entry), "")
            if in_test and in_test != frame:
                frame = f"{frame} (from {in_test})"
            break
    if not headline:
        tail = [line for line in lines if line.strip()]
        headline = tail[-1].strip() if tail else "worker died without a message"
    summary = f"{headline} at {frame}" if frame else headline
    return kind, summary[:400]


class ColumnRunner:
    """Runs one column to completion within its limits."""

    def __init__(
        self, suite: Suite, column: str, backend: str, limits: Limits, workdir: Path
    ) -> None:
        self.suite = suite
        self.backend = backend
        self.limits = limits
        self.workdir = workdir / f"{suite.name}.{column}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.result = Column(suite=suite.name, backend=backend)
        self._deadline = 0.0

    def run(self) -> Column:
        """Run every selected test, then re-run the failing ones once."""
        started = time.monotonic()
        self._deadline = min(started + self.limits.column_seconds, self.limits.run_deadline)
        self._run_keys(only=None)
        if not self.result.load_error:
            self._rerun_failures()
        for key in self.result.order:
            if key not in self.result.outcomes:
                self.result.outcomes[key] = Outcome(
                    "not-run", summary="time budget or worker limit exhausted"
                )
        self.result.seconds = round(time.monotonic() - started, 2)
        return self.result

    def _budget_text(self) -> str:
        """Which budget ends this column: its own, or the whole run's."""
        if self._deadline >= self.limits.run_deadline:
            return "the whole run's --total-timeout"
        return f"--module-timeout {self.limits.column_seconds:.0f}s"

    def _problem(self, message: str) -> None:
        """Note a problem of this column once."""
        if message not in self.result.problems:
            self.result.problems.append(message)

    def _rerun_failures(self) -> None:
        """Re-run ``fail``/``error`` tests once; keep the second result if it passes."""
        failing = [
            key
            for key in self.result.order
            if self.result.outcomes.get(key, Outcome("?")).outcome in RERUN
        ]
        if not failing or len(failing) > RERUN_LIMIT:
            return
        first = {key: self.result.outcomes.pop(key) for key in failing}
        self._run_keys(only=failing)
        for key, earlier in first.items():
            again = self.result.outcomes.get(key)
            if again is not None and again.passing:
                again.flaky = True
                again.first_summary = earlier.summary
            else:
                self.result.outcomes[key] = earlier

    def _run_keys(self, only: list[str] | None) -> None:
        """Run the plan (or ``only``), restarting workers that die mid-test."""
        planned: list[str] | None = list(only) if only is not None else None
        while self.result.workers < MAX_WORKERS:
            remaining = self._deadline - time.monotonic()
            if remaining <= 1:
                self._problem(f"time budget exhausted ({self._budget_text()})")
                return
            todo = (
                None
                if planned is None
                else [key for key in planned if key not in self.result.outcomes]
            )
            if todo == []:
                return
            finished, plan = self._one_worker(todo, remaining)
            if planned is None and plan is not None:
                planned = plan
                self.result.planned = True
                if only is None:
                    self.result.order = list(plan)
            if finished or self.result.load_error:
                return
        self._problem(f"gave up after {MAX_WORKERS} worker processes")

    def _one_worker(self, todo: list[str] | None, budget: float) -> tuple[bool, list[str] | None]:
        """Run one worker; return (completed normally, its plan)."""
        index = self.result.workers
        self.result.workers += 1
        events_path = self.workdir / f"events.{index}.jsonl"
        stderr_path = self.workdir / f"stderr.{index}.txt"
        stdout_path = self.workdir / f"stdout.{index}.txt"
        command = [
            sys.executable,
            "-m",
            "ferro_conformance.worker",
            "--suite",
            self.suite.name,
            "--backend",
            self.backend,
            "--out",
            str(events_path),
            "--test-timeout",
            str(self.limits.test_seconds),
        ]
        if todo is not None:
            keys_path = self.workdir / f"only.{index}.txt"
            keys_path.write_text("".join(f"{key}\n" for key in todo), encoding="utf-8")
            command += ["--only", str(keys_path)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(CONFORMANCE_DIR), env.get("PYTHONPATH")])
        )
        env.pop("PYTHONASYNCIODEBUG", None)
        cwd = self.workdir / f"cwd.{index}"
        cwd.mkdir(exist_ok=True)
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            try:
                status: int | None = process.wait(timeout=budget)
            except subprocess.TimeoutExpired:
                status = None
            finally:
                self._kill_group(process)
        events = _read_events(events_path)
        return self._absorb(events, status, stderr_path)

    @staticmethod
    def _kill_group(process: subprocess.Popen) -> None:
        """Kill the worker's process group (it may have spawned helpers), then reap."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def _absorb(
        self, events: list[dict[str, Any]], status: int | None, stderr_path: Path
    ) -> tuple[bool, list[str] | None]:
        """Merge a worker's events into the column; diagnose an abnormal end."""
        plan = None
        inflight: str | None = None
        aborted: dict[str, Any] | None = None
        done = False
        for event in events:
            kind = event.get("event")
            if kind == "plan":
                plan = event["keys"]
            elif kind == "start":
                inflight = event["key"]
            elif kind == "end":
                self.result.outcomes[event["key"]] = Outcome(
                    outcome=event["outcome"],
                    summary=event.get("summary", ""),
                    detail=event.get("detail", ""),
                    seconds=event.get("seconds"),
                )
                inflight = None
            elif kind == "fixture-error":
                self._problem(f"fixture error {event['key']}: {event['summary']}")
            elif kind == "load-error":
                self.result.load_error = event["detail"]
            elif kind == "abort":
                aborted = event
            elif kind == "done":
                done = True
        if done and status == 0:
            return True, plan
        if self.result.load_error:
            return False, plan
        stderr = stderr_path.read_text(encoding="utf-8", errors="replace")
        if plan is None and status is not None:
            self.result.load_error = (
                f"worker died while loading the suite (exit status {status}): "
                f"{_stderr_diagnosis(stderr)[1]}\n{stderr[-4000:]}"
            )
            return False, plan
        if status is None:
            self._problem(f"worker killed: time budget exhausted ({self._budget_text()})")
            if inflight:
                self.result.outcomes[inflight] = Outcome(
                    "timeout",
                    summary="killed when the time budget ran out",
                    detail=stderr[-4000:],
                )
            return False, plan
        if aborted is not None:
            key = aborted.get("key") or inflight
            if key:
                self.result.outcomes[key] = Outcome(
                    "abort", summary=aborted["summary"], detail=aborted.get("detail", "")
                )
            return False, plan
        if inflight:
            kind, summary = _stderr_diagnosis(stderr)
            if kind == "timeout":
                summary = f"no result after {self.limits.test_seconds:.0f}s: {summary}"
            else:
                summary = f"worker died (exit status {status}): {summary}"
            self.result.outcomes[inflight] = Outcome(kind, summary=summary, detail=stderr[-6000:])
            return False, plan
        self._problem(
            f"worker exited with status {status} outside any test: {_stderr_diagnosis(stderr)[1]}"
        )
        return True, plan


def run_column(suite: Suite, column: str, backend: str, limits: Limits, workdir: Path) -> Column:
    """Run one suite against one backend (``column`` names it in the work directory)."""
    return ColumnRunner(suite, column, backend, limits, workdir).run()


def probe_import(module: str) -> str:
    """Import ``module`` in a fresh interpreter; return the error text, or ``""``."""
    with tempfile.TemporaryDirectory() as cwd:
        completed = subprocess.run(
            [sys.executable, "-c", f"import {module}"],
            cwd=cwd,
            capture_output=True,
            check=False,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    if completed.returncode == 0:
        return ""
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {completed.returncode}"
