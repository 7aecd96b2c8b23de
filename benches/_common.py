"""Shared machinery of ferroloop's benchmark families: ``micro.py``, ``net.py``, ``executor.py``.

A benchmark family is a script that lists :class:`Workload` objects and hands them to
:func:`main`.  :func:`main` does the rest:

* it runs every (workload, loop) cell in a **fresh subprocess** -- the same script, started
  again with a hidden ``--_worker`` argument -- so that loops never share a process, an
  import side effect or a warmed-up allocator;
* inside that subprocess the workload runs once as a warm-up and then ``--repeat`` times,
  each time on a brand-new event loop, and the **best** time counts;
* a loop whose module cannot be imported is reported as ``missing``; a workload that
  raises, hangs past ``--timeout`` or kills its process is reported for that cell only;
* the results are printed as a table of operations per second, with the ratios of the
  baseline loop (``ferroloop`` by default) to every other loop, and optionally saved as
  JSON with ``--json PATH``.

A workload is a plain function ``run(loop, n)``.  It is called with a new loop that is
also set as the current loop (``asyncio.set_event_loop``), does ``n``-sized work on it
and returns the number of operations it performed (an ``int``): the whole call is timed.
It raises if the work came out wrong; so does the runner if anything reached the loop's
exception handler -- a broken loop gets an error cell, not a number.
A workload that needs untimed set-up (a server to start, a pool to fill) instead returns
``Measured(ops, seconds)`` with the time it measured itself, and may attach ``info``: a
small dict of extra figures (e.g. the CPU use of a load client) that is shown on the
progress line and saved in the JSON for the best run.

No number here is a pass/fail threshold: the benchmarks only report.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import importlib
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

#: Event loops known to the benchmarks: name -> ``(module, factory attribute)``.
#: The order is the column order of the table.
LOOPS: dict[str, tuple[str, str]] = {
    "ferroloop": ("ferroloop", "new_event_loop"),
    "asyncio": ("asyncio", "DefaultEventLoopPolicy"),
    "uvloop": ("uvloop", "new_event_loop"),
    "rloop": ("rloop", "new_event_loop"),
}

DEFAULT_BASELINE = "ferroloop"
RESULT_MARKER = "@@BENCH-RESULT@@ "

#: The start of a script that runs one (workload, loop) cell in a fresh process
#: (`callgrind.py`, `interleaved.py`): the family imported, ``workload`` found, ``loop``
#: made and set. Fill in with ``.format(here=..., family=..., workload=..., loop=...)``.
WORKER_PRELUDE = r"""
import asyncio, sys, time
sys.path.insert(0, {here!r})
import _common
family = __import__({family!r})
workload = {{w.name: w for w in family.WORKLOADS}}[{workload!r}]
factory, _ = _common.make_loop_factory({loop!r})
loop = factory()
asyncio.set_event_loop(loop)
"""


@dataclasses.dataclass(frozen=True)
class Measured:
    """What a workload returns when it times itself: ``ops`` operations in ``seconds``."""

    ops: int
    seconds: float
    #: Extra figures about the run (JSON-serialisable), kept for the best run of a cell.
    info: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class Workload:
    """One benchmark: a ``run(loop, n)`` function and the sizes to run it at.

    ``n`` is sized so that one run takes roughly 0.1-0.5 s on the stdlib loop;
    ``quick_n`` is a small size for ``--quick`` smoke runs.
    """

    name: str
    run: Callable[[asyncio.AbstractEventLoop, int], int | Measured]
    n: int
    quick_n: int
    description: str = ""


# --------------------------------------------------------------------------- loops


def make_loop_factory(name: str) -> tuple[Callable[[], asyncio.AbstractEventLoop], str]:
    """Import loop ``name`` and return ``(factory, version)``; raise ImportError if absent."""
    module_name, attr = LOOPS[name]
    module = importlib.import_module(module_name)
    if name == "asyncio":
        # The stdlib default loop, whatever policy another import may have installed.
        policy = asyncio.DefaultEventLoopPolicy()
        return policy.new_event_loop, platform.python_version()
    factory = getattr(module, attr)
    return factory, str(getattr(module, "__version__", "?"))


# --------------------------------------------------------------------------- worker side


def _run_once(
    factory: Callable[[], asyncio.AbstractEventLoop],
    workload: Workload,
    n: int,
    no_gc: bool = False,
) -> tuple[int, float, dict[str, Any] | None]:
    """Run ``workload`` once on a new loop; return ``(ops, seconds, info)``."""
    loop = factory()
    errors: list[dict[str, Any]] = []
    # ``*args``: rloop 0.5 calls the handler with the context alone, not (loop, context).
    loop.set_exception_handler(lambda *args: errors.append(args[-1]))
    asyncio.set_event_loop(loop)
    try:
        gc.collect()
        if no_gc:
            gc.disable()
        start = time.perf_counter()
        result = workload.run(loop, n)
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
        asyncio.set_event_loop(None)
        loop.close()
    if errors:
        # A loop that reports errors is not doing the work it is timed on.
        context = errors[0]
        exc = context.get("exception")
        what = f"{type(exc).__name__}: {exc}" if exc is not None else context.get("message")
        raise RuntimeError(f"{len(errors)} error(s) reached the loop's exception handler: {what}")
    if isinstance(result, Measured):
        return result.ops, result.seconds, result.info
    return int(result), elapsed, None


def _worker(spec: dict[str, Any], workloads: dict[str, Workload]) -> dict[str, Any]:
    """Measure one (workload, loop) cell as described by ``spec``; never raises."""
    out: dict[str, Any] = {"loop": spec["loop"], "workload": spec["workload"], "n": spec["n"]}
    try:
        factory, version = make_loop_factory(spec["loop"])
    except ImportError as exc:
        out["missing"] = f"{type(exc).__name__}: {exc}"
        return out
    out["version"] = version
    workload = workloads[spec["workload"]]
    times: list[float] = []
    rates: list[float] = []
    ops = 0
    best_rate = -1.0
    best_seconds = math.inf
    best_info: dict[str, Any] | None = None
    try:
        # Warm-up at a tenth of the size: imports, caches, first-call costs.
        no_gc = spec.get("no_gc", False)
        _run_once(factory, workload, max(1, spec["n"] // 10), no_gc)
        for _ in range(spec["repeat"]):
            run_ops, seconds, info = _run_once(factory, workload, spec["n"], no_gc)
            times.append(seconds)
            # Self-timed workloads may do a varying number of operations (a fixed-duration
            # load test), so the best run is the one with the highest rate.
            rate = run_ops / seconds if seconds > 0 else math.inf
            rates.append(rate)
            if rate > best_rate:
                best_rate, best_seconds, ops, best_info = rate, seconds, run_ops, info
    except BaseException as exc:  # noqa: BLE001 - report anything, even SystemExit
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    out.update(
        ops=ops,
        times=times,
        rates=rates,
        best_s=best_seconds,
        median_s=statistics.median(times),
        ops_per_sec=best_rate,
    )
    if best_info is not None:
        out["info"] = best_info
    return out


# --------------------------------------------------------------------------- parent side


def cell_env(malloc_trim_threshold: int | None) -> dict[str, str] | None:
    """Environment for a measured process: glibc's heap trim threshold set if one is given.

    glibc gives the top of its heap back to the kernel once more than the trim threshold
    (128 KiB by default) lies free there; a workload whose live 64 KiB buffers rise and
    fall then takes fresh, zeroed pages -- page faults inside ``recv`` -- on every loop
    alike. glibc reads the setting when the process starts, hence an environment variable
    (``None``: the environment is inherited unchanged).
    """
    if malloc_trim_threshold is None:
        return None
    env = dict(os.environ)
    tunable = f"glibc.malloc.trim_threshold={malloc_trim_threshold}"
    env["GLIBC_TUNABLES"] = ":".join(filter(None, (env.get("GLIBC_TUNABLES"), tunable)))
    return env


def malloc_trim_label(malloc_trim_threshold: int | None) -> str:
    """What a run's header says of ``--malloc-trim-threshold`` (nothing when unset)."""
    if malloc_trim_threshold is None:
        return ""
    return f", glibc trim threshold {malloc_trim_threshold} bytes"


