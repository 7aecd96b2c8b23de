"""Instructions per operation, counted by valgrind's callgrind, for ferroloop and its peers.

Wall-clock figures on a shared 2-core machine move by 10-20 % from run to run; callgrind's
instruction counts repeat exactly, so they are how two versions of a hot path, or two loops
on the same workload, are compared here.  For every (workload, loop) cell the workload runs
twice under callgrind, at ``n`` and at ``3 * n`` operations, each in a fresh process; the
difference of the two totals divided by ``2 * n`` is the cost of one operation with the
interpreter's start-up, the imports and the loop's creation taken out.

    python benches/callgrind.py                       # micro.py's workloads, ferroloop + rloop
    python benches/callgrind.py --loops ferroloop,rloop,uvloop,asyncio --workloads sleep_zero
    python benches/callgrind.py --family net --workloads sock_echo_1k

Every measured process runs with ``PYTHONHASHSEED=0``: with random string hashes the
dict lookups of the same code took a different number of probes in each process.
Counts include every thread (``call_soon_threadsafe``'s senders too).  Instructions are not
time -- cache misses, syscalls and lock waits are not in them -- so this complements
``micro.py``; it does not replace it.  No figure here is a threshold.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import _common

HERE = os.path.dirname(os.path.abspath(__file__))

#: The script each measured process runs: import the family, run one workload once.
_WORKER = (
    _common.WORKER_PRELUDE
    + """
workload.run(loop, {n})
asyncio.set_event_loop(None)
loop.close()
"""
)

_TOTALS = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.MULTILINE)

#: Smallest ``n`` for workloads with a warm-up longer than ``quick_n``: the
#: ``call_soon_threadsafe`` workloads fill ferroloop's queue up to its back-pressure limit
#: (16 Ki callbacks) before any handle comes back to its free list, so a run shorter than
#: that is one cold batch of newly allocated handles, which the ``3n - n`` difference does
#: not take out (at 4,000 calls it counted ~240 instructions per call more than warm).
MIN_N = {
    "threadsafe_1_thread": 20_000,
    "threadsafe_4_threads": 20_000,
    "threadsafe_4_given_context": 20_000,
}


def instructions(family: str, workload: str, loop: str, n: int) -> int:
    """Total instructions (all threads) of one process that runs ``workload`` at ``n``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        code = _WORKER.format(here=HERE, family=family, workload=workload, loop=loop, n=n)
        cmd = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            "--dump-instr=no",
            "--compress-strings=no",
            sys.executable,
            "-c",
            code,
        ]
        # One hash seed for every process: string hashes decide how many probes each
        # dict lookup takes, which moved counts by up to ~4 % between two runs of
        # the same code (the n and 3n runs, or two builds being compared).
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        proc = subprocess.run(cmd, check=False, capture_output=True, timeout=1800, env=env)
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace")[-2000:]
            raise RuntimeError(f"{workload} on {loop} failed:\n{tail}")
        with open(out, "rb") as f:
            match = _TOTALS.search(f.read())
        if match is None:
            raise RuntimeError(f"no totals in callgrind output for {workload} on {loop}")
        return int(match.group(1))


def per_op(family: str, workload: str, loop: str, n: int) -> float:
    """Instructions per operation: ``(I(3n) - I(n)) / 2n``."""
    small = instructions(family, workload, loop, n)
    large = instructions(family, workload, loop, 3 * n)
    return (large - small) / (2 * n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="micro", help="benchmark script (default micro)")
    parser.add_argument("--loops", default="ferroloop,rloop", help="comma-separated loops")
    parser.add_argument("--workloads", help="comma-separated subset (default: all)")
    parser.add_argument("--n", type=int, help="operations of the small run (default quick_n)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    sys.path.insert(0, HERE)
    family = __import__(args.family)
    names = [w.name for w in family.WORKLOADS]
    wanted = args.workloads.split(",") if args.workloads else names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        parser.error(f"unknown workloads: {', '.join(unknown)}")
    loops = args.loops.split(",")
    sizes = {w.name: args.n or max(w.quick_n, MIN_N.get(w.name, 0)) for w in family.WORKLOADS}
    results: dict[str, dict[str, float | None]] = {}
    width = max(len(w) for w in wanted)
    header = f"{'workload':<{width}}  " + "  ".join(f"{name:>11}" for name in loops)
    if len(loops) > 1:
        header += f"  {loops[0]}/" + ",".join(loops[1:])
    print(f"instructions per operation (callgrind, Python {sys.version.split()[0]})")
    print(header, flush=True)
    for workload in wanted:
        row: dict[str, float | None] = {}
        for loop in loops:
            try:
                row[loop] = per_op(args.family, workload, loop, sizes[workload])
            except Exception as exc:  # noqa: BLE001 -- a failed cell is reported, not fatal
                print(f"  {workload} on {loop}: {exc}", file=sys.stderr)
                row[loop] = None
        results[workload] = row
        cells = "  ".join(
            f"{v:>11,.0f}" if v is not None else f"{'error':>11}" for v in row.values()
        )
        base = row[loops[0]]
        ratios = [
            f"{base / row[other]:.2f}" if base is not None and row[other] else "-"
            for other in loops[1:]
        ]
        print(f"{workload:<{width}}  {cells}  {' '.join(ratios)}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": sys.version, "sizes": sizes, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
