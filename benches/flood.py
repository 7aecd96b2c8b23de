"""call_soon_threadsafe flood: stop() latency and RSS, ferroloop vs asyncio vs uvloop.

16 threads call ``loop.call_soon_threadsafe`` as fast as they can while the loop
runs in another thread; then ``call_soon_threadsafe(loop.stop)`` is called and the
time until ``run_forever`` returns is measured. After the rounds, the loops are
closed and collected, and RSS is compared with the figure before the flood (taken
after a short warm-up round, so imports and one-time growth are not counted).

Each loop runs in its own subprocess (``--loop NAME`` runs one in-process and prints
JSON). Usage::

    python benches/flood.py [--rounds 30] [--threads 16] [--flood-seconds 0.2]
        [--loops ferroloop,asyncio,uvloop] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time


def rss_mib() -> float:
    """Resident set size of this process, in MiB."""
    with open(f"/proc/{os.getpid()}/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def new_loop(name: str):
    if name == "ferroloop":
        import ferroloop

        return ferroloop.new_event_loop()
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    import asyncio

    return asyncio.new_event_loop()


def one_round(name: str, threads: int, flood_seconds: float) -> float:
    """One flood; returns the stop latency in seconds."""
    loop = new_loop(name)
    running = threading.Event()
    loop.call_soon(running.set)
    done = threading.Event()
    stop_flood = threading.Event()

    def runner():
        loop.run_forever()
        done.set()

    def noop():
        pass

    def producer():
        cst = loop.call_soon_threadsafe
        while not stop_flood.is_set():
            for _ in range(100):
                cst(noop)

    t = threading.Thread(target=runner)
    t.start()
    running.wait(10)
    producers = [threading.Thread(target=producer) for _ in range(threads)]
    for p in producers:
        p.start()
    time.sleep(flood_seconds)
    sent = time.monotonic()
    loop.call_soon_threadsafe(loop.stop)
    stopped = done.wait(60)
    latency = time.monotonic() - sent if stopped else float("inf")
    stop_flood.set()
    for p in producers:
        p.join()
    if not stopped:
        loop.call_soon_threadsafe(loop.stop)
    t.join()
    loop.close()
    return latency


def run_one(name: str, rounds: int, threads: int, flood_seconds: float) -> dict:
    # A short warm-up round first: imports, the interpreter's and the allocator's
    # one-time growth and the threads' first stacks are not what is measured.
    one_round(name, threads, 0.02)
    gc.collect()
    before = rss_mib()
    latencies = [one_round(name, threads, flood_seconds) for _ in range(rounds)]
    gc.collect()
    time.sleep(0.2)
    after = rss_mib()
    return {
        "loop": name,
        "stop_median_ms": statistics.median(latencies) * 1e3,
        "stop_max_ms": max(latencies) * 1e3,
        "rss_before_mib": round(before, 1),
        "rss_after_mib": round(after, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--flood-seconds", type=float, default=0.2)
    parser.add_argument("--loops", default="ferroloop,asyncio,uvloop")
    parser.add_argument("--loop", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.loop:
        print(json.dumps(run_one(args.loop, args.rounds, args.threads, args.flood_seconds)))
        return 0
    results = []
    for name in args.loops.split(","):
        cmd = [
            sys.executable,
            __file__,
            "--loop",
            name,
            f"--rounds={args.rounds}",
            f"--threads={args.threads}",
            f"--flood-seconds={args.flood_seconds}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
        if proc.returncode != 0:
            print(f"{name}: failed ({proc.stderr.strip().splitlines()[-1:]})")
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"{'loop':<10} {'stop median':>12} {'stop max':>10} {'RSS before':>11} {'RSS after':>10}")
    for r in results:
        print(
            f"{r['loop']:<10} {r['stop_median_ms']:>10.1f}ms {r['stop_max_ms']:>8.1f}ms "
            f"{r['rss_before_mib']:>9.1f}M {r['rss_after_mib']:>9.1f}M"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
