"""The forms of a build, by kind: their file names and media types (renderers in ``render.py``).

Kinds are part of the public API (URLs, CLI flags, database rows): add, never rename.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from condastore_core.digests import Digest


class ArtifactKind(enum.StrEnum):
    YAML = "yaml"  # environment.yaml pinned to the lock
    LOCKFILE = "lockfile"  # conda-lock.yml
    EXPLICIT = "explicit"  # @EXPLICIT list
    TARBALL = "tarball"  # conda-pack .tar.gz
    LOG = "log"  # the build log
    REQUIREMENTS = "requirements"  # pip requirements.txt with --hash (locks with pip packages)


#: File name a client saves each kind under, and its media type.
FILE_NAMES = {
    ArtifactKind.YAML: "environment.yaml",
    ArtifactKind.LOCKFILE: "conda-lock.yml",
    ArtifactKind.EXPLICIT: "explicit.txt",
    ArtifactKind.TARBALL: "environment.tar.gz",
    ArtifactKind.LOG: "build.log",
    ArtifactKind.REQUIREMENTS: "requirements.txt",
}
MEDIA_TYPES = {
    ArtifactKind.YAML: "application/yaml",
    ArtifactKind.LOCKFILE: "application/yaml",
    ArtifactKind.EXPLICIT: "text/plain; charset=utf-8",
    ArtifactKind.TARBALL: "application/gzip",
    ArtifactKind.LOG: "text/plain; charset=utf-8",
    ArtifactKind.REQUIREMENTS: "text/plain; charset=utf-8",
}

#: Each kind as an OCI artifact: tag suffix and artifact type.
ARTIFACT_TYPES = {
    ArtifactKind.LOCKFILE: ("lock", "application/vnd.condastore.lockfile.v1+yaml"),
    ArtifactKind.YAML: ("yaml", "application/vnd.condastore.environment.v1+yaml"),
    ArtifactKind.EXPLICIT: ("explicit", "application/vnd.condastore.explicit.v1+text"),
    ArtifactKind.TARBALL: ("tarball", "application/vnd.condastore.tarball.v1.tar+gzip"),
    ArtifactKind.REQUIREMENTS: (
        "requirements",
        "application/vnd.condastore.requirements.v1+text",
    ),
}


@dataclass(frozen=True)
class ArtifactInfo:
    kind: ArtifactKind
    digest: Digest
    size: int
