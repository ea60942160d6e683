"""The app served over real HTTP on loopback, in a thread of the test process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import falcon

from condastore_web.server import make_embedded_server


@contextmanager
def live_server(app: falcon.App) -> Iterator[str]:
    server = make_embedded_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