def _byte_count(text: str) -> int:
    """A non-negative whole number of bytes (argparse ``type``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of bytes") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative: a byte count is 0 or more")
    return value


def add_malloc_trim_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--malloc-trim-threshold`` option both runners share (see ``cell_env``)."""
    parser.add_argument(
        "--malloc-trim-threshold",
        type=_byte_count,
        metavar="BYTES",
        help="start every measured process with glibc's heap trim threshold at BYTES "
        "(every loop alike; default: glibc's own)",
    )


def _run_cell(
    script: str, spec: dict[str, Any], timeout: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run one cell in a fresh interpreter and return its result dict (never raises)."""
    cmd = [sys.executable, "-X", "faulthandler", script, "--_worker", json.dumps(spec)]
    base = {"loop": spec["loop"], "workload": spec["workload"], "n": spec["n"]}
    try:
        proc = subprocess.run(
            cmd,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {**base, "error": f"timeout after {timeout:g} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    if proc.returncode < 0:
        try:
            status = f"killed by {signal.Signals(-proc.returncode).name}"
        except ValueError:
            status = f"killed by signal {-proc.returncode}"
    else:
        status = f"exited with status {proc.returncode}"
    lines = [line.strip() for line in proc.stderr.strip().splitlines() if line.strip()]
    fatal = [i for i, line in enumerate(lines) if line.startswith("Fatal Python error")]
    # faulthandler prints the innermost frame first; a traceback prints it last.
    shown = lines[fatal[0] :][:4] if fatal else lines[-4:]
    detail = f": {' | '.join(shown)}" if shown else ""
    return {**base, "error": f"worker {status}{detail}", "stderr": proc.stderr[-4000:]}


def format_rate(value: float) -> str:
    """Format an operations-per-second figure compactly (``1.23M``, ``456k``)."""
    if math.isinf(value):
        return "inf"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def _cell_text(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "-"
    if "missing" in cell:
        return "missing"
    if "error" in cell:
        return "error"
    return format_rate(cell["ops_per_sec"])


def render_table(
    results: dict[str, dict[str, dict[str, Any]]],
    workloads: Sequence[str],
    loops: Sequence[str],
    baseline: str,
) -> str:
    """Return the results as a text table: ops/s per loop, then baseline/other ratios."""
    others = [name for name in loops if name != baseline] if baseline in loops else []
    header = ["workload", *loops, *(f"{baseline}/{o}" for o in others)]
    rows: list[list[str]] = []
    ratio_logs: dict[str, list[float]] = {o: [] for o in others}
    for wl in workloads:
        cells = results.get(wl, {})
        row = [wl, *(_cell_text(cells.get(name)) for name in loops)]
        base = cells.get(baseline, {})
        for other in others:
            oth = cells.get(other, {})
            if "ops_per_sec" in base and "ops_per_sec" in oth and oth["ops_per_sec"] > 0:
                ratio = base["ops_per_sec"] / oth["ops_per_sec"]
                ratio_logs[other].append(math.log(ratio))
                row.append(f"{ratio:.2f}x")
            else:
                row.append("-")
        rows.append(row)
    if len(workloads) > 1 and any(ratio_logs.values()):
        geo = ["geomean", *("" for _ in loops)]
        for other in others:
            logs = ratio_logs[other]
            geo.append(f"{math.exp(sum(logs) / len(logs)):.2f}x" if logs else "-")
        rows.append(geo)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))])

    lines = [fmt(header), "  ".join("-" * w for w in widths)]
    lines.extend(fmt(r) for r in rows)
    return "\n".join(lines)


def render_notes(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Return one line per missing loop and per failed cell, or an empty string."""
    notes: list[str] = []
    missing: dict[str, str] = {}
    for cells in results.values():
        for name, cell in cells.items():
            if "missing" in cell:
                missing.setdefault(name, cell["missing"])
            elif "error" in cell:
                notes.append(f"  error  {cell['workload']} on {name}: {cell['error']}")
    notes[:0] = [f"  missing  {name}: {why}" for name, why in missing.items()]
    return "\n".join(notes)


def _parse_names(value: str | None, known: Sequence[str], what: str) -> list[str]:
    if not value:
        return list(known)
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in names if v not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def main(
    family: str,
    workloads: Sequence[Workload],
    script: str,
    argv: Sequence[str] | None = None,
) -> int:
    """Command-line entry point of a benchmark family; returns the exit status.

    ``family`` names the family in the output, ``script`` is the path of the family's
    script (re-run in worker subprocesses), ``workloads`` are its benchmarks.
    """
    by_name = {w.name: w for w in workloads}
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--_worker"]:
        result = _worker(json.loads(argv[1]), by_name)
        print(RESULT_MARKER + json.dumps(result), flush=True)
        return 0

    parser = argparse.ArgumentParser(
        description=f"ferroloop {family} benchmarks: each (workload, loop) cell runs in a "
        "fresh subprocess; the best of --repeat runs counts.",
    )
    parser.add_argument("--loops", help=f"comma-separated subset of: {', '.join(LOOPS)}")
    parser.add_argument("--workloads", help="comma-separated subset of: " + ", ".join(by_name))
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 repeats")
    parser.add_argument("--repeat", type=int, help="runs per cell (default 5, 3 with --quick)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size by this")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per cell (default 60)")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="loop the ratios compare")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--no-gc",
        action="store_true",
        help="disable the cyclic garbage collector while a workload runs (every loop)",
    )
    add_malloc_trim_argument(parser)
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    args = parser.parse_args(argv)

    if args.list:
        for w in workloads:
            print(f"{w.name:24} n={w.n:<9} quick={w.quick_n:<7} {w.description}")
        return 0
    loops = _parse_names(args.loops, list(LOOPS), "loop")
    names = _parse_names(args.workloads, list(by_name), "workload")
    repeat = args.repeat or (3 if args.quick else 5)

    print(
        f"ferroloop {family} benchmarks - Python {platform.python_version()} on "
        f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, "
        f"best of {repeat}, one subprocess per cell"
        + (", cyclic GC disabled during the workloads" if args.no_gc else "")
        + malloc_trim_label(args.malloc_trim_threshold),
        flush=True,
    )
    env = cell_env(args.malloc_trim_threshold)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for wl_name in names:
        wl = by_name[wl_name]
        n = max(1, round((wl.quick_n if args.quick else wl.n) * args.scale))
        for loop_name in loops:
            spec = {
                "loop": loop_name,
                "workload": wl_name,
                "n": n,
                "repeat": repeat,
                "no_gc": args.no_gc,
            }
            cell = _run_cell(script, spec, args.timeout, env)
            results.setdefault(wl_name, {})[loop_name] = cell
            status = _cell_text(cell)
            detail = f" ({cell['best_s'] * 1e3:.0f} ms best)" if "best_s" in cell else ""
            if cell.get("info"):
                detail += " " + " ".join(f"{k}={v}" for k, v in cell["info"].items())
            print(f"  {wl_name:24} {loop_name:10} {status}{detail}", file=sys.stderr, flush=True)

    print()
    print(render_table(results, names, loops, args.baseline))
    notes = render_notes(results)
    if notes:
        print("\nnotes:")
        print(notes)
    footer = "\nops/s: higher is better"
    if args.baseline in loops:
        footer += f"; {args.baseline}/X > 1.00x means {args.baseline} is faster"
    print(footer + ".")

    if args.json:
        versions = {
            name: cell["version"]
            for cells in results.values()
            for name, cell in cells.items()
            if "version" in cell
        }
        doc = {
            "family": family,
            "python": sys.version,
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "repeat": repeat,
            "quick": args.quick,
            "no_gc": args.no_gc,
            "malloc_trim_threshold": args.malloc_trim_threshold,
            "scale": args.scale,
            "baseline": args.baseline,
            "versions": versions,
            "results": results,
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
        print(f"wrote {args.json}")
    return 0
