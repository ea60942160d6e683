"""``condastore push`` copies a build's image and artifacts to the CNCF distribution registry."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
import requests

from tests.registry.conftest import PASSWORD
from tests.registry.test_images import image_registry  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration


@pytest.fixture
def distribution(tmp_path):
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("docker-registry (Debian package) is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "registry.yml"
    config.write_text(
        json.dumps(
            {
                "version": 0.1,
                "storage": {"filesystem": {"rootdirectory": str(tmp_path / "registry")}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    proc = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1)
            break
        except requests.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("docker-registry did not start")
            time.sleep(0.2)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


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
