"""OCI image config, manifest and index documents for environment images (only JSON here)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
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
#: The pre-defined OCI annotations an image carries (on its manifest, and as config labels).
CREATED = "org.opencontainers.image.created"
TITLE = "org.opencontainers.image.title"
DESCRIPTION = "org.opencontainers.image.description"
SOURCE = "org.opencontainers.image.source"
VERSION = "org.opencontainers.image.version"
REVISION = "org.opencontainers.image.revision"

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


@dataclass(frozen=True)
class ImageInfo:
    """What an image says of itself, as the OCI annotations users and tools read.

    ``revision`` is the build key; ``created`` comes from the lock (its newest
    package), never from a clock, so the same lock gives the same image bytes.
    """

    title: str = ""
    description: str = ""
    source: str = ""
    version: str = ""
    revision: str = ""

    def annotations(self, created: str) -> dict[str, str]:
        values = {
            CREATED: created,
            TITLE: self.title,
            DESCRIPTION: self.description,
            SOURCE: self.source,
            VERSION: self.version,
            REVISION: self.revision,
        }
        return {k: v for k, v in values.items() if v}


def created_at(epoch: int | None) -> str:
    """RFC 3339 time of ``epoch`` seconds (a lock's date); the epoch itself when unknown."""
    moment = dt.datetime.fromtimestamp(max(0, epoch or 0), dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def layer_history(
    base: Sequence[Mapping[str, Any]], layers: Sequence[str], created: str
) -> list[dict[str, Any]]:
    """The config's ``history``: the base's entries as they are, then one per layer made here.

    ``layers`` says what each layer holds (its packages), in layer order.
    """
    return [
        *(dict(entry) for entry in base),
        *({"created": created, "created_by": f"condastore: {what}"} for what in layers),
    ]


def describe_layers(contents: Sequence[Sequence[str]], full: Mapping[str, str]) -> list[str]:
    """What each layer holds, for the history: its packages (``full`` names them), or the
    environment's own files when it holds no package."""
    return [
        ("conda packages " if len(names) > 1 else "conda package ")
        + " ".join(full.get(n, n) for n in names)
        if names
        else "the environment's own files (conda-meta/history, entrypoint)"
        for names in contents
    ]


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
    created: str = "1970-01-01T00:00:00Z",
    history: list[dict[str, Any]] | None = None,
) -> bytes:
    config: dict[str, Any] = {"Env": env, "Labels": labels, "WorkingDir": "/"}
    if entrypoint:
        config["Entrypoint"] = entrypoint
    if cmd:
        config["Cmd"] = cmd
    document: dict[str, Any] = {
        **OCI_PLATFORMS[platform],
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        # The lock's date: the image must not change with the day it was assembled.
        "created": created,
    }
    if history:
        document["history"] = history
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
