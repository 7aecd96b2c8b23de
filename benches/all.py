"""Run every benchmark family in turn: ``micro.py``, ``net.py``, ``executor.py``, then any
other ``benches/*.py`` script (``tls.py``, ``framework.py``, ...).

``python benches/all.py [--families micro,net] [--json-dir DIR] [OPTIONS]``: each family
runs as its own process, one after the other, with its table printed as it finishes.
``--json-dir DIR`` saves each family's results as ``DIR/<family>.json``; every other option
(``--loops``, ``--quick``, ``--repeat``, ``--scale``, ``--timeout``, ``--baseline``) is
passed on to every family unchanged (``--workloads`` is not: the names differ per family).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

#: The families that run first, in this order; other scripts in benches/ follow by name.
FIRST = ("micro", "net", "executor")


def families() -> list[str]:
    """Every benchmark family: each ``benches/*.py`` but this one and the ``_`` modules."""
    here = os.path.dirname(os.path.abspath(__file__))
    found = {
        name[:-3]
        for name in os.listdir(here)
        if name.endswith(".py") and not name.startswith("_") and name != "all.py"
    }
    return [f for f in FIRST if f in found] + sorted(found - set(FIRST))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run ferroloop's benchmark families one after the other; options other "
        "than those below are passed on to each family (see benches/micro.py --help)."
    )
    known = families()
    parser.add_argument("--families", help=f"comma-separated subset of: {', '.join(known)}")
    parser.add_argument("--json-dir", metavar="DIR", help="save DIR/<family>.json per family")
    args, rest = parser.parse_known_args(argv)
    if any(a == "--workloads" or a.startswith(("--workloads=", "--json")) for a in rest):
        parser.error("--workloads and --json are per family; run the family script directly")
    chosen = [f.strip() for f in (args.families or ",".join(known)).split(",") if f.strip()]
    unknown = [f for f in chosen if f not in known]
    if unknown:
        parser.error(f"unknown families: {', '.join(unknown)} (known: {', '.join(known)})")
    if args.json_dir:
        os.makedirs(args.json_dir, exist_ok=True)

    here = os.path.dirname(os.path.abspath(__file__))
    failed = []
    for family in chosen:
        cmd = [sys.executable, os.path.join(here, f"{family}.py"), *rest]
        if args.json_dir:
            cmd += ["--json", os.path.join(args.json_dir, f"{family}.json")]
        print(f"\n=== {family} ({time.strftime('%H:%M:%S')})", flush=True)
        if subprocess.run(cmd, check=False).returncode != 0:
            failed.append(family)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
