"""Callback scheduling order: ``call_soon``, ``call_later``, ``call_at`` and cancelled timers.

Entry point: the loop object itself, from ``ferroloop.new_event_loop()``, driven with
``run_forever()`` and stopped by a timer -- callbacks need no coroutine at all.
Run: ``python examples/scheduling.py``.
"""

from __future__ import annotations

import ferroloop


def main() -> None:
    """Schedule callbacks out of order and print the order in which they run."""
    loop = ferroloop.new_event_loop()
    print("loop:", type(loop).__name__)
    ran: list[str] = []
    start = loop.time()

    def record(label: str) -> None:
        ran.append(label)
        print(f"  +{(loop.time() - start) * 1000:5.1f} ms  {label}")

    # Scheduled latest-first; the loop runs them by deadline, call_soon ones first.
    loop.call_later(0.03, record, "call_later(30 ms)")
    loop.call_at(start + 0.02, record, "call_at(start + 20 ms)")
    timer = loop.call_later(0.01, record, "call_later(10 ms)")
    cancelled = loop.call_later(0.015, record, "call_later(15 ms), cancelled: never runs")
    cancelled.cancel()
    loop.call_soon(record, "call_soon #1")
    loop.call_soon(record, "call_soon #2 (FIFO after #1)")
    loop.call_later(0.0, record, "call_later(0): a timer, after the call_soon callbacks")
    loop.call_later(0.05, loop.stop)
    print(
        f"timer when() - start = {(timer.when() - start) * 1000:.1f} ms, "
        f"cancelled handle: cancelled() = {cancelled.cancelled()}"
    )
    try:
        loop.run_forever()
    finally:
        loop.close()
    expected = [
        "call_soon #1",
        "call_soon #2 (FIFO after #1)",
        "call_later(0): a timer, after the call_soon callbacks",
        "call_later(10 ms)",
        "call_at(start + 20 ms)",
        "call_later(30 ms)",
    ]
    if ran != expected:
        raise SystemExit(f"unexpected order: {ran}")
    print(f"{len(ran)} callbacks ran in the expected order; the cancelled one did not run")


if __name__ == "__main__":
    main()
