"""A chunked upload survives its server being killed mid-PATCH (SIGKILL), in a real process."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import signal
import subprocess
import sys
import time

import pytest

from condastore_core.service import namespaces, users
from tests.support.net import free_port

MIB = 1024 * 1024
PASSWORD = "a long password"
SERVER = """
import sys
from condastore_core.service.context import Context
from condastore_core.settings import load_settings
from condastore_web.app import create_app
from werkzeug.serving import make_server

data_dir, database_url, port = sys.argv[1:4]
settings = load_settings(
    {"data_dir": data_dir, "database_url": database_url, "tarball": False}, environ={}
)
app = create_app(Context.from_settings(settings))
server = make_server("127.0.0.1", int(port), app, threaded=True)
server.serve_forever()
"""


class Server:
    """``condastore``'s app in a process of its own, so it can be killed like a real one."""

    def __init__(self, ctx) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SERVER,
                str(ctx.settings.data_dir),
                ctx.settings.resolved_database_url,
                str(self.port),
            ]
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.request("GET", "/v2/").status == 200:
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the registry process did not start")
            time.sleep(0.1)

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def request(self, method, path, body=b"", headers=None):
        conn = self.connection()
        auth = base64.b64encode(f"ada:{PASSWORD}".encode()).decode()
        conn.request(
            method,
            path,
            body=body,
            headers={"Authorization": f"Basic {auth}", "Content-Length": str(len(body))}
            | (headers or {}),
        )
        resp = conn.getresponse()
        resp.body = resp.read()
        conn.close()
        return resp

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def _staged_size(ctx, upload_id: str) -> int:
    path = ctx.store.staging_path(upload_id)
    return path.stat().st_size if path.exists() else 0


@pytest.mark.slow
def test_an_upload_killed_mid_patch_resumes_from_what_was_acknowledged(ctx):
    namespaces.create_namespace(ctx, "team")
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    data = os.urandom(4 * MIB)
    first = Server(ctx)
    try:
        r = first.request("POST", "/v2/team/app/blobs/uploads/")
        location = r.getheader("Location")
        upload_id = location.rsplit("/", 1)[1]
        r = first.request("PATCH", location, data[:MIB], {"Content-Range": f"0-{MIB - 1}"})
        assert r.status == 202 and r.getheader("Range") == f"0-{MIB - 1}"
        # The next chunk's bytes reach the staging area, then the process dies.
        conn = first.connection()
        conn.putrequest("PATCH", location)
        auth = base64.b64encode(f"ada:{PASSWORD}".encode()).decode()
        conn.putheader("Authorization", f"Basic {auth}")
        conn.putheader("Content-Length", str(3 * MIB))
        conn.putheader("Content-Range", f"{MIB}-{4 * MIB - 1}")
        conn.endheaders()
        conn.send(data[MIB : MIB + 5 * MIB // 2])
        deadline = time.monotonic() + 30
        while _staged_size(ctx, upload_id) < 3 * MIB:
            assert time.monotonic() < deadline, "the server never staged the chunk"
            time.sleep(0.02)
        first.kill()
        conn.close()
    finally:
        first.stop()
    assert _staged_size(ctx, upload_id) > MIB  # the crash left unacknowledged bytes behind

    second = Server(ctx)
    try:
        status = second.request("GET", location)
        assert status.status == 204 and status.getheader("Range") == f"0-{MIB - 1}"
        r = second.request("PATCH", location, data[MIB:], {"Content-Range": f"{MIB}-{4 * MIB - 1}"})
        assert r.status == 202 and r.getheader("Range") == f"0-{4 * MIB - 1}"
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = second.request("PUT", f"{location}?digest={digest}")
        assert r.status == 201, r.body
        assert second.request("GET", f"/v2/team/app/blobs/{digest}").body == data
    finally:
        second.stop()
