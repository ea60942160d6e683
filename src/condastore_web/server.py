"""The embedded server of ``condastore serve``: a threaded WSGI server, one process.

Good for one machine and for trying condastore out; production runs the same
app under gunicorn (see the README).
"""

from __future__ import annotations

import logging
import socketserver
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import falcon

logger = logging.getLogger(__name__)


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        logger.info("%s %s", self.address_string(), format % args)


def make_embedded_server(app: falcon.App, host: str, port: int) -> ThreadingWSGIServer:
    return make_server(  # type: ignore[return-value]
        host, port, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler
    )
