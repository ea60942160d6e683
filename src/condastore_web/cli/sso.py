"""``condastore login --sso``: single sign-on from a terminal, ending with a condastore token.

When the provider offers the device authorization grant, the CLI prints a
URL and a code to enter there (on any device) and polls the server until the
user approved; nothing listens on this machine. Otherwise (or with
``--browser``) it listens on a loopback port, prints the URL to open in a
browser on this machine, and receives a one-time code there when the login
is done; the code is only good with the PKCE verifier this process holds.
"""

from __future__ import annotations

import http.server
import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import click

from condastore_core.auth.oidc import new_secret, pkce_challenge
from condastore_core.errors import CondastoreError
from condastore_web.cli.client import ApiClient

CALLBACK_PATH = "/callback"


def login_sso(client: ApiClient, *, browser: bool = False, timeout: float = 600) -> dict[str, Any]:
    """Run the login; returns the server's token answer (``token``, ``user``, ...)."""
    offered = client.get("/auth/sso")
    if not offered.get("enabled"):
        raise CondastoreError(f"single sign-on is not configured on {client.url}")
    if offered.get("device") and not browser:
        return _device(client, timeout)
    return _loopback(client, timeout)


def _device(client: ApiClient, timeout: float) -> dict[str, Any]:
    started = client.call("POST", "/auth/sso/device")
    click.echo(f"To log in, open {started['verification_uri']}")
    click.echo(f"and enter the code {started['user_code']}")
    if started.get("verification_uri_complete"):
        click.echo(f"(or open {started['verification_uri_complete']})")
    deadline = time.monotonic() + min(timeout, float(started["expires_in"]))
    interval = float(started["interval"])
    while time.monotonic() < deadline:
        time.sleep(interval)
        answer = client.call("POST", "/auth/sso/device/token", {"handle": started["handle"]})
        if answer.get("status") != "pending":
            return answer
        interval = float(answer.get("interval", interval))
    raise CondastoreError("the login was not completed in time; run the command again")


class _Callback(http.server.BaseHTTPRequestHandler):
    """Answers the one request the browser makes at the end of the login."""

    server: _LoopbackServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != CALLBACK_PATH:
            self.send_error(404)
            return
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        state_ok = secrets.compare_digest(query.get("state", ""), self.server.state)
        if state_ok and "code" in query:
            self.server.code = query["code"]
            text = "You are logged in to condastore; you may close this window."
        else:
            text = "This answer does not belong to this login; run the command again."
        body = text.encode()
        self.send_response(200 if state_ok else 400)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if state_ok:
            self.server.done.set()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the terminal shows the URL and the outcome, not a request log


class _LoopbackServer(http.server.HTTPServer):
    def __init__(self, state: str) -> None:
        super().__init__(("127.0.0.1", 0), _Callback)
        self.state = state
        self.code: str | None = None
        self.done = threading.Event()


def _loopback(client: ApiClient, timeout: float) -> dict[str, Any]:
    state, verifier = new_secret(), new_secret()
    server = _LoopbackServer(state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        started = client.call(
            "POST",
            "/auth/sso/cli",
            {
                "redirect_uri": f"http://127.0.0.1:{server.server_port}{CALLBACK_PATH}",
                "code_challenge": pkce_challenge(verifier),
                "state": state,
            },
        )
        click.echo("To log in, open this URL in a browser on this machine:")
        click.echo(started["authorization_url"])
        if not server.done.wait(timeout):
            raise CondastoreError("the login was not completed in time; run the command again")
    finally:
        server.shutdown()
        server.server_close()
    return client.call("POST", "/auth/sso/token", {"code": server.code, "code_verifier": verifier})
