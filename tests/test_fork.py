"""fork() with live executor threads: every child must make a new loop, use the
default executor and exit within a few seconds, on both loops.

The parent forks while its pool threads are busy (a loop in another thread keeps
submitting calls), idle (a pool started and waiting), exiting (shut down without
waiting), and from inside a running loop's callback. A child that hangs (a lock a
vanished parent thread held) or crashes fails the test; ``multiprocessing``'s fork
start method and gunicorn's ``--preload`` take exactly this path.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import warnings

import pytest

CHILDREN_PER_SCENARIO = int(os.environ.get("FERROLOOP_FORK_CHILDREN", "50"))
CHILD_DEADLINE = 10.0  # seconds a child may take before it counts as hung

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # 3.12+: fork with threads
]


def _child_main(impl) -> int:
    """In the child: a new loop, the default executor twice, to_thread; exit status."""
    try:
        loop = impl.new_event_loop()
        try:

            async def main():
                a = await loop.run_in_executor(None, sum, [1, 2])
                b = await asyncio.to_thread(pow, 2, 10)
                c = await asyncio.gather(*(loop.run_in_executor(None, abs, -i) for i in range(8)))
                return a, b, sum(c)

            result = loop.run_until_complete(asyncio.wait_for(main(), 5))
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
        return 0 if result == (3, 1024, 28) else 3
    except BaseException:  # noqa: BLE001 - any failure is the child's exit status
        import traceback

        traceback.print_exc()
        return 4


def _fork_child(impl) -> int:
    pid = os.fork()
    if pid == 0:
        code = 5
        try:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(int(CHILD_DEADLINE) + 5)  # never outlive the parent's patience
            code = _child_main(impl)
        finally:
            os._exit(code)
    return pid


def _wait_all(pids: list[int]) -> dict[str, int]:
    """Wait for every child up to CHILD_DEADLINE each (from now); kill the hung ones."""
    outcome = {"ok": 0, "failed": 0, "hung": 0, "crashed": 0}
    deadline = time.monotonic() + CHILD_DEADLINE
    pending = set(pids)
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                pending.discard(pid)
                if os.WIFSIGNALED(status):
                    outcome["crashed"] += 1
                elif os.WEXITSTATUS(status) == 0:
                    outcome["ok"] += 1
                else:
                    outcome["failed"] += 1
        time.sleep(0.005)
    for pid in pending:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        outcome["hung"] += 1
    return outcome


def _warm_pools(impl, n: int = 3) -> None:
    """Run a few loops that use the executor, then close them (the issue's pattern)."""
    for _ in range(n):
        loop = impl.new_event_loop()
        try:
            loop.run_until_complete(
                asyncio.gather(*(loop.run_in_executor(None, time.sleep, 0.001) for _ in range(6)))
            )
        finally:
            loop.close()


class _BusyLoop:
    """A loop in another thread that keeps its executor busy with short calls."""

    def __init__(self, impl) -> None:
        self.loop = impl.new_event_loop()
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def pump():
            while not self.stop:
                await asyncio.gather(
                    *(self.loop.run_in_executor(None, time.sleep, 0) for _ in range(4))
                )

        self.loop.run_until_complete(pump())
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()

    def __enter__(self):
        self.thread.start()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.mark.parametrize("scenario", ["busy", "idle", "exiting", "inside_loop"])
def test_fork_children_use_the_executor(impl, scenario):
    warnings.simplefilter("ignore", DeprecationWarning)
    _warm_pools(impl)
    pids: list[int] = []
    if scenario == "busy":
        with _BusyLoop(impl):
            for _ in range(CHILDREN_PER_SCENARIO):
                pids.append(_fork_child(impl))
                time.sleep(0.001)
    elif scenario == "idle":
        loop = impl.new_event_loop()
        try:
            loop.run_until_complete(loop.run_in_executor(None, sum, [1]))
            for _ in range(CHILDREN_PER_SCENARIO):
                pids.append(_fork_child(impl))
        finally:
            loop.close()
    elif scenario == "exiting":
        for _ in range(CHILDREN_PER_SCENARIO):
            loop = impl.new_event_loop()
            loop.run_until_complete(
                asyncio.gather(*(loop.run_in_executor(None, time.sleep, 0) for _ in range(4)))
            )
            loop.close()  # the pool is told to stop; its threads are on their way out
            pids.append(_fork_child(impl))
    else:
        loop = impl.new_event_loop()
        try:

            async def forker():
                busy = [loop.run_in_executor(None, time.sleep, 0.002) for _ in range(4)]
                for _ in range(CHILDREN_PER_SCENARIO):
                    pids.append(_fork_child(impl))
                    await asyncio.sleep(0)
                await asyncio.gather(*busy)

            loop.run_until_complete(forker())
        finally:
            loop.close()
    outcome = _wait_all(pids)
    assert outcome == {"ok": len(pids), "failed": 0, "hung": 0, "crashed": 0}
