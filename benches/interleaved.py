"""Ratios of ferroloop to its peers from interleaved repetitions, each in a fresh process.

On a shared machine a whole family run (`micro.py`, `net.py`, ...) can land on a slow CPU
for one loop's cells and not for another's. Here every repetition runs each loop once,
one after the other, in a fresh process, and the figure reported is the median over the
repetitions of the per-repetition ratio: ferroloop / uvloop, ferroloop / rloop and
ferroloop / the faster of the two. Slow minutes then hit both sides of a ratio.

    python benches/interleaved.py                          # micro, net, executor; 3 repetitions
    python benches/interleaved.py --families micro --repeat 5 --workloads sleep_zero

No figure here is a threshold.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import _common

HERE = os.path.dirname(os.path.abspath(__file__))

#: What each measured process runs: one workload once at its full size; prints ops/s.
_WORKER = (
    _common.WORKER_PRELUDE
    + """
start = time.perf_counter()
result = workload.run(loop, workload.n)
elapsed = time.perf_counter() - start
if isinstance(result, _common.Measured):
    ops, elapsed = result.ops, result.seconds
else:
    ops = result
asyncio.set_event_loop(None)
loop.close()
print(ops / elapsed)
"""
)

#: Workloads whose figure is not a loop's own rate (a load client's limit) or that a
#: peer never finishes (rloop keeps the GIL while busy).
SKIP = {"http_hello", "to_thread_busy", "thread_executor_busy"}


def rate(
    family: str, workload: str, loop: str, timeout: float, env: dict[str, str] | None = None
) -> float | None:
    """Operations per second of one fresh process, or None if it failed."""
    code = _WORKER.format(here=HERE, family=family, workload=workload, loop=loop)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        return None
    return float(proc.stdout.strip().splitlines()[-1])


def median_ratio(ours: list[float | None], theirs: list[float | None]) -> float | None:
    """Median of ``ours[i] / theirs[i]`` over the repetitions where both ran."""
    ratios = [a / b for a, b in zip(ours, theirs) if a and b]
    return statistics.median(ratios) if ratios else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="micro,net,executor")
    parser.add_argument("--workloads", help="comma-separated subset (default: all)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per process")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    _common.add_malloc_trim_argument(parser)
    args = parser.parse_args()
    env = _common.cell_env(args.malloc_trim_threshold)
    sys.path.insert(0, HERE)
    wanted = set(args.workloads.split(",")) if args.workloads else None
    loops = ("ferroloop", "uvloop", "rloop")
    results: dict[str, dict[str, float | None]] = {}
    tuned = _common.malloc_trim_label(args.malloc_trim_threshold)
    print(
        f"median of {args.repeat} interleaved repetitions (Python {sys.version.split()[0]}{tuned})"
    )
    print(f"{'workload':<28} {'vs uvloop':>10} {'vs rloop':>10} {'vs faster':>10}", flush=True)
    for family_name in args.families.split(","):
        family = __import__(family_name)
        for workload in family.WORKLOADS:
            if workload.name in SKIP or (wanted is not None and workload.name not in wanted):
                continue
            rates: dict[str, list[float | None]] = {loop: [] for loop in loops}
            for _ in range(args.repeat):
                for loop in loops:
                    rates[loop].append(rate(family_name, workload.name, loop, args.timeout, env))
            faster = [
                max((r for r in (u, p) if r), default=None)
                for u, p in zip(rates["uvloop"], rates["rloop"])
            ]
            row = {
                "vs_uvloop": median_ratio(rates["ferroloop"], rates["uvloop"]),
                "vs_rloop": median_ratio(rates["ferroloop"], rates["rloop"]),
                "vs_faster": median_ratio(rates["ferroloop"], faster),
            }
            results[workload.name] = row
            cells = " ".join(f"{v:>10.2f}" if v is not None else f"{'-':>10}" for v in row.values())
            print(f"{workload.name:<28} {cells}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "python": sys.version,
                    "repeat": args.repeat,
                    "malloc_trim_threshold": args.malloc_trim_threshold,
                    "results": results,
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
