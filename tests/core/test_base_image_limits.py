"""A base image's registry is not trusted to be small or to keep credentials to itself.

A hostile registry (named in settings, perhaps hijacked) answers with a
manifest of gigabytes, a blob longer than its manifest says, or a redirect
elsewhere: the manifest is refused past the cap without being read whole,
the blob past its declared size before the store takes more, and the
registry's credentials never follow a redirect to another origin.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from condastore_core.bounded import MAX_MANIFEST_BYTES
from condastore_core.channels import gate_for
from condastore_core.image.base import pull_upstream
from condastore_core.oci_client import RegistryClientError
from condastore_core.settings import load_settings
from condastore_core.store import LocalBlobStore

CONFIG = json.dumps({"rootfs": {"diff_ids": ["sha256:" + "0" * 64]}}).encode()
LAYER = b"a small layer"


def manifest(layer_size: int) -> bytes:
    def descriptor(data: bytes, size: int) -> dict:
        return {
            "mediaType": "application/octet-stream",
            "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": size,
        }

    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor(CONFIG, len(CONFIG)),
            "layers": [descriptor(LAYER, layer_size)],
        }
    ).encode()


@contextmanager
def hostile_registry(seen: list[dict[str, str]]) -> Iterator[str]:
    """``huge``: a manifest past the cap, sized or chunked; ``long``: a blob past its size;
    ``away``: asks for credentials, then redirects to ``/elsewhere`` on another port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            seen.append({"path": self.path, **dict(self.headers)})
            if self.path.startswith("/v2/huge/"):
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                if "sized" in self.path:
                    self.send_header("Content-Length", str(MAX_MANIFEST_BYTES * 4))
                    self.end_headers()
                else:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                try:
                    for _ in range(MAX_MANIFEST_BYTES * 4 // 65536):
                        chunk = b" " * 65536
                        if "sized" in self.path:
                            self.wfile.write(chunk)
                        else:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    if "sized" not in self.path:
                        self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    return  # the client stopped reading: what the test wants
                return
            if self.path.startswith("/v2/long/manifests/"):
                return self.answer(200, manifest(len(LAYER)))
            if self.path.startswith("/v2/long/blobs/"):
                digest = self.path.rsplit("/", 1)[1]
                if digest == "sha256:" + hashlib.sha256(CONFIG).hexdigest():
                    return self.answer(200, CONFIG)
                return self.answer(200, LAYER * 100_000)  # far more than the manifest said
            if self.path.startswith("/v2/away/"):
                if "Authorization" not in self.headers:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="r"')
                    self.send_header("Content-Length", "0")
                    return self.end_headers()
                self.send_response(302)
                self.send_header("Location", f"{other.url}/elsewhere")
                self.send_header("Content-Length", "0")
                return self.end_headers()
            if self.path.startswith("/elsewhere"):
                return self.answer(404, b"{}")
            self.answer(404, b"{}")

        def answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Other:
        url = ""

    other = Other()
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(2)]
    other.url = f"http://127.0.0.1:{servers[1].server_port}"
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{servers[0].server_port}"
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def setup(tmp_path):
    settings = load_settings(
        {"data_dir": tmp_path / "d", "allowed_networks": "127.0.0.0/8"}, environ={}
    )
    seen: list[dict[str, str]] = []
    with hostile_registry(seen) as host:
        yield host, gate_for(settings), LocalBlobStore(tmp_path / "blobs"), seen


@pytest.mark.parametrize("framing", ["sized", "chunked"])
def test_a_manifest_past_the_cap_is_refused_unread(setup, framing):
    host, gate, store, _ = setup
    with pytest.raises(RegistryClientError, match=f"larger than {MAX_MANIFEST_BYTES} bytes"):
        pull_upstream(f"{host}/huge:{framing}", "linux-64", store, gate)


def test_a_blob_longer_than_its_manifest_says_is_refused(setup):
    host, gate, store, _ = setup
    with pytest.raises(RegistryClientError, match=f"more than the {len(LAYER)} bytes"):
        pull_upstream(f"{host}/long:latest", "linux-64", store, gate)
    layer = "sha256:" + hashlib.sha256(LAYER).hexdigest()
    assert layer not in {str(b.digest) for b in store.iterate()}


def test_registry_credentials_do_not_follow_a_redirect_elsewhere(setup):
    host, gate, store, seen = setup
    with pytest.raises(RegistryClientError):
        pull_upstream(
            f"{host}/away:latest", "linux-64", store, gate, credentials={host: "ada:secret"}
        )
    asked = [s for s in seen if s["path"].startswith("/v2/away/")]
    assert any("Authorization" in s for s in asked)  # the registry itself got them
    elsewhere = [s for s in seen if s["path"].startswith("/elsewhere")]
    assert elsewhere and all("Authorization" not in s for s in elsewhere)
