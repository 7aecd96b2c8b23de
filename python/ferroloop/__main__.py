"""Run an asyncio program on ferroloop without editing it: ``python -m ferroloop SCRIPT [ARGS]``."""

from __future__ import annotations

import os
import platform
import runpy
import sys

import ferroloop


def main(argv: list[str] | None = None) -> None:
    """Install ferroloop's policy, then run the script or module as ``__main__``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: python -m ferroloop SCRIPT.py [ARGS...] | -m MODULE [ARGS...] | --version"
    if argv[:1] == ["--version"]:
        print(
            f"ferroloop {ferroloop.__version__} ({platform.python_implementation()} "
            f"{platform.python_version()}, {platform.platform()})"
        )
        return
    if not argv or argv[0] in ("-h", "--help"):
        print(usage, file=sys.stderr if not argv else sys.stdout)
        raise SystemExit(2 if not argv else 0)
    # The policy without install()'s 3.14 deprecation warning: the user asked for
    # ferroloop here, not for asyncio's deprecated policy API.
    ferroloop._set_event_loop_policy(ferroloop.EventLoopPolicy())
    if argv[0] == "-m":
        if len(argv) < 2:
            print(usage, file=sys.stderr)
            raise SystemExit(2)
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        # Like `python SCRIPT.py`: the script's directory comes first on sys.path.
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
        runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
