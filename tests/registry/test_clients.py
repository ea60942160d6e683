"""Real registry clients against the registry, through the token flow: oras, skopeo, podman."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile

import pytest
import requests
from oras.client import OrasClient
from oras.oci import Subject

from condastore_core.image.manifest import CONFIG, MANIFEST
from tests.registry.conftest import PASSWORD
from tests.registry.test_distribution import push_image

pytestmark = pytest.mark.integration
LOCKFILE_TYPE = "application/vnd.condastore.lockfile.v1+yaml"


def oras_client(registry: str, user: str) -> OrasClient:
    """oras-py with Basic auth on every request: its token backend keeps a pull-only token
    for the pushes that follow (skopeo and podman exercise the token flow instead)."""
    host = registry.removeprefix("http://")
    client = OrasClient(hostname=host, insecure=True, auth_backend="basic")
    client.login(username=user, password=PASSWORD, hostname=host, tls_verify=False)
    return client


def test_oras_pushes_an_artifact_with_a_subject_and_pulls_it(
    registry, admin, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    body, r = push_image(admin, registry, "team/app", "v1")
    subject = Subject(MANIFEST, r.headers["Docker-Content-Digest"], len(body))
    (tmp_path / "conda-lock.yml").write_text("version: 1\npackage: []\n")
    (tmp_path / "config.json").write_text("{}")
    host = registry.removeprefix("http://")
    client = oras_client(registry, "ada")
    client.push(
        target=f"{host}/team/app:v1.lock",
        files=["conda-lock.yml"],
        manifest_config=f"config.json:{LOCKFILE_TYPE}",
        subject=subject,
    )
    referrers = admin.get(
        f"{registry}/v2/team/app/referrers/{subject.digest}", params={"artifactType": LOCKFILE_TYPE}
    ).json()["manifests"]
    assert [m["artifactType"] for m in referrers] == [LOCKFILE_TYPE]
    out = tmp_path / "out"
    files = client.pull(target=f"{host}/team/app:v1.lock", outdir=str(out))
    assert [p.rsplit("/", 1)[1] for p in files] == ["conda-lock.yml"]
    assert (out / "conda-lock.yml").read_text() == "version: 1\npackage: []\n"


def test_oras_viewer_pulls_but_cannot_push(registry, admin, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("hello")
    host = registry.removeprefix("http://")
    oras_client(registry, "ada").push(target=f"{host}/team/app:file", files=["a.txt"])
    viewer = oras_client(registry, "vera")
    viewer.pull(target=f"{host}/team/app:file", outdir=str(tmp_path / "v"))
    assert (tmp_path / "v" / "a.txt").read_text() == "hello"
    with pytest.raises((ValueError, requests.HTTPError, SystemExit)):
        viewer.push(target=f"{host}/team/app:other", files=["a.txt"])
    assert admin.get(f"{registry}/v2/team/app/manifests/other").status_code == 404


def test_oras_token_backend_pushes_after_a_pull_token(registry, admin, tmp_path, monkeypatch):
    """oras-py's token backend first gets a pull token (a HEAD of the blob), then must trade
    it for a push token when the upload is refused with ``error="insufficient_scope"``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("pushed through the token flow")
    host = registry.removeprefix("http://")
    client = OrasClient(hostname=host, insecure=True, auth_backend="token")
    client.login(username="ada", password=PASSWORD, hostname=host, tls_verify=False)
    client.push(target=f"{host}/team/app:token", files=["a.txt"])
    client.pull(target=f"{host}/team/app:token", outdir=str(tmp_path / "out"))
    assert (tmp_path / "out" / "a.txt").read_text() == "pushed through the token flow"
    viewer = OrasClient(hostname=host, insecure=True, auth_backend="token")
    viewer.login(username="vera", password=PASSWORD, hostname=host, tls_verify=False)
    with pytest.raises((ValueError, requests.HTTPError, SystemExit)):
        viewer.push(target=f"{host}/team/app:viewer", files=["a.txt"])
    assert admin.get(f"{registry}/v2/team/app/manifests/viewer").status_code == 404


