"""What registry clients can list: a repository's tags, a manifest's referrers, the catalog.

A managed environment is an image before anyone pulls it (the store makes it
on the first request for one of its tags), so its tags come from its builds:
``latest`` for the current build and, for every completed build with a linux
platform, ``<build key>`` and ``<build key>.<suffix>`` for each artifact the
build has (``lock``, ``yaml``, ``explicit``, ``tarball``). Tags clients pushed
into the same repository join them. ``oras repo tags`` and ``skopeo list-tags``
see all of it; resolving any of these tags makes the image and its artifacts,
which are then the image's referrers.

The catalog lists managed environments and every repository that holds a
manifest, in byte order, ``n`` after ``last``, keeping only those the caller
may pull (the predicate comes from the registry's access layer).
"""

from __future__ import annotations

import contextlib
import heapq
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sqlalchemy import ColumnElement, bindparam, select

from condastore_core.db.models import (
    Artifact,
    Build,
    BuildStatus,
    Environment,
    Namespace,
    RegistryBlob,
    RegistryManifest,
    RegistryTag,
)
from condastore_core.digests import Digest
from condastore_core.errors import CondastoreError
from condastore_core.image import manifest as mt
from condastore_core.image.manifest import OCI_PLATFORMS
from condastore_core.service.context import Context
from condastore_core.service.registry import (
    NAME_PATTERN,
    RegistryError,
    artifact_type_of,
    parse_digest,
)
from condastore_core.service.reserved import ARTIFACT_TAG_SUFFIXES, LATEST
from condastore_core.service.tenancy import is_managed_environment
from condastore_core.solve import native_platform
from condastore_core.store import read_all

#: Repositories read from the database at a time while a catalog page fills.
CATALOG_BATCH = 500


def _bytewise(ctx: Context, column: Any) -> ColumnElement:
    """Compare and order by bytes, as clients and ``last`` expect (PostgreSQL may not)."""
    return column.collate("C") if ctx.engine.dialect.name == "postgresql" else column


# -- tags ------------------------------------------------------------------------------


_BUILDS = (
    select(Build.id, Build.build_key, Build.platforms, Environment.current_build_id)
    .join(Environment, Build.environment_id == Environment.id)
    .join(Namespace, Environment.namespace_id == Namespace.id)
    .where(
        Namespace.name == bindparam("namespace"),
        Namespace.deleted_at.is_(None),
        Environment.name == bindparam("name"),
        Environment.deleted_at.is_(None),
        Build.status == BuildStatus.COMPLETED,
        Build.deleted_at.is_(None),
        Build.build_key.is_not(None),
    )
)


def environment_tags(ctx: Context, repository: str) -> set[str]:
    """The tags the store answers for a managed environment, made or not yet."""
    namespace, _, name = repository.partition("/")
    builds = [
        row
        for row in ctx.rows(_BUILDS, {"namespace": namespace, "name": name})
        if any(p in OCI_PLATFORMS for p in row.platforms or [native_platform()])
    ]
    if not builds:
        return set()
    with ctx.sessions() as session:
        kinds = session.execute(
            select(Artifact.build_id, Artifact.kind).where(
                Artifact.build_id.in_([b.id for b in builds])
            )
        ).all()
    suffixes = {kind.value: suffix for kind, suffix in ARTIFACT_TAG_SUFFIXES.items()}
    tags = {b.build_key for b in builds}
    keys = {b.id: b.build_key for b in builds}
    tags |= {f"{keys[build_id]}.{suffixes[kind]}" for build_id, kind in kinds if kind in suffixes}
    if any(b.id == b.current_build_id for b in builds):
        tags.add(LATEST)
    return tags


def repository_exists(ctx: Context, repository: str) -> bool:
    if is_managed_environment(ctx, repository):
        return True
    with ctx.sessions() as session:
        for model in (RegistryManifest, RegistryBlob, RegistryTag):
            if session.scalar(select(model.id).where(model.repository == repository).limit(1)):
                return True
    return False


