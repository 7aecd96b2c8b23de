"""Helpers shared by the side-by-side asyncio / ferroloop test suite."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

try:
    import ferroloop
except Exception as exc:  # noqa: BLE001 - any import failure means "not built yet"
    ferroloop = None
    FERROLOOP_IMPORT_ERROR: BaseException | None = exc
else:
    FERROLOOP_IMPORT_ERROR = None


@dataclasses.dataclass(frozen=True)
class Impl:
    """The public entry points of one implementation (stdlib asyncio or ferroloop)."""

    name: str
    new_event_loop: Callable[[], asyncio.AbstractEventLoop]
    loop_class: type
    run: Callable[..., Any]
    policy_class: type
    install: Callable[[], None]
    future_class: type
    task_class: type
    handle_class: type
    timer_handle_class: type
    main_prefix: tuple[str, ...]

    def script_command(self, script: str, *args: str) -> list[str]:
        """Command line that runs ``script`` with this implementation's loop."""
        return [sys.executable, *self.main_prefix, script, *args]


def _install_asyncio() -> None:
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())


IMPLS: dict[str, Impl] = {
    "asyncio": Impl(
        name="asyncio",
        new_event_loop=asyncio.SelectorEventLoop,
        loop_class=asyncio.SelectorEventLoop,
        run=asyncio.run,
        policy_class=asyncio.DefaultEventLoopPolicy,
        install=_install_asyncio,
        future_class=asyncio.Future,
        task_class=asyncio.Task,
        handle_class=asyncio.Handle,
        timer_handle_class=asyncio.TimerHandle,
        main_prefix=(),
    ),
}
if ferroloop is not None:
    IMPLS["ferroloop"] = Impl(
        name="ferroloop",
        new_event_loop=ferroloop.new_event_loop,
        loop_class=ferroloop.Loop,
        run=ferroloop.run,
        policy_class=ferroloop.EventLoopPolicy,
        install=ferroloop.install,
        future_class=ferroloop.Future,
        task_class=ferroloop.Task,
        handle_class=ferroloop.Handle,
        timer_handle_class=ferroloop.TimerHandle,
        main_prefix=("-m", "ferroloop"),
    )
else:
    IMPLS["ferroloop"] = None  # type: ignore[assignment]


def format_contexts(contexts: list[dict]) -> str:
    """Render exception-handler contexts for a failure message."""
    lines = []
    for ctx in contexts:
        exc = ctx.get("exception")
        lines.append(f"  - {ctx.get('message')!r} exception={exc!r} keys={sorted(ctx)}")
    return "\n".join(lines)


def run_briefly(loop: asyncio.AbstractEventLoop) -> None:
    """Run exactly one iteration of ``loop`` (ready callbacks only)."""
    loop.call_soon(loop.stop)
    loop.run_forever()


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without asyncio debug switches, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE")}
    env.update(extra)
    return env


def run_python(args: list[str], *, env: dict[str, str] | None = None, cwd=None, timeout=60):
    """Run a Python subprocess and return the CompletedProcess (text mode)."""
    return subprocess.run(
        args,
        check=False,
        capture_output=True,
        text=True,
        env=clean_env() if env is None else env,
        cwd=cwd,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def callback_source(func, args=()) -> str:
    """How asyncio formats a callback (name, args and source location) in reprs and messages."""
    from asyncio import format_helpers

    return format_helpers._format_callback_source(func, args)


def asyncio_records(caplog, min_level: int = 30) -> list:
    """Records the ``asyncio`` logger emitted at ``min_level`` (default WARNING) or above."""
    return [r for r in caplog.records if r.name == "asyncio" and r.levelno >= min_level]
