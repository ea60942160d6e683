"""The app served over real HTTP on loopback, in a thread of the test process.

Tests that share the app's context with the test itself serve it here;
``tests/support/serve.py`` runs ``condastore serve`` (gunicorn) as a process.
Like gunicorn, this threaded server decodes chunked request bodies.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import falcon
from werkzeug.serving import make_server


@contextmanager
def live_server(app: falcon.App) -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
