"""A loopback forward proxy that puts every connection rattler makes through the gate.

rattler fetches repodata and packages with its own HTTP client, which follows
redirects and resolves host names by itself: checking a channel URL before
handing it over leaves every later hop unchecked (a redirect from an allowed
server to ``169.254.169.254``, a name that resolves elsewhere the second time,
repodata whose ``base_url`` points packages at loopback). So the rattler client
of an enforcing process is built to use this proxy, and the proxy admits each
request on its own: a ``CONNECT host:port`` (https) or an absolute ``http://``
URL is checked by the gate, the host resolved once and the connection made to
the address that was checked. A refused request gets ``403`` before anything
is contacted, the same answer whatever is or is not listening there.

The client reads the proxy address from ``HTTP(S)_PROXY`` when it is built
(reqwest's rule), so those variables are set for that moment only, under a
lock. One proxy serves each gate of a process; after a fork (an RQ work
process) a new one is started.
"""

from __future__ import annotations

import collections
import http.client
import os
import re
import select
import socket
import socketserver
import threading
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from condastore_core.channels.gate import SERVER_RULE, ChannelGate, ChannelRefused

if TYPE_CHECKING:
    import rattler

_HEAD_LIMIT = 64 * 1024
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
_HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
_env_lock = threading.Lock()
_proxies: dict[tuple[int, ChannelGate], GateProxy] = {}
_proxies_lock = threading.Lock()
_RATTLER_URL = re.compile(r"for url \((?P<url>[^)\s]+)\)")


