"""The registry browser: a pushed repository, its tags, manifest, layers and referrers."""

from __future__ import annotations

import json
import re

import pytest
import requests

from condastore_core.service import namespaces, users
from condastore_web.app import create_app
from tests.registry.test_distribution import digest, push_blob, push_image
from tests.support.live_server import live_server
from tests.ui.test_forms import browser

PASSWORD = "a long password"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


@pytest.fixture
def registry(ctx):
    namespaces.create_namespace(ctx, "team")
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    users.create_user(ctx, "otto", PASSWORD)
    with live_server(create_app(ctx)) as url:
        yield url


@pytest.fixture
def admin(registry):
    session = requests.Session()
    session.auth = ("ada", PASSWORD)
    return session


def test_a_pushed_image_from_repositories_to_referrers(registry, admin):
    url = registry
    annotated = {"annotations": {"org.condastore.packages": "zlib-1.3.1-h4ab18f5_1"}}
    body, pushed = push_image(admin, url, "team/app", "v1", layers=(b"layer one", b"two"))
    doc = json.loads(body)
    doc["layers"][0].update(annotated)
    body = json.dumps(doc).encode()
    r = admin.put(
        f"{url}/v2/team/app/manifests/v2", data=body, headers={"Content-Type": doc["mediaType"]}
    )
    assert r.status_code == 201, r.text
    subject = r.headers["Docker-Content-Digest"]
    sbom = b'{"spdx": true}'
    push_blob(admin, url, "team/app", sbom)
    empty = b"{}"
    push_blob(admin, url, "team/app", empty)
    referrer = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/spdx+json",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": digest(empty),
            "size": 2,
        },
        "layers": [
            {"mediaType": "application/spdx+json", "digest": digest(sbom), "size": len(sbom)}
        ],
        "subject": {"mediaType": doc["mediaType"], "digest": subject, "size": len(body)},
    }
    r = admin.put(
        f"{url}/v2/team/app/manifests/sbom",
        data=json.dumps(referrer).encode(),
        headers={"Content-Type": referrer["mediaType"]},
    )
    assert r.status_code == 201, r.text

    ada = browser(url, "ada")
    listing = ada.get(f"{url}/ui/registry", timeout=10).text
    assert "team/app" in listing
    repo = ada.get(f"{url}/ui/registry/repository", params={"name": "team/app"}, timeout=10)
    assert repo.status_code == 200 and ">v1<" in repo.text and ">v2<" in repo.text
    page = ada.get(
        f"{url}/ui/registry/manifest", params={"name": "team/app", "ref": "v2"}, timeout=10
    ).text
    assert subject in page
    assert "zlib-1.3.1-h4ab18f5_1" in page  # the package a layer holds
    assert "application/spdx+json" in page  # the referrer
    host = url.removeprefix("http://")
    assert f"podman pull --tls-verify=false {host}/team/app:v2" in page
    assert f"oras pull --plain-http {host}/team/app:v2" in page
    assert re.search(r'data-copy="pull-image"', page)
    by_digest = ada.get(
        f"{url}/ui/registry/manifest", params={"name": "team/app", "ref": subject}, timeout=10
    )
    assert by_digest.status_code == 200 and f"@{subject}" in by_digest.text

    # otto may pull nothing of team: the repository does not exist for him.
    otto = browser(url, "otto")
    assert "team/app" not in otto.get(f"{url}/ui/registry", timeout=10).text
    for path, params in (
        ("repository", {"name": "team/app"}),
        ("manifest", {"name": "team/app", "ref": "v1"}),
    ):
        r = otto.get(f"{url}/ui/registry/{path}", params=params, timeout=10)
        assert r.status_code == 404 and "team/app" in r.text
    assert pushed.status_code == 201
    r = requests.get(
        f"{url}/ui/registry/manifest", params={"name": "team/app", "ref": "x"}, timeout=10
    )
    assert r.status_code == 404
