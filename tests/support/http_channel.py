"""A channel served over real HTTP, as conda channel servers do.

It answers with ``ETag``, ``Last-Modified`` and, when asked, ``Cache-Control:
max-age``; a request whose ``If-None-Match`` or ``If-Modified-Since`` still
holds gets ``304 Not Modified``. Every request is counted, so tests can see
what a running condastore fetched and when. Package downloads can be slowed
down, so builds take long enough to interrupt.
"""

from __future__ import annotations

import email.utils
import functools
import hashlib
import http.server
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ChannelServer:
    """The state of a served channel: its URL, the requests it saw, its caching answer."""

    url: str = ""
    root: Path = Path()
    #: ``Cache-Control: max-age`` sent with every answer; None sends no Cache-Control.
    max_age: int | None = None
    #: Package downloads wait this long.
    delay: float = 0.0
    #: ``(method, path, status)`` of every request, in order.
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    #: Authorization headers received, by path.
    authorizations: dict[str, str | None] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, suffix: str, status: int | None = None) -> int:
        """How many requests for a path ending in ``suffix`` (answered ``status``) were made."""
        with self.lock:
            return sum(
                1
                for _, path, code in self.requests
                if path.endswith(suffix) and (status is None or code == status)
            )

    def repodata_requests(self, status: int | None = None) -> int:
        """Requests for any form of a subdir's repodata (json, zst, bz2, shards)."""
        with self.lock:
            return sum(
                1
                for _, path, code in self.requests
                if ("repodata" in path.rsplit("/", 1)[-1] or "/shards/" in path)
                and (status is None or code == status)
            )


class _Handler(http.server.SimpleHTTPRequestHandler):
    channel: ChannelServer

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        with self.channel.lock:
            self.channel.authorizations[path] = self.headers.get("Authorization")
        if body and path.endswith((".conda", ".tar.bz2")):
            time.sleep(self.channel.delay)
        file = Path(self.translate_path(path))
        if not file.is_file():
            self._record(404)
            self.send_error(404)
            return
        data = file.read_bytes()
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        modified = email.utils.formatdate(os.stat(file).st_mtime, usegmt=True)
        unchanged = (
            self.headers.get("If-None-Match") == etag
            if self.headers.get("If-None-Match")
            else self.headers.get("If-Modified-Since") == modified
        )
        status = 304 if unchanged else 200
        self._record(status)
        self.send_response(status)
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", modified)
        if self.channel.max_age is not None:
            self.send_header("Cache-Control", f"public, max-age={self.channel.max_age}")
        if status == 304:
            self.end_headers()
            return
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _record(self, status: int) -> None:
        with self.channel.lock:
            self.channel.requests.append((self.command, self.path.split("?", 1)[0], status))

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def channel_server(
    root: Path, *, max_age: int | None = None, delay: float = 0.0
) -> Iterator[ChannelServer]:
    """Serve the channel at ``root`` until the block ends; see :class:`ChannelServer`."""
    channel = ChannelServer(root=root, max_age=max_age, delay=delay)
    handler = type("ChannelHandler", (_Handler,), {"channel": channel})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
    )
    channel.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield channel
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serve_channel(root: Path, delay: float = 0.0) -> Iterator[str]:
    """Serve the channel at ``root``; each package download waits ``delay`` seconds."""
    with channel_server(root, delay=delay) as channel:
        yield channel.url
