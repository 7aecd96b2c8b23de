"""Harness that runs CPython's own asyncio test suite against ferroloop.

The entry point is ``tests/conformance/run.py``; this package holds its parts:

* :mod:`ferro_conformance.suites` -- the one list of stdlib test modules (and of the
  tests selected inside them) that the harness runs;
* :mod:`ferro_conformance.backend` -- the implementation under test in one worker
  process: stdlib asyncio (the baseline) or ferroloop;
* :mod:`ferro_conformance.adapters` -- per-module glue that plugs the backend's
  ``Future``/``Task``/loop into the stdlib test mixins;
* :mod:`ferro_conformance.worker` -- runs one suite against one backend in a
  subprocess and streams per-test outcomes as JSON lines;
* :mod:`ferro_conformance.orchestrate` -- starts, watches and restarts workers;
* :mod:`ferro_conformance.report` -- compares baseline and ferroloop outcomes.
"""
