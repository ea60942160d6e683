"""The distribution spec to the letter, spoken by a plain HTTP client (``http.client``).

What generic clients rely on and popular ones rarely exercise: chunk order on
the closing PUT, referrers of plain images, non-distributable layers, several
tags in one push, hostile manifests, sha512 digests, and every error code with
its status.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import http.client
import json
import time
import urllib.parse
from pathlib import Path

import pytest
from sqlalchemy import update

from condastore_core.db.models import RegistryManifest
from condastore_core.image.manifest import CONFIG, INDEX, MANIFEST
from condastore_core.service.registry import MAX_MANIFEST_DEPTH
from condastore_registry.errors import STATUS
from tests.registry.conftest import PASSWORD

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
SRC = Path(__file__).resolve().parents[2] / "src"


class Client:
    """One keep-alive connection as the admin; every body is sent with Content-Length."""

    def __init__(self, url: str, user: str = "ada") -> None:
        self.url = url
        parsed = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
        self.auth = "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()

    def request(self, method: str, path: str, body: bytes = b"", headers=None):
        sent = {"Authorization": self.auth, **(headers or {})}
        if body or method in ("PUT", "PATCH", "POST"):
            sent["Content-Length"] = str(len(body))
        self.conn.request(method, path, body=body or None, headers=sent)
        resp = self.conn.getresponse()
        resp.body = resp.read()
        return resp


@pytest.fixture
def client(registry):
    c = Client(registry)
    yield c
    c.conn.close()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def error_code(resp) -> str:
    return json.loads(resp.body)["errors"][0]["code"]


def push_blob(client: Client, name: str, data: bytes, digest=sha256) -> str:
    r = client.request("POST", f"/v2/{name}/blobs/uploads/")
    assert r.status == 202, r.body
    location = r.getheader("Location")
    sep = "&" if "?" in location else "?"
    r = client.request("PUT", f"{location}{sep}digest={digest(data)}", data)
    assert r.status == 201, r.body
    return digest(data)


def image(config: bytes, layers, config_type=CONFIG, media_type=MANIFEST, **extra) -> bytes:
    """``layers``: (media type, bytes) pairs; the config is pushed by the caller."""
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": t, "digest": sha256(b), "size": len(b)} for t, b in layers],
        **extra,
    }
    return json.dumps(doc).encode()


def put_manifest(client: Client, name: str, reference: str, body: bytes, media_type=MANIFEST):
    return client.request(
        "PUT", f"/v2/{name}/manifests/{reference}", body, {"Content-Type": media_type}
    )


# -- 1. the closing PUT of a chunked upload ----------------------------------------------


def test_a_closing_put_out_of_order_is_416_and_the_upload_stays(client):
    data = b"0123456789" * 100
    r = client.request("POST", "/v2/team/app/blobs/uploads/")
    location = r.getheader("Location")
    r = client.request("PATCH", location, data[:400], {"Content-Range": "0-399"})
    assert r.status == 202 and r.getheader("Range") == "0-399"
    wrong = client.request(
        "PUT", f"{location}?digest={sha256(data)}", data[500:], {"Content-Range": "500-999"}
    )
    assert wrong.status == 416
    assert wrong.getheader("Range") == "0-399"
    assert error_code(wrong) == "BLOB_UPLOAD_INVALID"
    status = client.request("GET", location)
    assert status.status == 204 and status.getheader("Range") == "0-399"
    right = client.request(
        "PUT", f"{location}?digest={sha256(data)}", data[400:], {"Content-Range": "400-999"}
    )
    assert right.status == 201, right.body
    assert client.request("GET", f"/v2/team/app/blobs/{sha256(data)}").body == data


# -- 2. referrers of image manifests without artifactType ----------------------------------


def test_an_image_referrer_without_artifact_type_is_listed_by_its_config_type(client, ctx):
    config = b'{"architecture": "amd64", "os": "linux"}'
    push_blob(client, "team/app", config)
    push_blob(client, "team/app", b"base layer")
    base = image(config, [(LAYER, b"base layer")])
    r = put_manifest(client, "team/app", "base", base)
    subject = {"mediaType": MANIFEST, "digest": sha256(base), "size": len(base)}
    push_blob(client, "team/app", b"signature layer")
    signature = image(config, [(LAYER, b"signature layer")], subject=subject)
    r = put_manifest(client, "team/app", sha256(signature), signature)
    assert r.status == 201, r.body
    r = client.request("GET", f"/v2/team/app/referrers/{sha256(base)}")
    assert [m.get("artifactType") for m in json.loads(r.body)["manifests"]] == [CONFIG]
    r = client.request(
        "GET",
        f"/v2/team/app/referrers/{sha256(base)}?artifactType={urllib.parse.quote(CONFIG)}",
    )
    assert [m["digest"] for m in json.loads(r.body)["manifests"]] == [sha256(signature)]
    assert r.getheader("OCI-Filters-Applied") == "artifactType"
    # a manifest recorded before its config type was kept is found all the same
    with ctx.engine.begin() as conn:
        conn.execute(update(RegistryManifest).values(artifact_type=None))
    r = client.request(
        "GET",
        f"/v2/team/app/referrers/{sha256(base)}?artifactType={urllib.parse.quote(CONFIG)}",
    )
    assert [m["artifactType"] for m in json.loads(r.body)["manifests"]] == [CONFIG]


# -- 3. non-distributable layers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("media_type", "layer_type", "config_type"),
    [
        (MANIFEST, NONDISTRIBUTABLE, CONFIG),
        (MANIFEST, "application/vnd.oci.image.layer.nondistributable.v1.tar", CONFIG),
        (DOCKER_MANIFEST, FOREIGN, DOCKER_CONFIG),
    ],
)
def test_layers_that_live_elsewhere_need_not_be_pushed(client, media_type, layer_type, config_type):
    config = b'{"os": "windows"}'
    push_blob(client, "team/win", config)
    push_blob(client, "team/win", b"our own layer")
    body = image(
        config,
        [(layer_type, b"a base layer served by its vendor"), (LAYER, b"our own layer")],
        config_type=config_type,
        media_type=media_type,
    )
    r = put_manifest(client, "team/win", "v1", body, media_type)
    assert r.status == 201, r.body
    assert client.request("GET", "/v2/team/win/manifests/v1").body == body
    # an ordinary layer that was never pushed is still refused
    missing = image(config, [(LAYER, b"never pushed")], config_type=config_type)
    r = put_manifest(client, "team/win", "v2", missing)
    assert r.status == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"


# -- 4. several tags in one push ---------------------------------------------------------


def test_a_manifest_pushed_by_digest_takes_several_tags_at_once(client):
    config = b"{}"
    push_blob(client, "team/app", config)
    push_blob(client, "team/app", b"layer")
    body = image(config, [(LAYER, b"layer")])
    r = put_manifest(client, "team/app", f"{sha256(body)}?tag=v1&tag=latest&tag=stable", body)
    assert r.status == 201, r.body
    assert sorted(r.headers.get_all("OCI-Tag")) == ["latest", "stable", "v1"]
    assert r.getheader("Docker-Content-Digest") == sha256(body)
    tags = json.loads(client.request("GET", "/v2/team/app/tags/list").body)["tags"]
    assert tags == ["latest", "stable", "v1"]
    for tag in tags:
        assert client.request("GET", f"/v2/team/app/manifests/{tag}").body == body
    bad = put_manifest(client, "team/app", f"{sha256(body)}?tag=ok&tag=-bad", body)
    assert bad.status == 400 and error_code(bad) == "MANIFEST_INVALID"
    tags = json.loads(client.request("GET", "/v2/team/app/tags/list").body)["tags"]
    assert "ok" not in tags  # all the tags or none


# -- 5. hostile manifests ----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b'{"mediaType": "'
        + MANIFEST.encode()
        + b'", "annotations": '
        + b"[" * 2000
        + b"]" * 2000
        + b"}",
    ],
    ids=["open-arrays", "nested-objects", "deep-annotation"],
)
def test_deeply_nested_manifests_are_refused_quickly_with_the_limit_named(client, body):
    started = time.perf_counter()
    r = put_manifest(client, "team/app", "deep", body)
    elapsed = time.perf_counter() - started
    assert r.status == 400
    assert error_code(r) == "MANIFEST_INVALID"
    assert str(MAX_MANIFEST_DEPTH) in json.loads(r.body)["errors"][0]["message"]
    assert elapsed < 2


def test_brackets_inside_strings_do_not_count_as_depth(client):
    config = b"{}"
    push_blob(client, "team/app", config)
    push_blob(client, "team/app", b"layer")
    body = image(config, [(LAYER, b"layer")], annotations={"note": "[" * 10_000 + '\\"{'})
    r = put_manifest(client, "team/app", "brackets", body)
    assert r.status == 201, r.body


# -- 10. sha512 and error codes ----------------------------------------------------------


def test_blobs_and_manifests_by_sha512(client):
    config = b'{"os": "linux"}'
    layer = b"hashed with sha512" * 100
    for blob in (config, layer):
        push_blob(client, "team/app", blob, digest=sha512)
    assert client.request("GET", f"/v2/team/app/blobs/{sha512(layer)}").body == layer
    head = client.request("HEAD", f"/v2/team/app/blobs/{sha512(layer)}")
    assert head.status == 200 and head.getheader("Docker-Content-Digest") == sha512(layer)
    doc = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": sha512(config), "size": len(config)},
        "layers": [{"mediaType": LAYER, "digest": sha512(layer), "size": len(layer)}],
    }
    body = json.dumps(doc).encode()
    r = put_manifest(client, "team/app", sha512(body), body)
    assert r.status == 201, r.body
    assert r.getheader("Docker-Content-Digest") == sha512(body)
    got = client.request("GET", f"/v2/team/app/manifests/{sha512(body)}")
    assert got.status == 200 and got.body == body
    assert got.getheader("Docker-Content-Digest") == sha512(body)
    wrong = put_manifest(client, "team/app", sha512(b"other"), body)
    assert wrong.status == 400 and error_code(wrong) == "DIGEST_INVALID"
    # a chunked upload closed with a sha512 digest
    r = client.request("POST", "/v2/team/app/blobs/uploads/")
    location = r.getheader("Location")
    client.request("PATCH", location, b"chunk one ", {"Content-Range": "0-9"})
    r = client.request("PUT", f"{location}?digest={sha512(b'chunk one two')}", b"two")
    assert r.status == 201, r.body
    assert client.request("GET", f"/v2/team/app/blobs/{sha512(b'chunk one two')}").body == (
        b"chunk one two"
    )


#: The error codes of the distribution spec 1.1 and the status each is answered with.
SPEC_CODES = {
    "BLOB_UNKNOWN": 404,
    "BLOB_UPLOAD_INVALID": 400,
    "BLOB_UPLOAD_UNKNOWN": 404,
    "DIGEST_INVALID": 400,
    "MANIFEST_BLOB_UNKNOWN": 400,
    "MANIFEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "NAME_UNKNOWN": 404,
    "SIZE_INVALID": 400,
    "UNAUTHORIZED": 401,
    "DENIED": 403,
    "UNSUPPORTED": 405,
    "TOOMANYREQUESTS": 429,
}


def _codes_raised_in(package: Path) -> set[str]:
    codes = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", None)) == "RegistryError"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                codes.add(node.args[0].value)
    return codes


def test_every_spec_error_code_is_declared_with_its_status():
    for code, status in SPEC_CODES.items():
        assert STATUS[code] == status, code
    raised = _codes_raised_in(SRC / "condastore_registry") | _codes_raised_in(
        SRC / "condastore_core"
    )
    assert raised <= set(STATUS), raised - set(STATUS)


def test_error_codes_where_the_spec_says(client):
    config = b"{}"
    push_blob(client, "team/app", config)
    cases = [
        (("GET", f"/v2/team/app/blobs/{sha256(b'absent')}"), 404, "BLOB_UNKNOWN"),
        (("GET", f"/v2/team/app/manifests/{sha256(b'absent')}"), 404, "MANIFEST_UNKNOWN"),
        (("GET", "/v2/team/app/manifests/no-such-tag"), 404, "MANIFEST_UNKNOWN"),
        (("GET", "/v2/team/app/blobs/uploads/" + "0" * 32), 404, "BLOB_UPLOAD_UNKNOWN"),
        (("GET", "/v2/team/never/tags/list"), 404, "NAME_UNKNOWN"),
        (("GET", "/v2/Team/App/tags/list"), 400, "NAME_INVALID"),
        (("GET", "/v2/team/app/blobs/sha256:abc"), 400, "DIGEST_INVALID"),
        (("GET", "/v2/team/app/referrers/sha256:abc"), 400, "DIGEST_INVALID"),
        (("POST", "/v2/team/app/manifests/v1"), 405, "UNSUPPORTED"),
        (("DELETE", f"/v2/team/app/manifests/{sha256(b'absent')}"), 404, "MANIFEST_UNKNOWN"),
        (("DELETE", f"/v2/team/app/blobs/{sha256(b'absent')}"), 404, "BLOB_UNKNOWN"),
    ]
    for (method, path), status, code in cases:
        r = client.request(method, path)
        assert (r.status, error_code(r)) == (status, code), (method, path, r.body)
    r = client.request("PUT", f"/v2/team/app/blobs/uploads/{'0' * 32}?digest={sha256(b'x')}", b"x")
    assert (r.status, error_code(r)) == (404, "BLOB_UPLOAD_UNKNOWN")
    r = client.request("POST", f"/v2/team/app/blobs/uploads/?digest={sha256(b'x')}", b"y")
    assert (r.status, error_code(r)) == (400, "DIGEST_INVALID")
    r = client.request("POST", "/v2/team/app/blobs/uploads/")
    r = client.request("PUT", f"{r.getheader('Location')}?digest=sha256:nothex", b"x")
    assert (r.status, error_code(r)) == (400, "DIGEST_INVALID")
    r = put_manifest(client, "team/app", "v1", b"not json")
    assert (r.status, error_code(r)) == (400, "MANIFEST_INVALID")
    body = image(config, [(LAYER, b"never pushed")])
    r = put_manifest(client, "team/app", "v1", body)
    assert (r.status, error_code(r)) == (400, "MANIFEST_BLOB_UNKNOWN")
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [{"mediaType": MANIFEST, "digest": sha256(body), "size": len(body)}],
        }
    ).encode()
    r = put_manifest(client, "team/app", "idx", index, INDEX)
    assert (r.status, error_code(r)) == (400, "MANIFEST_BLOB_UNKNOWN")
    stranger = Client(client.url, "otto")
    r = stranger.request("GET", "/v2/team/app/tags/list")
    assert (r.status, error_code(r)) == (403, "DENIED")
    anonymous = http.client.HTTPConnection(client.conn.host, client.conn.port, timeout=60)
    anonymous.request("GET", "/v2/team/app/tags/list")
    r = anonymous.getresponse()
    r.body = r.read()
    assert (r.status, error_code(r)) == (401, "UNAUTHORIZED")


def test_an_unexpected_failure_is_answered_as_unknown_500(registry, ctx, monkeypatch):
    from condastore_core.service import discovery

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(discovery, "list_tags", broken)  # the failure, not the registry, is faked
    c = Client(registry)
    c.request("POST", "/v2/team/app/blobs/uploads/?digest=" + sha256(b"z"), b"z")
    r = c.request("GET", "/v2/team/app/tags/list")
    assert (r.status, error_code(r)) == (500, "UNKNOWN")
