"""test_server: ``asyncio.start_server()``/``start_unix_server()`` on a backend loop.

``SelectorStartServerTests`` (``BaseStartServer`` plus its Unix-socket test) with
``new_loop()`` returning a backend loop instead of asyncio's ``SelectorEventLoop``.
"""

from __future__ import annotations

import test.test_asyncio.test_server as std

from ferro_conformance import backend

B = backend.active()


class FerroStartServerTests(std.SelectorStartServerTests):
    """Server start/serve_forever/close on a backend loop."""

    def new_loop(self):
        return B.new_event_loop()


def _on_backend(cls: type) -> type:
    """``cls`` (an ``IsolatedAsyncioTestCase``) with its runner's loop from the backend."""
    name = f"Ferro{cls.__name__}"
    return type(name, (cls,), {"loop_factory": staticmethod(B.new_event_loop)})


# Server.wait_closed (3.12+), close_clients/abort_clients (3.13+) and the Unix socket
# clean-up of create_unix_server(cleanup_socket=) (3.13+): run where the stdlib has them.
globals().update(
    (f"Ferro{name}", _on_backend(getattr(std, name)))
    for name in ("TestServer2", "UnixServerCleanupTests")
    if hasattr(std, name)
)
