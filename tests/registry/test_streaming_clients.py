"""Registry clients that stream chunked bodies, against ``condastore serve``: skopeo, containerd.

skopeo compresses an uncompressed layer while it pushes it, so it cannot know
its length and sends it ``Transfer-Encoding: chunked``; containerd sends every
blob and manifest that way.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.oci_layout import write_layout
from tests.support.serve import add_admin, serve

pytestmark = pytest.mark.integration
PASSWORD = "a long password"
CREDS = f"ada:{PASSWORD}"
AUTH = ("ada", PASSWORD)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("streaming") / "data"
    add_admin(data, "ada", PASSWORD)
    with serve(data) as served:
        url = served.url
        made = requests.post(
            f"{url}/api/v1/namespaces", json={"name": "team"}, auth=("ada", PASSWORD)
        )
        assert made.status_code == 201, made.text
        yield url


def run(*cmd: str) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def layout_manifest(layout: Path) -> tuple[str, dict]:
    digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    return digest, json.loads(blob(layout, digest))


def image_files() -> dict[str, bytes]:
    return {"data.bin": os.urandom(3 * 1024 * 1024 + 5), "hello.txt": b"hello\n"}


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_pushes_a_layer_it_compresses_on_the_fly(server, tmp_path):
    source = tmp_path / "layout"
    write_layout(source, image_files(), gzip_layer=False)
    _, sent = layout_manifest(source)
    host = server.removeprefix("http://")
    run(
        "skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", CREDS,
        f"oci:{source}:v1", f"docker://{host}/team/skopeo:v1",
    )  # fmt: skip
    back = tmp_path / "back"
    run(
        "skopeo", "copy", "--src-tls-verify=false", "--src-creds", CREDS,
        f"docker://{host}/team/skopeo:v1", f"oci:{back}:v1",
    )  # fmt: skip
    _, pulled = layout_manifest(back)
    assert pulled["layers"][0]["mediaType"].endswith("tar+gzip")  # compressed on the way
    layer_tar = blob(source, sent["layers"][0]["digest"])
    assert gzip.decompress(blob(back, pulled["layers"][0]["digest"])) == layer_tar
    assert blob(back, pulled["config"]["digest"]) == blob(source, sent["config"]["digest"])


@pytest.fixture
def containerd() -> Iterator[list[str]]:
    """A containerd of the test's own (root, state and socket in a temporary directory).

    Yields the ``ctr`` command line that talks to it.
    """
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        pytest.skip("containerd is not installed (Debian package containerd)")
    if os.geteuid() != 0:
        pytest.skip("containerd runs as root: its content store and snapshots need it")
    # A short directory: a unix socket's path is limited to 107 bytes.
    home = Path(tempfile.mkdtemp(prefix="ctrd-"))
    socket = home / "containerd.sock"
    config = home / "config.toml"
    config.write_text(
        'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{socket}"\n[ttrpc]\n  address = "{socket}.ttrpc"\n'
        '[debug]\n  address = ""\n'
    )
    log = open(home / "containerd.log", "wb")  # noqa: SIM115  # closed below
    proc = subprocess.Popen(
        ["containerd", "--config", str(config), "--root", str(home / "root"),
         "--state", str(home / "state"), "--address", str(socket)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    ctr = ["ctr", "--address", str(socket), "--namespace", "condastore-test"]
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([*ctr, "version"], capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"containerd did not start:\n{(home / 'containerd.log').read_text()}")
            time.sleep(0.2)
        yield ctr
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        # Snapshots may be mounted under its root while it ran; nothing of it stays mounted.
        subprocess.run(["umount", "-R", str(home / "root")], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_containerd_pushes_and_pulls(server, containerd, tmp_path):
    ctr = containerd
    layout = tmp_path / "layout"
    digest = write_layout(layout, image_files())
    _, sent = layout_manifest(layout)
    archive = tmp_path / "image.tar"
    with tarfile.open(archive, "w") as tf:
        for path in sorted(layout.rglob("*")):
            tf.add(path, arcname=str(path.relative_to(layout)), recursive=False)
    host = server.removeprefix("http://")
    ref = f"{host}/team/ctr:v1"
    run(*ctr, "images", "import", "--no-unpack", "--base-name", "local", str(archive))
    run(*ctr, "images", "tag", "local:v1", ref)
    run(*ctr, "images", "push", "--plain-http", "--user", CREDS, ref)

    answer = requests.get(f"{server}/v2/team/ctr/manifests/v1", auth=AUTH)
    assert answer.status_code == 200
    assert answer.headers["Docker-Content-Digest"] == digest
    assert answer.content == blob(layout, digest)
    for descriptor in [sent["config"], *sent["layers"]]:
        got = requests.get(
            f"{server}/v2/team/ctr/blobs/{descriptor['digest']}", auth=("ada", PASSWORD)
        )
        assert got.content == blob(layout, descriptor["digest"])

    # Pull it back into an empty namespace of containerd: fetched, verified, unpacked.
    puller = [*ctr[:-1], "condastore-pull"]
    pulled = subprocess.run(
        [*puller, "images", "pull", "--plain-http", "--user", CREDS, ref],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if pulled.returncode != 0 and ("mount" in pulled.stderr or "snapshot" in pulled.stderr):
        # Where the machine cannot mount snapshots, unpacking fails after the
        # download; fetching without unpacking still covers every registry request.
        run(*puller, "content", "fetch", "--plain-http", "--user", CREDS, ref)
    else:
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr
        listed = run(*puller, "images", "ls")
        assert ref in listed and digest in listed
    for descriptor in [sent["config"], *sent["layers"]]:
        content = subprocess.run(
            [*puller, "content", "get", descriptor["digest"]], capture_output=True, timeout=60
        )
        assert content.stdout == blob(layout, descriptor["digest"])
