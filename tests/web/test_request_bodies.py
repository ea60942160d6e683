"""Request bodies sized by Content-Length and sent chunked give the same results.

Go clients (containerd, buildkit, crane) and skopeo, when it compresses on the
fly, send ``Transfer-Encoding: chunked`` bodies without a ``Content-Length``.
Every body-carrying request is sent both ways with a plain ``http.client`` to
``condastore serve`` started as users start it; limits hold for both framings.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from condastore_core.image.manifest import CONFIG, MANIFEST
from condastore_core.service.registry import MAX_MANIFEST_BYTES
from condastore_web.api.bodies import MAX_BODY_BYTES
from tests.support.serve import add_admin, serve

FRAMINGS = ["sized", "chunked"]
PASSWORD = "a long password"
AUTH = "Basic " + base64.b64encode(f"ada:{PASSWORD}".encode()).decode()
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
#: Pieces of a chunked body, small and uneven so no piece lines up with the server's reads.
PIECE = 64 * 1024 + 7


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("bodies") / "data"
    add_admin(data, "ada", PASSWORD)
    with serve(data, "--workers", "2", "--threads", "4") as served:
        url = served.url
        status, _, body = send(url, "POST", "/api/v1/namespaces", b'{"name": "team"}', "sized")
        assert status == 201, body
        yield url


def pieces(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), PIECE):
        yield body[start : start + PIECE]


def send(
    url: str,
    method: str,
    path: str,
    body: bytes,
    framing: str,
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPResponse, bytes]:
    """One request with ``body`` sized (Content-Length) or chunked (no Content-Length)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        all_headers = {"Authorization": AUTH, **(headers or {})}
        if framing == "sized":
            conn.request(method, path, body=body, headers=all_headers)
        else:  # an iterable body without a length goes out chunked
            conn.request(method, path, body=pieces(body), headers=all_headers)
        resp = conn.getresponse()
        return resp.status, resp, resp.read()
    finally:
        conn.close()


def get(url: str, path: str) -> bytes:
    status, _, body = send(url, "GET", path, b"", "sized")
    assert status == 200, body
    return body


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(url: str, repo: str, data: bytes, framing: str) -> str:
    digest = digest_of(data)
    status, _, body = send(url, "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", data, framing)
    assert status == 201, body
    return digest


def manifest_for(url: str, repo: str, framing: str) -> bytes:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
    layer = os.urandom(1000)
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {
                "mediaType": CONFIG,
                "digest": push_blob(url, repo, config, framing),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": LAYER_TYPE,
                    "digest": push_blob(url, repo, layer, framing),
                    "size": len(layer),
                }
            ],
        }
    ).encode()


@pytest.mark.parametrize("framing", FRAMINGS)
def test_a_whole_blob_in_one_post_with_its_digest(server, framing):
    blob = os.urandom(3 * 1024 * 1024 + 11)
    digest = push_blob(server, "team/mono", blob, framing)
    assert get(server, f"/v2/team/mono/blobs/{digest}") == blob


@pytest.mark.parametrize("framing", FRAMINGS)
def test_patch_chunks_then_a_put_with_the_last_chunk(server, framing):
    blob = os.urandom(2 * 1024 * 1024 + 300)
    first, second, last = blob[:1_000_000], blob[1_000_000:2_000_000], blob[2_000_000:]
    status, resp, body = send(server, "POST", "/v2/team/streamed/blobs/uploads/", b"", framing)
    assert status == 202, body
    location = resp.headers["Location"]
    for sent, piece in ((1_000_000, first), (2_000_000, second)):
        status, resp, body = send(
            server, "PATCH", location, piece, framing, {"Content-Type": "application/octet-stream"}
        )
        assert status == 202, body
        assert resp.headers["Range"] == f"0-{sent - 1}"
    digest = digest_of(blob)
    status, _, body = send(server, "PUT", f"{location}?digest={digest}", last, framing)
    assert status == 201, body
    assert get(server, f"/v2/team/streamed/blobs/{digest}") == blob


