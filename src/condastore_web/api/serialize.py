"""The JSON shape of each resource; database rows never leave the server as they are."""

from __future__ import annotations

import datetime as dt
from typing import Any

from condastore_core.db.models import Artifact, Build, Environment, Namespace, as_utc
from condastore_core.service.pagination import Page

API = "/api/v1"


def _time(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return as_utc(value).isoformat().replace("+00:00", "Z")


def namespace(ns: Namespace) -> dict[str, Any]:
    return {"name": ns.name, "created_at": _time(ns.created_at)}


def environment(env: Environment) -> dict[str, Any]:
    current = env.current_build
    return {
        "namespace": env.namespace.name,
        "name": env.name,
        "description": env.description,
        "current_build_id": env.current_build_id,
        "current_build_key": current.build_key if current is not None else None,
        "created_at": _time(env.created_at),
        "updated_at": _time(env.updated_at),
    }


def artifact(a: Artifact) -> dict[str, Any]:
    return {
        "kind": a.kind,
        "digest": a.digest,
        "size": a.size,
        "url": f"{API}/builds/{a.build_id}/artifacts/{a.kind}",
    }


def build(b: Build) -> dict[str, Any]:
    return {
        "id": b.id,
        "namespace": b.environment.namespace.name,
        "environment": b.environment.name,
        "status": b.status.value,
        "step": b.step,
        "spec_hash": b.specification.spec_hash,
        "lock_hash": b.lock_hash,
        "build_key": b.build_key,
        "platforms": list(b.platforms),
        "size": b.size,
        "error": b.error,
        "artifact_errors": dict(b.artifact_errors or {}),
        "reused_build_id": b.reused_build_id,
        "submitted_by": b.submitted_by,
        "queued_at": _time(b.queued_at),
        "started_at": _time(b.started_at),
        "ended_at": _time(b.ended_at),
        "artifacts": [artifact(a) for a in sorted(b.artifacts, key=lambda a: a.kind)],
    }


def page(p: Page[Any], shape) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {"items": [shape(item) for item in p.items], "next_cursor": p.next_cursor}