def oci_layout(path) -> str:  # type: ignore[no-untyped-def]
    """A one-layer image in an OCI layout directory; returns its manifest digest."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        hexd = hashlib.sha256(data).hexdigest()
        (blobs / hexd).write_bytes(data)
        return f"sha256:{hexd}"

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("hello.txt")
        payload = b"hello from the layer\n"
        info.size, info.mtime = len(payload), 0
        tf.addfile(info, io.BytesIO(payload))
    layer_tar = buf.getvalue()
    layer = gzip.compress(layer_tar, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()],
            },
            "config": {},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": put(config), "size": len(config)},
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": put(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    digest = put(manifest)
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": MANIFEST,
                        "digest": digest,
                        "size": len(manifest),
                        "annotations": {"org.opencontainers.image.ref.name": "v1"},
                    }
                ],
            }
        )
    )
    return digest


def run(*cmd: str) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_copies_in_and_out_with_identical_digests(registry, tmp_path):
    digest = oci_layout(tmp_path / "layout")
    host = registry.removeprefix("http://")
    creds = f"ada:{PASSWORD}"
    run(
        "skopeo",
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        creds,
        f"oci:{tmp_path / 'layout'}:v1",
        f"docker://{host}/team/app:v1",
    )
    raw = run(
        "skopeo",
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        creds,
        f"docker://{host}/team/app:v1",
    )
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == digest
    run(
        "skopeo",
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        creds,
        f"docker://{host}/team/app:v1",
        f"oci:{tmp_path / 'back'}:v1",
    )
    index = json.loads((tmp_path / "back" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest
    viewer = f"vera:{PASSWORD}"
    denied = subprocess.run(
        [
            "skopeo",
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            viewer,
            f"oci:{tmp_path / 'layout'}:v1",
            f"docker://{host}/team/app:v2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert denied.returncode != 0


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
def test_podman_pulls(registry, tmp_path):
    digest = oci_layout(tmp_path / "layout")
    host = registry.removeprefix("http://")
    run(
        "skopeo",
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"ada:{PASSWORD}",
        f"oci:{tmp_path / 'layout'}:v1",
        f"docker://{host}/team/app:v1",
    )
    image = f"{host}/team/app:v1"
    try:
        run("podman", "pull", "--tls-verify=false", "--creds", f"vera:{PASSWORD}", image)
        digests = run("podman", "image", "inspect", "--format", "{{.Digest}}", image)
        assert digests.strip() == digest
    finally:
        subprocess.run(["podman", "rmi", "-f", image], capture_output=True, timeout=60)


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_still_pulls_after_garbage_collection(registry, ctx, tmp_path):
    from condastore_core.service.gc import collect

    digest = oci_layout(tmp_path / "layout")
    host = registry.removeprefix("http://")
    creds = f"ada:{PASSWORD}"
    run(
        "skopeo",
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        creds,
        f"oci:{tmp_path / 'layout'}:v1",
        f"docker://{host}/team/app:v1",
    )
    report = collect(ctx, grace_seconds=0, prune_untagged=True)
    assert report.manifests_pruned == 0
    run(
        "skopeo",
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        creds,
        f"docker://{host}/team/app:v1",
        f"oci:{tmp_path / 'back'}:v1",
    )
    index = json.loads((tmp_path / "back" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_copies_between_repositories_by_mounting_what_it_may_pull(registry, tmp_path):
    """containers/image asks for pull on the source and mounts its blobs across repositories."""
    digest = oci_layout(tmp_path / "layout")
    host = registry.removeprefix("http://")
    run(
        "skopeo",
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"ada:{PASSWORD}",
        f"oci:{tmp_path / 'layout'}:v1",
        f"docker://{host}/team/app:v1",
    )
    run(
        "skopeo",
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-creds",
        f"vera:{PASSWORD}",
        "--dest-creds",
        f"vera:{PASSWORD}",
        f"docker://{host}/team/app:v1",
        f"docker://{host}/vera/copy:v1",
    )
    raw = run(
        "skopeo",
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        f"vera:{PASSWORD}",
        f"docker://{host}/vera/copy:v1",
    )
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == digest


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
def test_podman_pushes_what_it_pulled_into_the_users_own_namespace(registry, tmp_path):
    """podman asks for ``pull,push`` on the target and ``pull`` on where the blobs came from,
    and mounts them from there."""
    digest = oci_layout(tmp_path / "layout")
    host = registry.removeprefix("http://")
    run(
        "skopeo",
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"ada:{PASSWORD}",
        f"oci:{tmp_path / 'layout'}:v1",
        f"docker://{host}/team/app:v1",
    )
    image = f"{host}/team/app:v1"
    try:
        run("podman", "pull", "--tls-verify=false", "--creds", f"vera:{PASSWORD}", image)
        run(
            "podman",
            "push",
            "--tls-verify=false",
            "--creds",
            f"vera:{PASSWORD}",
            image,
            f"docker://{host}/vera/mine:v1",
        )
        raw = run(
            "skopeo",
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            f"vera:{PASSWORD}",
            f"docker://{host}/vera/mine:v1",
        )
        original = json.loads((tmp_path / "layout" / "blobs" / "sha256" / digest[7:]).read_text())
        assert json.loads(raw)["layers"][0]["digest"] == original["layers"][0]["digest"]
        denied = subprocess.run(
            ["podman", "push", "--tls-verify=false", "--creds", f"otto:{PASSWORD}", image],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert denied.returncode != 0  # otto may not push into team/app
    finally:
        subprocess.run(["podman", "rmi", "-f", image], capture_output=True, timeout=60)
