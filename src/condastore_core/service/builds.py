"""Builds: look them up, list them by status, environment or package, cancel, rebuild,
and make a build's tarball again."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from condastore_core.artifacts import ArtifactKind
from condastore_core.db.models import (
    Artifact,
    Build,
    BuildPackage,
    BuildStatus,
    Environment,
    Namespace,
    as_utc,
    utcnow,
    valid_id,
)
from condastore_core.errors import BuildNotFound, Conflict, InvalidRequest, NotFound
from condastore_core.service.context import Context
from condastore_core.service.environments import check_free_space, enqueue_build
from condastore_core.service.pagination import Page, paginate
from condastore_core.service.visibility import Visibility


def find_build(session: Session, build_id: int) -> Build:
    build = session.get(Build, build_id) if valid_id(build_id) else None
    if build is None or build.deleted_at is not None:
        raise BuildNotFound(f"build {build_id} does not exist")
    return build


def tarball_pending(ctx: Context, build: Build) -> bool:
    """Whether a completed build's tarball is still to come (its packing job is queued or runs).

    A build is followed (its log, its page) until then; a packing job lost for longer
    than a build may take is not waited for.
    """
    if build.status != BuildStatus.COMPLETED or not ctx.settings.tarball or ctx.jobs is None:
        return False
    kind = ArtifactKind.TARBALL.value
    if build.build_key is None or kind in (build.artifact_errors or {}):
        return False
    if any(a.kind == kind for a in build.artifacts):
        return False
    ended = as_utc(build.ended_at) if build.ended_at is not None else None
    timeout = dt.timedelta(seconds=ctx.settings.build_timeout_seconds)
    return ended is None or dt.datetime.now(dt.UTC) - ended < timeout


def get_build(ctx: Context, build_id: int) -> Build:
    with ctx.sessions() as session:
        return find_build(session, build_id)


def list_builds(
    ctx: Context,
    *,
    status: str | None = None,
    namespace: str | None = None,
    environment: str | None = None,
    package: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
    visible: Visibility | None = None,
) -> Page[Build]:
    with ctx.sessions() as session:
        stmt = (
            select(Build)
            .join(Environment, Build.environment_id == Environment.id)
            .join(Namespace, Environment.namespace_id == Namespace.id)
            .where(Build.deleted_at.is_(None))
        )
        if status:
            try:
                stmt = stmt.where(Build.status == BuildStatus(status.upper()))
            except ValueError:
                names = ", ".join(s.value for s in BuildStatus)
                raise InvalidRequest(f"unknown status {status!r} (one of {names})") from None
        if namespace:
            stmt = stmt.where(Namespace.name == namespace)
        if environment:
            stmt = stmt.where(Environment.name == environment)
        if package:
            stmt = stmt.where(
                Build.id.in_(select(BuildPackage.build_id).where(BuildPackage.name == package))
            )
        if visible is None:
            return paginate(session, stmt, Build.id, limit, cursor)
        stmt = stmt.where(visible.clause(Namespace.name, Environment.name))
        page = paginate(session, stmt, Build.id, limit, cursor)
        items = [
            b
            for b in page.items
            if visible.can_read(b.environment.namespace.name, b.environment.name)
        ]
        return Page(items, page.next_cursor)


def build_packages(ctx: Context, build_id: int) -> list[BuildPackage]:
    with ctx.sessions() as session:
        find_build(session, build_id)
        return list(
            session.scalars(
                select(BuildPackage)
                .where(BuildPackage.build_id == build_id)
                .order_by(BuildPackage.platform, BuildPackage.name)
            )
        )


def find_artifact(ctx: Context, build_id: int, kind: str) -> Artifact:
    try:
        kind = ArtifactKind(kind).value
    except ValueError:
        names = ", ".join(k.value for k in ArtifactKind)
        raise InvalidRequest(f"unknown artifact kind {kind!r} (one of {names})") from None
    with ctx.sessions() as session:
        build = find_build(session, build_id)
        for artifact in build.artifacts:
            if artifact.kind == kind:
                return artifact
    raise NotFound(f"build {build_id} has no {kind} artifact (status {build.status.value})")


def cancel_build(ctx: Context, build_id: int) -> Build:
    """Cancel a queued build at once; ask a running one to stop at its next step."""
    with ctx.sessions.begin() as session:
        build = find_build(session, build_id)
        if build.status.finished:
            raise Conflict(f"build {build_id} is already {build.status.value}")
        build.cancel_requested = True
        if build.status == BuildStatus.QUEUED:
            build.status = BuildStatus.CANCELED
            build.step = "canceled"
            build.ended_at = utcnow()
        running_on = build.worker if build.status == BuildStatus.BUILDING else None
    if running_on is not None and ctx.jobs is not None:
        ctx.jobs.stop_build(build_id, running_on)
    return get_build(ctx, build_id)


def delete_build(ctx: Context, build_id: int) -> None:
    """Soft-delete one finished build that is not current; collection removes its blobs."""
    with ctx.sessions.begin() as session:
        build = find_build(session, build_id)
        if build.environment.current_build_id == build.id:
            raise Conflict(f"build {build_id} is the current build of its environment")
        if not build.status.finished:
            raise Conflict(f"build {build_id} is still {build.status.value}; cancel it first")
        build.deleted_at = utcnow()


def rebuild(ctx: Context, build_id: int, submitted_by: str | None = None) -> Build:
    """Queue a new build of the same spec (and lock, if it was built from one)."""
    check_free_space(ctx)
    with ctx.sessions.begin() as session:
        old = find_build(session, build_id)
        if old.environment.deleted_at is not None:
            raise NotFound(f"the environment of build {build_id} was deleted")
        build = Build(
            environment_id=old.environment_id,
            specification_id=old.specification_id,
            platforms=list(old.platforms),
            input_lock=old.input_lock,
            status=BuildStatus.QUEUED,
            step="queued",
            submitted_by=submitted_by,
        )
        session.add(build)
        session.flush()
        new_id = build.id
    return enqueue_build(ctx, new_id)


def request_artifact(ctx: Context, build_id: int, kind: str) -> Build:
    """Make a completed build's tarball again (after a failure, or when it was turned off).

    Queues the packing job; a build that has its tarball already is left as it is.
    """
    if kind != ArtifactKind.TARBALL.value:
        raise InvalidRequest(
            f"only the {ArtifactKind.TARBALL.value} can be made again, not {kind!r}"
        )
    build = get_build(ctx, build_id)
    if build.status != BuildStatus.COMPLETED:
        raise Conflict(f"build {build_id} is {build.status.value}, not COMPLETED")
    if all(a.kind != kind for a in build.artifacts):
        check_free_space(ctx)
        if ctx.jobs is None:
            raise Conflict("this process runs no jobs; start a worker")
        ctx.jobs.enqueue_pack(build_id)
    return build
