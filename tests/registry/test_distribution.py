"""The distribution spec v1.1 over real HTTP: push, pull, discovery, management, referrers."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests

from condastore_core.image.manifest import CONFIG, INDEX, MANIFEST

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(session, registry, name, data: bytes) -> str:
    r = session.post(f"{registry}/v2/{name}/blobs/uploads/")
    assert r.status_code == 202, r.text
    r = session.put(
        f"{registry}{r.headers['Location']}",
        params={"digest": digest(data)},
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest(data)
    return digest(data)


def image_manifest(config: bytes, layers: list[bytes], **extra) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": LAYER, "digest": digest(x), "size": len(x)} for x in layers],
        **extra,
    }
    return json.dumps(doc, indent=3).encode()  # unusual formatting: bytes must come back as is


def push_image(session, registry, name, tag, layers=(b"layer one",), **extra):
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    for blob in (config, *layers):
        push_blob(session, registry, name, blob)
    body = image_manifest(config, list(layers), **extra)
    r = session.put(
        f"{registry}/v2/{name}/manifests/{tag}", data=body, headers={"Content-Type": MANIFEST}
    )
    assert r.status_code == 201, r.text
    return body, r


def error_code(r) -> str:
    return r.json()["errors"][0]["code"]


def test_base_endpoint_and_headers(registry, admin):
    r = admin.get(f"{registry}/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    anonymous = requests.get(f"{registry}/v2/")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith('Bearer realm="')


def test_push_and_pull_an_image_by_tag_and_digest(registry, admin):
    body, r = push_image(admin, registry, "team/app", "v1")
    manifest_digest = r.headers["Docker-Content-Digest"]
    assert manifest_digest == digest(body)
    for reference in ("v1", manifest_digest):
        got = admin.get(
            f"{registry}/v2/team/app/manifests/{reference}", headers={"Accept": MANIFEST}
        )
        assert got.status_code == 200
        assert got.content == body  # the exact pushed bytes
        assert got.headers["Content-Type"] == MANIFEST
        assert got.headers["Docker-Content-Digest"] == manifest_digest
        head = admin.head(f"{registry}/v2/team/app/manifests/{reference}")
        assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(body)
    layer = admin.get(f"{registry}/v2/team/app/blobs/{digest(b'layer one')}")
    assert layer.content == b"layer one"


def test_blob_ranges(registry, admin):
    data = bytes(range(256)) * 40
    d = push_blob(admin, registry, "team/app", data)
    r = admin.get(f"{registry}/v2/team/app/blobs/{d}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    r = admin.get(f"{registry}/v2/team/app/blobs/{d}", headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == data[-5:]
    r = admin.get(f"{registry}/v2/team/app/blobs/{d}", headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416
    head = admin.head(f"{registry}/v2/team/app/blobs/{d}")
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(data)


def test_chunked_upload_and_out_of_order_chunks(registry, admin):
    data = b"0123456789" * 1000
    r = admin.post(f"{registry}/v2/team/app/blobs/uploads/")
    location = r.headers["Location"]
    r = admin.patch(
        f"{registry}{location}",
        data=data[:4000],
        headers={"Content-Range": "0-3999", "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 202 and r.headers["Range"] == "0-3999"
    skipped = admin.patch(
        f"{registry}{location}", data=data[5000:6000], headers={"Content-Range": "5000-5999"}
    )
    assert skipped.status_code == 416
    status = admin.get(f"{registry}{location}")
    assert status.status_code == 204 and status.headers["Range"] == "0-3999"
    admin.patch(
        f"{registry}{location}",
        data=data[4000:],
        headers={"Content-Range": f"4000-{len(data) - 1}"},
    )
    r = admin.put(f"{registry}{location}", params={"digest": digest(data)})
    assert r.status_code == 201
    assert admin.get(f"{registry}/v2/team/app/blobs/{digest(data)}").content == data


def test_single_post_and_mounts(registry, admin):
    data = b"posted in one go"
    r = admin.post(
        f"{registry}/v2/team/app/blobs/uploads/",
        params={"digest": digest(data)},
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201 and r.headers["Location"].endswith(digest(data))
    assert admin.head(f"{registry}/v2/team/other/blobs/{digest(data)}").status_code == 404
    r = admin.post(
        f"{registry}/v2/team/other/blobs/uploads/",
        params={"mount": digest(data), "from": "team/app"},
    )
    assert r.status_code == 201
    assert admin.get(f"{registry}/v2/team/other/blobs/{digest(data)}").content == data
    r = admin.post(f"{registry}/v2/team/third/blobs/uploads/", params={"mount": digest(data)})
    assert r.status_code == 201  # mount without from
    unknown = admin.post(
        f"{registry}/v2/team/third/blobs/uploads/",
        params={"mount": digest(b"nothing"), "from": "team/app"},
    )
    assert unknown.status_code == 202  # falls back to a fresh upload


def test_wrong_digest_and_truncated_uploads_store_nothing(registry, admin, ctx):
    data = b"the real bytes"
    r = admin.post(f"{registry}/v2/team/app/blobs/uploads/")
    r = admin.put(
        f"{registry}{r.headers['Location']}", params={"digest": digest(b"other")}, data=data
    )
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    assert admin.head(f"{registry}/v2/team/app/blobs/{digest(data)}").status_code == 404
    r = admin.post(f"{registry}/v2/team/app/blobs/uploads/")
    r = admin.put(
        f"{registry}{r.headers['Location']}", params={"digest": digest(data)}, data=data[:5]
    )
    assert r.status_code == 400
    assert not any(b.size == 5 for b in ctx.store.iterate())


def test_manifest_references_must_exist_except_subject(registry, admin):
    config = b"{}"
    push_blob(admin, registry, "team/app", config)
    body = image_manifest(config, [b"never pushed"])
    r = admin.put(
        f"{registry}/v2/team/app/manifests/bad", data=body, headers={"Content-Type": MANIFEST}
    )
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    dangling = {"mediaType": MANIFEST, "digest": digest(b"absent subject"), "size": 10}
    _, r = push_image(
        admin,
        registry,
        "team/app",
        "with-subject",
        subject=dangling,
        artifactType="application/vnd.example+type",
    )
    assert r.headers["OCI-Subject"] == dangling["digest"]
    too_big = b"{" + b" " * (5 * 1024 * 1024) + b"}"
    r = admin.put(
        f"{registry}/v2/team/app/manifests/huge", data=too_big, headers={"Content-Type": MANIFEST}
    )
    assert r.status_code in (400, 413)
    assert admin.get(f"{registry}/v2/team/app/manifests/huge").status_code == 404


def test_referrers_with_artifact_type_filter(registry, admin):
    body, r = push_image(admin, registry, "team/app", "base")
    subject = {
        "mediaType": MANIFEST,
        "digest": r.headers["Docker-Content-Digest"],
        "size": len(body),
    }
    for kind in ("application/vnd.condastore.lockfile", "application/vnd.condastore.spec"):
        push_image(
            admin,
            registry,
            "team/app",
            kind.rsplit(".", 1)[1],
            layers=(kind.encode(),),
            subject=subject,
            artifactType=kind,
        )
    r = admin.get(f"{registry}/v2/team/app/referrers/{subject['digest']}")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith(INDEX)
    assert sorted(m["artifactType"] for m in r.json()["manifests"]) == [
        "application/vnd.condastore.lockfile",
        "application/vnd.condastore.spec",
    ]
    r = admin.get(
        f"{registry}/v2/team/app/referrers/{subject['digest']}",
        params={"artifactType": "application/vnd.condastore.spec"},
    )
    assert [m["artifactType"] for m in r.json()["manifests"]] == ["application/vnd.condastore.spec"]
    assert r.headers["OCI-Filters-Applied"] == "artifactType"


def test_tags_list_paginates_and_deletes(registry, admin):
    for tag in ("c", "a", "b", "d"):
        _, r = push_image(admin, registry, "team/app", tag)
    r = admin.get(f"{registry}/v2/team/app/tags/list")
    assert r.json() == {"name": "team/app", "tags": ["a", "b", "c", "d"]}
    r = admin.get(f"{registry}/v2/team/app/tags/list", params={"n": 2})
    assert r.json()["tags"] == ["a", "b"] and 'rel="next"' in r.headers["Link"]
    r = admin.get(f"{registry}/v2/team/app/tags/list", params={"n": 2, "last": "b"})
    assert r.json()["tags"] == ["c", "d"]
    assert admin.delete(f"{registry}/v2/team/app/manifests/a").status_code == 202
    assert admin.get(f"{registry}/v2/team/app/manifests/a").status_code == 404
    manifest_digest = (
        r.headers.get("Docker-Content-Digest")
        or admin.head(f"{registry}/v2/team/app/manifests/b").headers["Docker-Content-Digest"]
    )
    assert admin.delete(f"{registry}/v2/team/app/manifests/{manifest_digest}").status_code == 202
    assert admin.get(f"{registry}/v2/team/app/tags/list").json()["tags"] == []
    assert error_code(admin.get(f"{registry}/v2/team/nothing/tags/list")) == "NAME_UNKNOWN"
    d = digest(b"layer one")
    assert admin.delete(f"{registry}/v2/team/app/blobs/{d}").status_code == 202
    assert admin.get(f"{registry}/v2/team/app/blobs/{d}").status_code == 404


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v2/Team/App/tags/list", "NAME_INVALID"),
        ("/v2/team/../etc/tags/list", None),
        ("/v2/team/app/blobs/sha256:..%2F..%2Fetc%2Fpasswd", "NAME_INVALID"),  # no endpoint
        ("/v2/team/app/blobs/md5:abc", "DIGEST_INVALID"),
        ("/v2/team/app/manifests/bad%20tag", "MANIFEST_INVALID"),
        ("/v2/team/app/blobs/uploads/not-an-upload", "BLOB_UPLOAD_UNKNOWN"),
    ],
)
def test_malformed_names_digests_and_traversal(registry, admin, path, code):
    r = admin.get(f"{registry}{path}")
    assert 400 <= r.status_code < 500
    if code is not None:
        assert error_code(r) == code


def test_token_flow_grants_only_what_rbac_allows(registry):
    anonymous = requests.get(f"{registry}/v2/team/app/tags/list")
    assert anonymous.status_code == 401
    challenge = anonymous.headers["WWW-Authenticate"]
    assert 'service="condastore"' in challenge and 'scope="repository:team/app:pull"' in challenge
    r = requests.post(f"{registry}/v2/team/app/blobs/uploads/")
    assert 'scope="repository:team/app:pull,push"' in r.headers["WWW-Authenticate"]
    assert "error=" not in r.headers["WWW-Authenticate"]  # no token was presented
    token = requests.get(
        f"{registry}/auth/token",
        auth=("vera", "a long password"),
        params={"service": "condastore", "scope": "repository:team/app:pull,push"},
    ).json()
    assert (
        token["expires_in"] > 0 and token["issued_at"] and token["token"] == token["access_token"]
    )
    bearer = {"Authorization": f"Bearer {token['token']}"}
    assert requests.get(f"{registry}/v2/team/app/tags/list", headers=bearer).status_code == 404
    r = requests.post(f"{registry}/v2/team/app/blobs/uploads/", headers=bearer)
    assert r.status_code == 403  # push was asked for, not granted: ask again, or give up
    challenge = r.headers["WWW-Authenticate"]
    assert 'scope="repository:team/app:pull,push"' in challenge
    assert 'error="insufficient_scope"' in challenge
    stranger = requests.get(
        f"{registry}/auth/token",
        auth=("otto", "a long password"),
        params={"scope": "repository:team/app:pull"},
    ).json()
    r = requests.get(
        f"{registry}/v2/team/app/tags/list",
        headers={"Authorization": f"Bearer {stranger['token']}"},
    )
    assert r.status_code == 403
    assert (
        'scope="repository:team/app:pull",error="insufficient_scope"'
        in (r.headers["WWW-Authenticate"])
    )
    bad = requests.get(f"{registry}/auth/token", auth=("vera", "wrong password"))
    assert bad.status_code == 401


def test_an_upload_resumes_after_a_server_restart(ctx, registry, admin):
    from condastore_core.service.context import Context
    from condastore_web.app import create_app
    from tests.support.live_server import live_server

    data = b"survives a restart " * 500
    r = admin.post(f"{registry}/v2/team/app/blobs/uploads/")
    location = r.headers["Location"]
    admin.patch(f"{registry}{location}", data=data[:3000], headers={"Content-Range": "0-2999"})
    restarted = Context.from_settings(ctx.settings)  # a new process: nothing kept in memory
    with live_server(create_app(restarted)) as again:
        status = admin.get(f"{again}{location}")
        assert status.status_code == 204 and status.headers["Range"] == "0-2999"
        r = admin.put(f"{again}{location}", params={"digest": digest(data)}, data=data[3000:])
        assert r.status_code == 201
        assert admin.get(f"{again}/v2/team/app/blobs/{digest(data)}").content == data
