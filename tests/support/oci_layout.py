"""Small OCI image layouts on disk, written by hand: bases for images and inputs for skopeo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

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
