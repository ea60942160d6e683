"""OCI image config, manifest and index documents for environment images (only JSON here)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
#: Annotation naming the conda packages a layer holds.
PACKAGES_ANNOTATION = "org.condastore.packages"

#: conda subdir -> OCI platform.
OCI_PLATFORMS = {
    "linux-64": {"architecture": "amd64", "os": "linux"},
    "linux-aarch64": {"architecture": "arm64", "os": "linux", "variant": "v8"},
    "linux-ppc64le": {"architecture": "ppc64le", "os": "linux"},
    "linux-s390x": {"architecture": "s390x", "os": "linux"},
}


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] | None = None
    platform: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.platform:
            out["platform"] = self.platform
        if self.annotations:
            out["annotations"] = self.annotations
        return out


def dumps(document: dict[str, Any]) -> bytes:
    """Stable bytes for a document: the same image always has the same digest."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def image_config(
    platform: str,
    diff_ids: list[str],
    *,
    env: list[str],
    labels: dict[str, str],
    entrypoint: list[str] | None,
    cmd: list[str] | None,
) -> bytes:
    config: dict[str, Any] = {"Env": env, "Labels": labels, "WorkingDir": "/"}
    if entrypoint:
        config["Entrypoint"] = entrypoint
    if cmd:
        config["Cmd"] = cmd
    document = {
        **OCI_PLATFORMS[platform],
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        # A fixed date: the image must not change with the day it was assembled.
        "created": "1970-01-01T00:00:00Z",
    }
    return dumps(document)


def image_manifest(
    config: Descriptor, layers: list[Descriptor], annotations: dict[str, str] | None = None
) -> bytes:
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    if annotations:
        document["annotations"] = annotations
    return dumps(document)


def image_index(manifests: list[Descriptor], annotations: dict[str, str] | None = None) -> bytes:
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [m.to_json() for m in manifests],
    }
    if annotations:
        document["annotations"] = annotations
    return dumps(document)