@pytest.mark.parametrize("framing", FRAMINGS)
def test_a_manifest_put(server, framing):
    manifest = manifest_for(server, "team/app", framing)
    status, resp, body = send(
        server, "PUT", "/v2/team/app/manifests/v1", manifest, framing, {"Content-Type": MANIFEST}
    )
    assert status == 201, body
    assert resp.headers["Docker-Content-Digest"] == digest_of(manifest)
    assert get(server, "/v2/team/app/manifests/v1") == manifest


@pytest.mark.parametrize("framing", FRAMINGS)
def test_an_api_json_body(server, framing):
    body = json.dumps({"name": f"made-{framing}"}).encode()
    status, _, answer = send(
        server, "POST", "/api/v1/namespaces", body, framing, {"Content-Type": "application/json"}
    )
    assert status == 201, answer
    made = json.loads(get(server, f"/api/v1/namespaces/made-{framing}"))
    assert made["name"] == f"made-{framing}"


def early_answer(
    url: str, request_line: str, body: bytes, framing: str, *, last_chunk: bool = True
) -> tuple[int, bytes]:
    """Send a request from a raw socket and read the answer while the body is still going out.

    A server may answer an oversized body before reading it; the body is sent
    from a thread so the answer is read whenever it comes. Without its last
    chunk, a chunked body never ends: a server waiting for its end times out.
    """
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    framing_header = (
        f"Content-Length: {len(body)}" if framing == "sized" else "Transfer-Encoding: chunked"
    )
    head = (
        f"{request_line} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: {AUTH}\r\n"
        f"Content-Type: application/json\r\n{framing_header}\r\n\r\n"
    )

    def send_body() -> None:
        with contextlib.suppress(OSError):  # the server may stop reading, or close
            sock.sendall(head.encode())
            if framing == "sized":
                sock.sendall(body)
                return
            for piece in pieces(body):
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            if last_chunk:
                sock.sendall(b"0\r\n\r\n")
                return
            for _ in range(64):  # more, as a client with no end to its body would
                sock.sendall(b"%x\r\n%s\r\n" % (PIECE, b"x" * PIECE))

    sender = threading.Thread(target=send_body, daemon=True)
    sender.start()
    resp = http.client.HTTPResponse(sock)
    try:
        resp.begin()
        return resp.status, resp.read()
    finally:
        resp.close()
        sock.close()
        sender.join(timeout=30)


def oversized_manifest() -> bytes:
    return b'{"schemaVersion": 2, "padding": "' + b"x" * MAX_MANIFEST_BYTES + b'"}'


def oversized_json() -> bytes:
    return json.dumps({"name": "x" * MAX_BODY_BYTES}).encode()


@pytest.mark.parametrize("framing", FRAMINGS)
def test_a_manifest_over_the_limit_is_refused_the_same_way(server, framing):
    status, body = early_answer(
        server, "PUT /v2/team/app/manifests/big", oversized_manifest(), framing
    )
    assert status == 400, body
    error = json.loads(body)["errors"][0]
    assert error["code"] == "SIZE_INVALID"
    assert error["message"] == f"manifests are limited to {MAX_MANIFEST_BYTES} bytes"


@pytest.mark.parametrize("framing", FRAMINGS)
def test_an_api_body_over_the_limit_is_refused_the_same_way(server, framing):
    status, body = early_answer(server, "POST /api/v1/namespaces", oversized_json(), framing)
    assert status == 413, body
    message = json.loads(body)["error"]["message"]
    assert message == f"the request body is larger than {MAX_BODY_BYTES} bytes"


def test_a_chunked_body_over_the_limit_is_refused_before_its_end(server):
    status, body = early_answer(
        server, "PUT /v2/team/app/manifests/endless", oversized_manifest(), "chunked",
        last_chunk=False,
    )  # fmt: skip
    assert status == 400, body
    assert json.loads(body)["errors"][0]["code"] == "SIZE_INVALID"
    status, body = early_answer(
        server, "POST /api/v1/namespaces", oversized_json(), "chunked", last_chunk=False
    )
    assert status == 413, body
