"""Hello, ferroloop: a plain asyncio program that runs on ferroloop.

Entry point: plain ``asyncio.run(main())``, so that the program is ordinary asyncio code.
Run it either way:

* ``python examples/hello.py`` -- the script calls ``ferroloop.install()`` itself first;
* ``python -m ferroloop examples/hello.py`` -- ferroloop's runner installs its policy
  before the script starts, and the script sees that and leaves it alone.

Either way ``asyncio.run`` creates a ferroloop loop, which the script prints.
"""

from __future__ import annotations

import asyncio
import time

import ferroloop


async def greet(name: str, delay: float) -> str:
    """Sleep for ``delay`` seconds, then return a greeting."""
    await asyncio.sleep(delay)
    return f"hello, {name} (after {delay * 1000:.0f} ms)"


async def main() -> None:
    """Print the running loop's type, then greet twice, the two sleeps overlapping."""
    print("loop:", type(asyncio.get_running_loop()))
    start = time.perf_counter()
    for line in await asyncio.gather(greet("world", 0.05), greet("ferroloop", 0.1)):
        print(line)
    print(f"both greetings took {time.perf_counter() - start:.2f} s in all (sleeps overlap)")


if __name__ == "__main__":
    if isinstance(asyncio.get_event_loop_policy(), ferroloop.EventLoopPolicy):
        print("policy: installed by `python -m ferroloop`")
    else:
        ferroloop.install()
        print("policy: installed by this script (ferroloop.install())")
    asyncio.run(main())
