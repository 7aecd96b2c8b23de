"""gunicorn worker classes that run their app on ferroloop.

Both are small enough to copy into a project (or to move into ``ferroloop`` itself)::

    gunicorn app:make_app --worker-class ferroloop_workers.GunicornFerroloopWebWorker
    gunicorn app:asgi_app --worker-class ferroloop_workers.FerroloopUvicornWorker

``GunicornFerroloopWebWorker``
    aiohttp's ``GunicornWebWorker`` on ferroloop: the analogue of aiohttp's own
    ``GunicornUVLoopWebWorker`` (install the loop policy in the worker process, after the
    fork, before the worker creates its loop).
``FerroloopUvicornWorker``
    uvicorn's gunicorn worker (from the ``uvicorn-worker`` package, else the deprecated
    ``uvicorn.workers``) with ``loop="ferroloop:new_event_loop"``: uvicorn >= 0.36 takes an
    import string of a loop factory as its ``loop`` setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from typing import Any, ClassVar

__all__ = ["FerroloopUvicornWorker", "GunicornFerroloopWebWorker"]


def _uvicorn_worker_base() -> type:
    try:
        from uvicorn_worker import UvicornWorker
    except ImportError:
        with warnings.catch_warnings():  # "uvicorn.workers is deprecated"
            warnings.simplefilter("ignore", DeprecationWarning)
            from uvicorn.workers import UvicornWorker
    return UvicornWorker


try:
    from aiohttp.worker import GunicornWebWorker
except ImportError:  # aiohttp (or gunicorn) is not installed
    pass
else:

    class GunicornFerroloopWebWorker(GunicornWebWorker):
        """aiohttp's gunicorn worker, running the app on a ferroloop loop."""

        def init_process(self) -> None:
            import ferroloop

            # Close the loop inherited from the arbiter (if any) before changing the policy,
            # as aiohttp's GunicornUVLoopWebWorker does.
            with contextlib.suppress(RuntimeError), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                asyncio.get_event_loop().close()
            # GunicornWebWorker.init_process() creates its loop with asyncio.new_event_loop().
            asyncio.set_event_loop_policy(ferroloop.EventLoopPolicy())
            super().init_process()


try:
    _UvicornWorker: Any = _uvicorn_worker_base()
except ImportError:  # uvicorn (or gunicorn) is not installed
    pass
else:

    class FerroloopUvicornWorker(_UvicornWorker):
        """uvicorn's gunicorn worker, running the ASGI app on a ferroloop loop."""

        CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
            "loop": "ferroloop:new_event_loop",
            "http": "auto",
        }
