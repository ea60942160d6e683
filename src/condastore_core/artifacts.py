"""The forms of a build, by kind, and the renderers of the text ones.

Kinds are part of the public API (URLs, CLI flags, database rows): add, never rename.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import yaml

from condastore_core.digests import Digest
from condastore_core.lock import Lock, to_conda_lock_yaml, to_explicit
from condastore_core.spec import EnvironmentSpec


class ArtifactKind(enum.StrEnum):
    YAML = "yaml"  # environment.yaml pinned to the lock
    LOCKFILE = "lockfile"  # conda-lock.yml
    EXPLICIT = "explicit"  # @EXPLICIT list
    TARBALL = "tarball"  # conda-pack .tar.gz
    LOG = "log"  # the build log


#: File name a client saves each kind under, and its media type.
FILE_NAMES = {
    ArtifactKind.YAML: "environment.yaml",
    ArtifactKind.LOCKFILE: "conda-lock.yml",
    ArtifactKind.EXPLICIT: "explicit.txt",
    ArtifactKind.TARBALL: "environment.tar.gz",
    ArtifactKind.LOG: "build.log",
}
MEDIA_TYPES = {
    ArtifactKind.YAML: "application/yaml",
    ArtifactKind.LOCKFILE: "application/yaml",
    ArtifactKind.EXPLICIT: "text/plain; charset=utf-8",
    ArtifactKind.TARBALL: "application/gzip",
    ArtifactKind.LOG: "text/plain; charset=utf-8",
}


@dataclass(frozen=True)
class ArtifactInfo:
    kind: ArtifactKind
    digest: Digest
    size: int


def pinned_environment_yaml(spec: EnvironmentSpec, lock: Lock, platform: str) -> str:
    """``environment.yaml`` with every package pinned to ``name=version=build``."""
    data: dict[str, object] = {
        "name": spec.name,
        "channels": list(lock.channels),
        "dependencies": [f"{r.name}={r.version}={r.build}" for r in lock.records(platform)],
    }
    if spec.variables:
        data["variables"] = dict(spec.variables)
    if spec.description:
        data["description"] = spec.description
    header = f"# pinned for {platform}; lock_hash: {lock.lock_hash}\n"
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def render_text_artifacts(
    spec: EnvironmentSpec, lock: Lock, platform: str
) -> dict[ArtifactKind, bytes]:
    return {
        ArtifactKind.YAML: pinned_environment_yaml(spec, lock, platform).encode(),
        ArtifactKind.LOCKFILE: to_conda_lock_yaml(lock, spec_hash=spec.spec_hash).encode(),
        ArtifactKind.EXPLICIT: to_explicit(lock, platform).encode(),
    }