def list_tags(ctx: Context, repository: str, n: int | None, last: str | None) -> list[str]:
    """Sorted tags after ``last``, at most ``n``; NAME_UNKNOWN for an unknown repository."""
    if not repository_exists(ctx, repository):
        raise RegistryError("NAME_UNKNOWN", f"repository {repository} is not known")
    if n == 0:
        return []
    name = _bytewise(ctx, RegistryTag.name)
    stmt = select(RegistryTag.name).where(RegistryTag.repository == repository)
    if last:
        stmt = stmt.where(name > last)
    stmt = stmt.order_by(name)
    if n is not None:
        stmt = stmt.limit(n)
    with ctx.sessions() as session:
        stored = set(session.scalars(stmt))
    made = {t for t in environment_tags(ctx, repository) if not last or t > last}
    return sorted(stored | made)[:n]


# -- referrers -------------------------------------------------------------------------


def referrers(
    ctx: Context, repository: str, digest: Digest, artifact_type: str | None
) -> list[dict[str, Any]]:
    """Descriptors of the manifests whose subject is ``digest``, of ``artifact_type`` if given.

    Image manifests stored before their config's type was recorded as their
    artifactType get it from their bytes here (the filter is applied after),
    so they need no migration.
    """
    with ctx.sessions() as session:
        stmt = select(RegistryManifest).where(
            RegistryManifest.repository == repository, RegistryManifest.subject == str(digest)
        )
        rows = session.scalars(stmt.order_by(RegistryManifest.id)).all()
    out = []
    for row in rows:
        kind = row.artifact_type
        if kind is None and row.media_type == mt.MANIFEST:
            with contextlib.suppress(CondastoreError, ValueError):  # unreadable: listed bare
                doc = json.loads(read_all(ctx.store, parse_digest(row.digest)))
                kind = artifact_type_of(doc, row.media_type) if isinstance(doc, dict) else None
        if artifact_type and kind != artifact_type:
            continue
        descriptor: dict[str, Any] = {
            "mediaType": row.media_type,
            "digest": row.digest,
            "size": row.size,
        }
        if kind:
            descriptor["artifactType"] = kind
        if row.annotations:
            descriptor["annotations"] = row.annotations
        out.append(descriptor)
    return out


# -- catalog ---------------------------------------------------------------------------


def _pushed_repositories(ctx: Context, last: str | None) -> Iterator[str]:
    """Repositories holding a manifest, in byte order, read a batch at a time."""
    column = _bytewise(ctx, RegistryManifest.repository)
    while True:
        stmt = select(column).distinct()  # PostgreSQL orders DISTINCT by what it selects
        if last:
            stmt = stmt.where(column > last)
        batch = list(ctx.rows(stmt.order_by(column).limit(CATALOG_BATCH)))
        yield from (row[0] for row in batch)
        if len(batch) < CATALOG_BATCH:
            return
        last = batch[-1][0]


_ENVIRONMENTS = (
    select(Namespace.name, Environment.name)
    .join(Namespace, Environment.namespace_id == Namespace.id)
    .where(Namespace.deleted_at.is_(None), Environment.deleted_at.is_(None))
)


def _environment_repositories(ctx: Context, last: str | None) -> list[str]:
    names = (f"{namespace}/{name}" for namespace, name in ctx.rows(_ENVIRONMENTS))
    return sorted(r for r in names if (not last or r > last) and NAME_PATTERN.match(r))


def _unique(names: Iterable[str]) -> Iterator[str]:
    previous = None
    for name in names:
        if name != previous:
            yield name
        previous = name


def catalog(ctx: Context, may_pull: Callable[[str], bool], n: int, last: str | None) -> list[str]:
    """Up to ``n`` repositories after ``last`` that the caller may pull, in byte order."""
    page: list[str] = []
    if n <= 0:
        return page
    merged = heapq.merge(_pushed_repositories(ctx, last), _environment_repositories(ctx, last))
    for repository in _unique(merged):
        if may_pull(repository):
            page.append(repository)
            if len(page) == n:
                break
    return page
