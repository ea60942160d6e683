"""``condastore push`` copies a build's image and artifacts to the CNCF distribution registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests

from condastore_core.digests import Digest
from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.service import environments, namespaces, users
from condastore_core.service.context import Context
from condastore_core.service.images import prepare
from condastore_core.service.registry import find_manifest
from condastore_core.settings import load_settings
from condastore_core.spec import EnvironmentSpec
from condastore_core.store import read_all
from tests.registry.conftest import PASSWORD
from tests.registry.test_images import image_registry  # noqa: F401 - a fixture
from tests.support.gate import gate_env
from tests.support.oci_layout import write_layout
from tests.support.packages import PackageDef
from tests.support.registry import distribution_registry

pytestmark = pytest.mark.integration


@pytest.fixture
def distribution(tmp_path):
    (tmp_path / "upstream").mkdir()
    with distribution_registry(tmp_path / "upstream") as host:
        yield host


def test_push_copies_image_and_artifacts(image_registry, distribution, tmp_path):  # noqa: F811
    url = image_registry
    token = requests.post(
        f"{url}/api/v1/auth/login", json={"username": "ada", "password": PASSWORD}
    ).json()["token"]
    env = {
        **os.environ,
        "CONDASTORE_URL": url,
        "CONDASTORE_TOKEN": token,
        "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json"),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "condastore_web",
            "push",
            "default/web",
            f"{distribution}/mirror/web:v1",
            "--dest-plain-http",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    pushed = result.stdout.split()
    assert f"{distribution}/mirror/web:v1" in pushed
    assert f"{distribution}/mirror/web:v1.lock" in pushed
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    ours = requests.get(
        f"{url}/v2/default/web/manifests/latest", headers=accept, auth=("ada", PASSWORD)
    )
    theirs = requests.get(f"http://{distribution}/v2/mirror/web/manifests/v1", headers=accept)
    assert theirs.status_code == 200
    assert theirs.headers["Docker-Content-Digest"] == ours.headers["Docker-Content-Digest"]
    lock = requests.get(
        f"http://{distribution}/v2/mirror/web/manifests/v1.lock", headers=accept
    ).json()
    blob = requests.get(f"http://{distribution}/v2/mirror/web/blobs/{lock['layers'][0]['digest']}")
    assert b"package:" in blob.content  # the conda-lock.yml itself


def test_images_stand_on_a_base_pulled_once_from_an_upstream_registry(
    distribution, tmp_path, make_test_channel
):

    write_layout(tmp_path / "base", {"bin/sh": b"#!a shell"}, env=["PATH=/usr/bin:/bin"])
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--dest-tls-verify=false",
            f"oci:{tmp_path / 'base'}:v1",
            f"docker://{distribution}/base/shell:v1",
        ],
        check=True,
        capture_output=True,
    )
    channel = make_test_channel([PackageDef("hello", "1.0")])
    settings = load_settings(
        {
            "data_dir": tmp_path / "data",
            "tarball": False,
            "image_base": f"{distribution}/base/shell:v1",
        },
        environ=gate_env(),
    )
    ctx = Context.from_settings(settings)
    namespaces.create_namespace(ctx, "default")
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    ctx.jobs = InProcessQueue(ctx)
    environments.submit(
        ctx,
        "default",
        EnvironmentSpec.from_dict(
            {"name": "web", "channels": [channel], "dependencies": ["hello"]}
        ),
    )
    ctx.jobs.wait_idle(timeout=60)
    prepare(ctx, "default/web", "latest")
    found = find_manifest(ctx, "default/web", "latest")
    manifest = json.loads(read_all(ctx.store, Digest.parse(found.digest)))
    base_manifest = requests.get(
        f"http://{distribution}/v2/base/shell/manifests/v1",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    ).json()
    assert manifest["layers"][0]["digest"] == base_manifest["layers"][0]["digest"]
    config = json.loads(read_all(ctx.store, Digest.parse(manifest["config"]["digest"])))
    assert config["config"]["Entrypoint"] == ["/opt/conda/.condastore/entrypoint.sh"]
    ctx.jobs.shutdown()
