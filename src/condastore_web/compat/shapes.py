"""conda-store's JSON for namespaces, environments, builds, packages and channels.

Rows come from condastore's own tables; ids are theirs. Times are naive UTC
ISO strings, as conda-store's FastAPI models print them. Artifact kinds map
to conda-store's ``BuildArtifactType`` names; the explicit list has none.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

from condastore_core.artifacts import ArtifactKind
from condastore_core.db.models import Artifact, Build, BuildPackage, Environment, Namespace, as_utc

ARTIFACT_TYPES = {
    ArtifactKind.YAML.value: "YAML",
    ArtifactKind.LOCKFILE.value: "LOCKFILE",
    ArtifactKind.TARBALL.value: "CONDA_PACK",
    ArtifactKind.LOG.value: "LOGS",
}
#: conda-store's artifact names in ``GET /build/?artifact=`` -> our kinds.
KINDS = {name: kind for kind, name in ARTIFACT_TYPES.items()}


def time(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return as_utc(value).replace(tzinfo=None).isoformat()


def channel_id(channels: Sequence[str], name: str) -> int:
    """A channel's id: its place among the configured channels, else a stable number."""
    if name in channels:
        return channels.index(name) + 1
    digest = hashlib.sha256(name.encode()).digest()
    return 1000 + int.from_bytes(digest[:3], "big")


def channel(channels: Sequence[str], name: str) -> dict[str, Any]:
    return {"id": channel_id(channels, name), "name": name}


def namespace_brief(ns: Namespace) -> dict[str, Any]:
    """As conda-store lists them: defaults (metadata, role mappings) left out."""
    return {"id": ns.id, "name": ns.name}


def namespace(ns: Namespace, role_mappings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "id": ns.id,
        "name": ns.name,
        "metadata_": {},
        "role_mappings": role_mappings or [],
    }


def environment(env: Environment, current_build_id: int | None) -> dict[str, Any]:
    return {
        "id": env.id,
        "namespace": namespace(env.namespace),
        "name": env.name,
        "current_build_id": current_build_id,
        "description": env.description,
    }


def artifact(a: Artifact) -> dict[str, Any] | None:
    kind = ARTIFACT_TYPES.get(a.kind)
    if kind is None:
        return None
    return {"id": a.id, "artifact_type": kind, "key": a.digest}


def build_brief(b: Build) -> dict[str, Any]:
    """A build as conda-store lists them: no specification, packages or artifacts."""
    return {
        "id": b.id,
        "environment_id": b.environment_id,
        "status": b.status.value,
        "status_info": b.error or (b.step or None),
        "size": b.size or 0,
        "scheduled_on": time(b.queued_at),
        "started_on": time(b.started_at),
        "ended_on": time(b.ended_at),
    }


def build(b: Build) -> dict[str, Any]:
    spec = b.specification
    artifacts = [artifact(a) for a in sorted(b.artifacts, key=lambda a: a.id)]
    return {
        **build_brief(b),
        "specification": {
            "id": spec.id,
            "name": spec.name,
            "spec": spec.spec,
            "sha256": spec.spec_hash,
            "created_on": time(spec.created_at),
        },
        "build_artifacts": [a for a in artifacts if a is not None],
    }


def package(channels: Sequence[str], p: BuildPackage) -> dict[str, Any]:
    return {
        "id": p.id,
        "channel": channel(channels, p.channel),
        "license": None,
        "name": p.name,
        "version": p.version,
        "summary": None,
    }
