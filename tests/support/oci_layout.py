"""Small OCI image layouts on disk, written by hand: bases for images and inputs for skopeo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
UNCOMPRESSED_LAYER = "application/vnd.oci.image.layer.v1.tar"


def write_layout(
    path: Path,
    files: dict[str, bytes],
    env: list[str] | None = None,
    architecture: str = "amd64",
    *,
    gzip_layer: bool = True,
    history: list[dict] | None = None,
) -> str:
    """A one-layer linux image of ``files``, tagged ``v1``; returns its manifest digest.

    With ``gzip_layer=False`` the layer is a plain tar, which registry clients
    compress on the fly when they push it (and so stream it chunked).
    """
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        hexd = hashlib.sha256(data).hexdigest()
        (blobs / hexd).write_bytes(data)
        return f"sha256:{hexd}"

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, payload in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(payload), 0, 0o755
            tf.addfile(info, io.BytesIO(payload))
    layer_tar = buf.getvalue()
    layer = gzip.compress(layer_tar, mtime=0) if gzip_layer else layer_tar
    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()],
            },
            "config": {"Env": env or []},
            **({"history": history} if history is not None else {}),
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": put(config), "size": len(config)},
            "layers": [
                {
                    "mediaType": LAYER if gzip_layer else UNCOMPRESSED_LAYER,
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


def machine_base_files() -> dict[str, bytes]:
    """A tiny runnable base from this machine: its loader, its libc family, dash as /bin/sh.

    conda-forge's binaries need exactly these from the system. Skips where the
    machine has no dash or is not a glibc system.
    """
    dash = shutil.which("dash")
    if dash is None:
        pytest.skip("dash is not installed (it is the base image's /bin/sh)")
    out = subprocess.run(["ldd", dash], capture_output=True, text=True, check=True).stdout
    needed = [Path(t) for line in out.splitlines() for t in line.split() if t.startswith("/")]
    libc = next((p for p in needed if p.name == "libc.so.6"), None)
    if libc is None:
        pytest.skip("this machine's /bin/sh is not linked to glibc")
    for name in ("libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1"):
        if (libc.parent / name).exists():
            needed.append(libc.parent / name)
    files = {str(p).lstrip("/"): p.resolve().read_bytes() for p in needed}
    files["bin/sh"] = Path(dash).read_bytes()
    return files


def unpack_layout(layout: Path, root: Path) -> dict:
    """Apply the layers of the layout's only image to ``root`` as a container engine does
    (``.wh.`` whiteouts delete, ``.wh..wh..opq`` empties a directory); returns its config."""
    index = json.loads((layout / "index.json").read_text())

    def blob(digest: str) -> bytes:
        return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()

    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    for layer in manifest["layers"]:
        data = blob(layer["digest"])
        if layer["mediaType"].endswith("gzip"):
            data = gzip.decompress(data)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members = []
            for member in tar.getmembers():
                path = Path(member.name)
                if path.name == ".wh..wh..opq":
                    for child in (root / path.parent).glob("*"):
                        _remove(child)
                elif path.name.startswith(".wh."):
                    _remove(root / path.parent / path.name.removeprefix(".wh."))
                else:
                    target = root / path
                    if target.is_symlink() or (target.exists() and not target.is_dir()):
                        target.unlink()
                    members.append(member)
            tar.extractall(root, members=members, filter="tar")
    return json.loads(blob(manifest["config"]["digest"]))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
