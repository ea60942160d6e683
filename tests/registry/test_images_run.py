"""A dynamic image of real conda-forge packages is pulled by podman and runs (in a chroot)."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import requests

from condastore_core.service import users
from condastore_core.service.context import Context
from condastore_core.settings import load_settings
from condastore_web.app import create_app
from tests.support.gate import gate_env
from tests.support.live_server import live_server

pytestmark = [pytest.mark.slow, pytest.mark.integration]
PASSWORD = "a long password"


def host_loader_libraries(binary: Path) -> list[Path]:
    """The system libraries ``binary`` needs from outside the environment (libc, the loader)."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    paths = []
    for line in out.splitlines():
        for token in line.split():
            if (
                token.startswith("/")
                and "/opt/conda" not in token
                and str(binary.parent.parent) not in token
            ):
                paths.append(Path(token))
    return paths


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("podman") is None,
    reason="needs root and podman (chroot, mount /proc)",
)
def test_podman_pulls_a_dynamic_image_and_zstd_runs_in_it(tmp_path, sample_channel):
    settings = load_settings(
        {"data_dir": tmp_path / "data", "channels": sample_channel, "tarball": False},
        environ=gate_env(),
    )
    ctx = Context.from_settings(settings)
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    with live_server(create_app(ctx)) as url:
        host = url.removeprefix("http://")
        image = f"{host}/conda/zstd/openssl:latest"
        subprocess.run(
            ["podman", "pull", "--tls-verify=false", "--creds", f"ada:{PASSWORD}", image],
            check=True,
            capture_output=True,
            timeout=300,
        )
        try:
            subprocess.run(
                [
                    "skopeo",
                    "copy",
                    "--src-tls-verify=false",
                    "--src-creds",
                    f"ada:{PASSWORD}",
                    f"docker://{image}",
                    f"oci:{tmp_path / 'oci'}:x",
                ],
                check=True,
                capture_output=True,
                timeout=300,
            )
            first = requests.get(
                f"{url}/v2/conda/zstd/openssl/manifests/latest", auth=("ada", PASSWORD)
            ).json()
            second = requests.get(
                f"{url}/v2/conda/xz/zstd/manifests/latest", auth=("ada", PASSWORD)
            ).json()
        finally:
            subprocess.run(["podman", "rmi", "-f", image], capture_output=True, timeout=60)
    # The second image reuses every layer of the packages both environments share.
    first_layers = {x["digest"]: x.get("annotations", {}) for x in first["layers"]}
    for layer in second["layers"][:-1]:
        packages = layer["annotations"]["org.condastore.packages"]
        if packages not in ("xz",):
            assert layer["digest"] in first_layers, f"layer of {packages} was built again"
    # Unpack the image (layers in order) and run its zstd in a chroot.
    layout = tmp_path / "oci"
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs" / "sha256" / manifest_digest).read_text())
    root = tmp_path / "rootfs"
    root.mkdir()
    for layer in manifest["layers"]:
        data = (layout / "blobs" / "sha256" / layer["digest"].split(":")[1]).read_bytes()
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tf:
            tf.extractall(root, filter="tar")
    zstd = root / "opt" / "conda" / "bin" / "zstd"
    for lib in host_loader_libraries(zstd):
        target = root / lib.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib.resolve(), target)
    (root / "proc").mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    try:
        result = subprocess.run(
            ["chroot", str(root), "/opt/conda/bin/zstd", "-V"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        subprocess.run(["umount", str(root / "proc")], check=True)
    assert result.returncode == 0, result.stderr
    assert "v1.5.5" in result.stdout