class _Handler(socketserver.StreamRequestHandler):
    server: _Server
    _target = ""

    def handle(self) -> None:
        try:
            head = self._read_head()
            if head is None:
                return
            method, target, _ = head[0].split(" ", 2)
            self._target = _host_port(target)
            if method.upper() == "CONNECT":
                self._tunnel(target)
            else:
                self._forward(method, target, head[1:])
        except ChannelRefused as exc:
            self.server.refused.append(self._target)
            self.server.refusal_count += 1
            self._refuse(exc.message)
        except (OSError, ValueError, http.client.HTTPException):
            pass  # the client sees the connection close

    def _read_head(self) -> list[str] | None:
        lines: list[str] = []
        size = 0
        while True:
            line = self.rfile.readline(_HEAD_LIMIT)
            size += len(line)
            if not line or size > _HEAD_LIMIT:
                return None
            if line in (b"\r\n", b"\n"):
                return lines
            lines.append(line.decode("latin-1").rstrip("\r\n"))

    def _refuse(self, message: str) -> None:
        body = message.encode()
        self.wfile.write(
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )

    def _tunnel(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        address = self.server.gate.admit("https", host.strip("[]"), int(port))
        with socket.create_connection((address, int(port)), timeout=60) as upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            _pipe(self.connection, upstream)

    def _forward(self, method: str, url: str, header_lines: list[str]) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ChannelRefused("channel gate", "the proxy forwards http:// URLs only")
        port = parts.port or 80
        address = self.server.gate.admit("http", parts.hostname, port, url=url)
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() not in _HOP_HEADERS:
                headers[name.strip()] = value.strip()
        length = int(headers.get("Content-Length") or headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        connection = http.client.HTTPConnection(address, port, timeout=60)
        try:
            path = parts.path or "/"
            connection.request(
                method, path + (f"?{parts.query}" if parts.query else ""), body, headers
            )
            response = connection.getresponse()
            out = [f"HTTP/1.1 {response.status} {response.reason}"]
            out += [f"{k}: {v}" for k, v in response.getheaders() if k.lower() not in _HOP_HEADERS]
            out.append("Connection: close")
            self.wfile.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
            while chunk := response.read(1 << 16):
                self.wfile.write(chunk)
        finally:
            connection.close()


def _pipe(a: socket.socket, b: socket.socket) -> None:
    sockets = [a, b]
    while True:
        readable, _, broken = select.select(sockets, [], sockets, 300)
        if broken or not readable:
            return
        for s in readable:
            data = s.recv(1 << 16)
            if not data:
                return
            (b if s is a else a).sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, gate: ChannelGate) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.gate = gate
        #: ``host:port`` of the latest refused requests, to tell rattler's errors apart.
        self.refused: collections.deque[str] = collections.deque(maxlen=256)
        #: Refusals since start, so a caller can tell which of them happened meanwhile.
        self.refusal_count = 0


class GateProxy:
    """The proxy of one gate in this process; serves from a daemon thread until exit."""

    def __init__(self, gate: ChannelGate) -> None:
        self._server = _Server(gate)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(
            target=self._server.serve_forever, name="condastore-gate-proxy", daemon=True
        ).start()

    def refused(self, error_text: str) -> bool:
        """Whether rattler's ``error_text`` is about a request this proxy refused."""
        return any(
            _host_port(m["url"]) in self._server.refused for m in _RATTLER_URL.finditer(error_text)
        )

    @property
    def refusal_count(self) -> int:
        return self._server.refusal_count

    def refused_since(self, count: int) -> list[str]:
        """``host:port`` of the requests refused since :attr:`refusal_count` was ``count``."""
        new = min(self._server.refusal_count - count, len(self._server.refused))
        return list(self._server.refused)[-new:] if new > 0 else []

    def client(self) -> rattler.Client:
        """A rattler client that makes every connection through this proxy."""
        with _env_lock:
            saved = {k: os.environ.pop(k) for k in _all_variables() if k in os.environ}
            try:
                for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
                    os.environ[name] = self.url
                return rattler_client(self._server.gate)
            finally:
                for name in _all_variables():
                    os.environ.pop(name, None)
                os.environ.update(saved)


def rattler_client(gate: ChannelGate) -> rattler.Client:
    """rattler's standard client, with the gate's mirror swap and credentials in it."""
    from rattler.networking import Client
    from rattler.networking.middleware import (
        AuthenticationMiddleware,
        GCSMiddleware,
        OciMiddleware,
        RetryMiddleware,
        S3Middleware,
    )

    return Client(
        [
            RetryMiddleware(3),
            *gate.access.middlewares(),
            AuthenticationMiddleware(),
            OciMiddleware(),
            GCSMiddleware(),
            S3Middleware(),
        ]
    )


def client_for(gate: ChannelGate) -> rattler.Client | None:
    """The client rattler fetches with under ``gate``: through its proxy when enforced; None
    (rattler's default) when open and nothing is mirrored or needs credentials."""
    proxy = proxy_for(gate)
    if proxy is not None:
        return proxy.client()
    if gate.access.mirrors or gate.access.credentials:
        return rattler_client(gate)
    return None


def _all_variables() -> list[str]:
    return [v for name in _PROXY_VARIABLES for v in (name, name.lower())]


def _host_port(target: str) -> str:
    """``host:port`` of a CONNECT target or a URL."""
    if "://" not in target:
        return target.lower()
    parts = urlsplit(target)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{(parts.hostname or '').lower()}:{port}"


def refused_hop(error_text: str, channels: str) -> ChannelRefused | None:
    """The gate's refusal when rattler's ``error_text`` is about a hop a proxy refused.

    rattler reports the proxy's answer as an HTTP error of some URL; told as it
    is, that would read like the target's own answer. ``channels`` names what
    the user asked for, in the refusal.
    """
    pid = os.getpid()
    with _proxies_lock:
        proxies = [p for (owner, _), p in _proxies.items() if owner == pid]
    if not any(p.refused(error_text) for p in proxies):
        return None
    return ChannelRefused(
        SERVER_RULE,
        f"{channels} sent this server to a location it may not fetch (a redirect or a "
        "package URL elsewhere); it fetches the configured channels, public http(s) hosts, "
        "and the directories and networks an administrator allowed "
        "(settings allowed_channel_dirs, allowed_networks)",
    )


def proxy_for(gate: ChannelGate) -> GateProxy | None:
    """The proxy rattler fetches through under ``gate``; None (rattler's own way) if open."""
    if not gate.enforce:
        return None
    key = (os.getpid(), gate)
    with _proxies_lock:
        proxy = _proxies.get(key)
        if proxy is None:
            proxy = _proxies[key] = GateProxy(gate)
    return proxy
