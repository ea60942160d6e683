"""Loopback servers for the channel gate's tests: a tripwire and a redirector.

The tripwire is a real listening socket that only counts the connections it
gets; a test that expects the gate to refuse a URL pointing at it asserts that
it was never contacted. The redirector answers every request with a redirect
to a URL of the test's choosing, as a hostile but allowed server would.
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Tripwire:
    port: int
    hits: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def tripwire() -> Iterator[Tripwire]:
    """A listener on loopback recording every connection made to it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.1)
    wire = Tripwire(server.getsockname()[1])
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, peer = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            wire.hits.append(f"{peer[0]}:{peer[1]}")
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield wire
    finally:
        stop.set()
        thread.join()
        server.close()


@dataclass
class Redirector:
    port: int
    #: Where every request is sent: a URL prefix the request path is appended to.
    target: str = ""
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@contextmanager
def redirector(host: str = "127.0.0.1") -> Iterator[Redirector]:
    """An HTTP server answering every GET and HEAD with ``302 Location: <target><path>``.

    ``host`` may be another loopback address (``127.0.0.2``), which an administrator
    can allow without allowing the tripwire on ``127.0.0.1``.
    """
    state = Redirector(0, host=host)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", state.target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    state.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
