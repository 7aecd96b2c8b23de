"""Ctrl-C stops a loop that never runs out of ready work, on both loops.

A real SIGINT goes to a child process whose loop runs a never-ending chain of
callbacks: C-level ones (a ``functools.partial`` of ``loop.call_soon`` /
``loop.call_later`` that reschedules itself, so no Python bytecode runs between
callbacks and the interpreter never gets to its signal handlers by itself) and a
Python-level busy callback. The child must end with KeyboardInterrupt within a
few seconds of the signal (a hang guard, not a timing threshold: the time it takes is
printed; run with ``-s`` to see it).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from ferro_testutil import clean_env

pytestmark = pytest.mark.timeout(60)

_CHILD = r"""
import functools, signal, sys, time
sys.path.insert(0, {tests!r})
signal.signal(signal.SIGINT, signal.default_int_handler)
from ferro_testutil import IMPLS
loop = IMPLS[{impl!r}].new_event_loop()
kind = {kind!r}
if kind == "call_soon_builtin":
    chain = functools.partial(print)
    chain.__setstate__((loop.call_soon, (chain,), None, None))
    loop.call_soon(chain)
elif kind == "call_later_builtin":
    chain = functools.partial(print)
    chain.__setstate__((loop.call_later, (0, chain), None, None))
    loop.call_later(0, chain)
else:
    def busy():
        loop.call_soon(busy)
    loop.call_soon(busy)
loop.call_soon(functools.partial(print, "ready", flush=True))
try:
    loop.run_forever()
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), flush=True)
    sys.exit(0)
sys.exit(3)
"""


@pytest.mark.parametrize("kind", ["call_soon_builtin", "call_later_builtin", "python_busy"])
def test_sigint_stops_a_loop_that_is_never_idle(impl, kind):
    import os

    tests = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(tests=tests, impl=impl.name, kind=kind)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)  # well inside the busy loop
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    line = out.strip().splitlines()[-1]
    assert line.startswith("interrupted"), out
    print(
        f"{impl.name} {kind}: stopped {1e3 * (float(line.split()[1]) - sent):.1f} ms after SIGINT"
    )
