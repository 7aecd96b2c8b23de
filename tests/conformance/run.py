#!/usr/bin/env python3
"""Run CPython's asyncio test suite against ferroloop and compare with stdlib asyncio.

Every suite listed in ``ferro_conformance/suites.py`` runs twice, in separate worker
processes: once on stdlib asyncio (the baseline) and once on ferroloop, executing the
same test classes, so test ids match exactly.  A test counts for ferroloop when it
passes in both runs; the ratio is over the tests that pass on the baseline.

Usage::

    python tests/conformance/run.py [--module test_futures ...] [--verbose]
        [--jobs 2] [--json PATH] [--min-ratio 0.95] [--list]

Exit status: 0 when the overall ratio reaches ``--min-ratio``; 1 when it does not;
2 when ferroloop cannot be imported or the harness itself is broken (a stdlib asyncio
baseline run did not load or run, or no baseline test passes).  See README.md beside this file.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ferro_conformance import orchestrate, report, suites

DEFAULT_JSON = Path(tempfile.gettempdir()) / "ferroloop-conformance.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description="Run CPython's asyncio tests on ferroloop and on stdlib asyncio."
    )
    parser.add_argument(
        "--module",
        action="append",
        metavar="NAME",
        help="run only this suite (repeatable; e.g. test_futures or futures)",
    )
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="list every test that passes on asyncio but not on ferroloop",
    )
    parser.add_argument(
        "--jobs", "-j", type=int, default=2, help="worker processes run at once (default: 2)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        help=f"where to write the JSON report (default: {DEFAULT_JSON})",
    )
    parser.add_argument(
        "--min-ratio",
        type=float,
        default=0.0,
        help="exit with status 1 below this overall ratio (default: 0.0)",
    )
    parser.add_argument(
        "--module-timeout",
        type=float,
        default=120.0,
        help="wall-clock seconds per suite and backend (default: 120)",
    )
    parser.add_argument(
        "--total-timeout",
        type=float,
        default=240.0,
        help="wall-clock seconds for the whole run; unfinished tests count as not run "
        "(default: 240)",
    )
    parser.add_argument(
        "--test-timeout",
        type=float,
        default=10.0,
        help="seconds before one test is declared hung (default: 10; the slowest "
        "stdlib-passing test takes about 2.5 s)",
    )
    parser.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the workers' output and event files, and say where",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="print the suites, their selections and what is deferred",
    )
    # Harness self-test: run the "ferroloop" column on stdlib asyncio; expect 100%.
    parser.add_argument(
        "--backend-under-test",
        choices=("ferroloop", "asyncio"),
        default="ferroloop",
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    try:
        args.suites = (
            [suites.find(name) for name in args.module] if args.module else list(suites.SUITES)
        )
    except KeyError as exc:
        parser.error(str(exc.args[0]))
    return args


def print_listing() -> None:
    """Describe what the harness runs and what it leaves out."""
    print("suites (ferro_conformance/suites.py):")
    for suite in suites.SUITES:
        how = f"adapter {suite.adapter}" if suite.adapter else "as-is, backend policy"
        print(f"  {suite.name:<20} {how}")
        if suite.select != ("*",):
            for pattern in suite.select:
                print(f"      {pattern}")
    print("tests deferred inside the suites, by reason:")
    for name, deferred in suites.DEFERRED_TESTS.items():
        for reason, patterns in deferred.items():
            print(f"  {name}: {reason}:")
            print(f"      {', '.join(patterns)}")
    print("modules deferred:")
    for name, reason in suites.DEFERRED.items():
        print(f"  {name:<22} {reason}")


def run_all(args: argparse.Namespace, workdir: Path) -> list[report.Comparison]:
    """Run both columns of every selected suite, ``--jobs`` workers at a time."""
    limits = orchestrate.Limits(
        column_seconds=args.module_timeout,
        run_deadline=time.monotonic() + args.total_timeout,
        test_seconds=args.test_timeout,
    )
    columns = {"baseline": "asyncio", "ferroloop": args.backend_under_test}
    # Baselines first: if ferroloop eats the run's time budget, the denominators are
    # still complete and what ferroloop did not get to run counts against it.
    jobs = [
        (suite, name)
        for name in columns
        for suite in sorted(args.suites, key=lambda suite: -suite.weight)
    ]
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {
            job: pool.submit(
                orchestrate.run_column, job[0], job[1], columns[job[1]], limits, workdir
            )
            for job in jobs
        }
        results = {job: future.result() for job, future in futures.items()}
    return [
        report.Comparison(suite.name, results[(suite, "baseline")], results[(suite, "ferroloop")])
        for suite in args.suites
    ]


def write_json(path: Path, data: dict) -> None:
    """Write the JSON report, creating its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run the harness; return the exit status."""
    args = parse_args(argv)
    if args.list:
        print_listing()
        return 0
    subject = (
        "ferroloop"
        if args.backend_under_test == "ferroloop"
        else "stdlib asyncio (harness self-test)"
    )
    base = {"python": platform.python_version(), "subject": subject, "min_ratio": args.min_ratio}
    if args.backend_under_test == "ferroloop":
        error = orchestrate.probe_import("ferroloop")
        if error:
            print(f"conformance: cannot import ferroloop: {error}", file=sys.stderr)
            write_json(args.json, {**base, "ok": False, "import_error": error})
            return 2

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="ferroloop-conformance-"))
    try:
        comparisons = run_all(args, workdir)
    finally:
        if not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started

    for line in report.render(comparisons, verbose=args.verbose, subject=subject):
        print(line)
    passing, baseline = report.totals(comparisons)
    overall = report.ratio(passing, baseline)
    # A baseline that did not load or run leaves its suite out of the denominator.
    incomplete = [
        item.suite for item in comparisons if item.baseline.load_error or not item.baseline.planned
    ]
    harness_broken = baseline == 0 or bool(incomplete)
    ok = not harness_broken and overall >= args.min_ratio
    print(
        f"ferroloop passes {passing} of {baseline} stdlib-passing tests "
        f"({100 * overall:.1f}%) in {elapsed:.0f}s; JSON report: {args.json}"
    )
    if args.keep_logs:
        print(f"worker logs: {workdir}")
    if incomplete:
        print(
            "conformance: the stdlib asyncio baseline did not run for "
            f"{', '.join(incomplete)}; the harness or its time limits are broken",
            file=sys.stderr,
        )
    elif harness_broken:
        print(
            "conformance: no test passes on stdlib asyncio; the harness is broken", file=sys.stderr
        )
    elif not ok:
        print(
            f"conformance: ratio {overall:.3f} is below --min-ratio {args.min_ratio}",
            file=sys.stderr,
        )
    write_json(
        args.json,
        {
            **base,
            "ok": ok,
            "baseline_incomplete": incomplete,
            "ratio": overall,
            "ferroloop_passing": passing,
            "baseline_passing": baseline,
            "seconds": round(elapsed, 1),
            "suites": {item.suite: item.to_json() for item in comparisons},
        },
    )
    if harness_broken:
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
