"""Environments: submit a spec, move the current build, roll back, delete, compare builds."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from condastore_core import diskspace
from condastore_core.db.models import (
    Build,
    BuildPackage,
    BuildStatus,
    Environment,
    Namespace,
    Specification,
    utcnow,
    valid_id,
)
from condastore_core.errors import Conflict, InvalidRequest, NotFound
from condastore_core.lock import Lock, to_conda_lock_yaml
from condastore_core.policy import PolicyViolation
from condastore_core.policy import apply as apply_policy
from condastore_core.service import envlinks
from condastore_core.service.context import Context
from condastore_core.service.namespaces import find_namespace
from condastore_core.service.pagination import Page, paginate
from condastore_core.service.policies import effective_policy
from condastore_core.service.visibility import Visibility
from condastore_core.spec import KNOWN_PLATFORMS, EnvironmentSpec


def find_environment(session: Session, namespace: str, name: str) -> Environment:
    env = session.scalar(
        select(Environment)
        .join(Namespace, Environment.namespace_id == Namespace.id)
        .where(
            Namespace.name == namespace,
            Namespace.deleted_at.is_(None),
            Environment.name == name,
            Environment.deleted_at.is_(None),
        )
    )
    if env is None:
        raise NotFound(f"environment {namespace}/{name} does not exist")
    return env


def _specification(session: Session, spec: EnvironmentSpec) -> Specification:
    """The stored row of ``spec`` (one per spec hash), created if needed."""
    row = session.scalar(select(Specification).where(Specification.spec_hash == spec.spec_hash))
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = Specification(spec_hash=spec.spec_hash, name=spec.name, spec=spec.canonical())
            session.add(row)
    except IntegrityError:  # stored meanwhile by a concurrent request
        row = session.scalars(
            select(Specification).where(Specification.spec_hash == spec.spec_hash)
        ).one()
    return row


def _locked_environment(session: Session, namespace_id: int, name: str) -> Environment:
    """The environment row, created if needed and locked until the transaction ends.

    Concurrent submissions for one environment serialise here, so the second
    sees the first one's queued build instead of queueing another: the UPDATE
    locks the row on PostgreSQL and takes the database's write lock on SQLite.
    """
    where = (Environment.namespace_id == namespace_id, Environment.name == name)
    if session.scalar(select(Environment.id).where(*where)) is None:
        try:
            with session.begin_nested():
                session.add(Environment(namespace_id=namespace_id, name=name, description=""))
        except IntegrityError:
            pass  # created meanwhile by a concurrent submission
    session.execute(update(Environment).where(*where).values(updated_at=utcnow()))
    return session.scalars(select(Environment).where(*where)).one()


def check_free_space(ctx: Context) -> None:
    """Refuse new builds before a full disk makes them fail half-way."""
    diskspace.check_free_space(ctx.settings)


def submit(
    ctx: Context,
    namespace: str,
    spec: EnvironmentSpec,
    *,
    description: str | None = None,
    platforms: list[str] | None = None,
    lock: Lock | None = None,
    submitted_by: str | None = None,
) -> Build:
    """Create or update ``namespace/spec.name`` and queue a build of ``spec`` (or of ``lock``).

    A request for what is already queued or building for that environment (same
    spec, platforms and lock) returns that build instead of queueing another.
    """
    check_free_space(ctx)
    targets = sorted(set(platforms or spec.platforms or ()))
    unknown = [p for p in targets if p not in KNOWN_PLATFORMS]
    if unknown:
        raise InvalidRequest(f"unknown platform {unknown[0]!r}")
    input_lock = to_conda_lock_yaml(lock) if lock is not None else None
    with ctx.sessions.begin() as session:
        ns = find_namespace(session, namespace)
        policy = effective_policy(session, namespace, spec.name)
        spec = apply_policy(
            spec,
            policy,
            default_channels=ctx.settings.channels,
            channel_alias=ctx.settings.channel_alias,
        )
        # Refused now, with the rule named, rather than as a failed build later.
        gate = ctx.solver.gate.narrowed(policy.allowed_channels)
        ctx.solver.channels_for(spec, gate)
        if lock is not None:
            gate.check_lock(lock)
        for platform in targets:
            if policy.allowed_platforms is not None and platform not in policy.allowed_platforms:
                allowed = ", ".join(policy.allowed_platforms)
                raise PolicyViolation(
                    "allowed_platforms",
                    f"platform {platform!r} is not allowed here; allowed: {allowed}",
                )
        env = _locked_environment(session, ns.id, spec.name)
        if env.deleted_at is not None:  # re-created under the same name
            env.deleted_at = None
            env.current_build_id = None
        # The page describes what the environment holds: a spec's own description waits
        # until its build becomes current (``describe``); an explicit one applies now.
        if description is not None:
            env.description = description
        elif env.current_build_id is None:
            env.description = spec.description or ""
        specification = _specification(session, spec)
        session.flush()
        pending = session.scalar(
            select(Build).where(
                Build.environment_id == env.id,
                Build.specification_id == specification.id,
                Build.status.in_([BuildStatus.QUEUED, BuildStatus.BUILDING]),
                Build.cancel_requested.is_(False),
            )
        )
        if (
            pending is not None
            and pending.platforms == targets
            and pending.input_lock == input_lock
        ):
            return pending
        build = Build(
            environment_id=env.id,
            specification_id=specification.id,
            platforms=targets,
            input_lock=input_lock,
            status=BuildStatus.QUEUED,
            step="queued",
            submitted_by=submitted_by,
        )
        session.add(build)
        session.flush()
        build_id = build.id
    return enqueue_build(ctx, build_id)


def enqueue_build(ctx: Context, build_id: int) -> Build:
    if ctx.jobs is not None:
        ctx.jobs.enqueue_build(build_id)
    with ctx.sessions() as session:
        return session.get_one(Build, build_id)


def get_environment(ctx: Context, namespace: str, name: str) -> Environment:
    with ctx.sessions() as session:
        return find_environment(session, namespace, name)


def list_environments(
    ctx: Context,
    *,
    namespace: str | None = None,
    search: str | None = None,
    package: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
    visible: Visibility | None = None,
) -> Page[Environment]:
    """Environments by id; ``package`` keeps those whose *current* build holds that package."""
    with ctx.sessions() as session:
        stmt = (
            select(Environment)
            .join(Namespace, Environment.namespace_id == Namespace.id)
            .where(Environment.deleted_at.is_(None), Namespace.deleted_at.is_(None))
        )
        if namespace:
            stmt = stmt.where(Namespace.name == namespace)
        if search:
            pattern = f"%{search.lower()}%"
            stmt = stmt.where(
                or_(Environment.name.like(pattern), Environment.description.ilike(pattern))
            )
        if package:
            stmt = stmt.where(
                Environment.current_build_id.in_(
                    select(BuildPackage.build_id).where(BuildPackage.name == package.strip())
                )
            )
        if visible is None:
            return paginate(session, stmt, Environment.id, limit, cursor)
        stmt = stmt.where(visible.clause(Namespace.name, Environment.name))
        page = paginate(session, stmt, Environment.id, limit, cursor)
        items = [e for e in page.items if visible.can_read(e.namespace.name, e.name)]
        return Page(items, page.next_cursor)


def set_current_build(ctx: Context, namespace: str, name: str, build_id: int) -> Environment:
    """Roll back (or forward) to any completed build of the environment."""
    with ctx.sessions.begin() as session:
        env = find_environment(session, namespace, name)
        build = session.get(Build, build_id) if valid_id(build_id) else None
        if build is None or build.environment_id != env.id or build.deleted_at is not None:
            raise NotFound(f"build {build_id} is not a build of {namespace}/{name}")
        if build.status != BuildStatus.COMPLETED:
            raise Conflict(
                f"build {build_id} is {build.status.value}; only a COMPLETED build can be current"
            )
        env.current_build_id = build.id
        env.updated_at = utcnow()
        describe(env, build)
        env_id = env.id
    envlinks.sync(ctx, env_id)
    return get_environment(ctx, namespace, name)


def set_description(ctx: Context, namespace: str, name: str, description: str) -> Environment:
    """Change what an environment says about itself, without a new build."""
    if len(description) > 4096:
        raise InvalidRequest("a description may hold at most 4096 characters")
    with ctx.sessions.begin() as session:
        env = find_environment(session, namespace, name)
        env.description = description
        env.updated_at = utcnow()
    return get_environment(ctx, namespace, name)


def describe(env: Environment, build: Build) -> None:
    """Take the description of ``build``'s spec, now that the build is current.

    A spec without one leaves the description as it was (given with the API's
    ``description`` field, or by an earlier spec).
    """
    described = (build.specification.spec or {}).get("description")
    if described:
        env.description = described


def delete_environment(ctx: Context, namespace: str, name: str) -> None:
    """Soft delete: hidden from lists, rows kept for audit, artifacts left for collection."""
    with ctx.sessions.begin() as session:
        env = find_environment(session, namespace, name)
        now = utcnow()
        env.deleted_at = now
        for build in session.scalars(select(Build).where(Build.environment_id == env.id)):
            build.deleted_at = build.deleted_at or now
            if not build.status.finished:
                build.cancel_requested = True
        env_id = env.id
    envlinks.sync(ctx, env_id)


@dataclass(frozen=True)
class PackageChange:
    platform: str
    name: str
    old: str | None  # "version build", None when added
    new: str | None  # None when removed


def diff_builds(
    ctx: Context, namespace: str, name: str, old_id: int, new_id: int
) -> list[PackageChange]:
    """The package changes from build ``old_id`` to ``new_id`` of one environment."""
    with ctx.sessions() as session:
        env = find_environment(session, namespace, name)
        sides = []
        for build_id in (old_id, new_id):
            build = session.get(Build, build_id) if valid_id(build_id) else None
            if build is None or build.environment_id != env.id:
                raise NotFound(f"build {build_id} is not a build of {namespace}/{name}")
            rows = session.scalars(select(BuildPackage).where(BuildPackage.build_id == build_id))
            sides.append({(r.platform, r.name): f"{r.version} {r.build}" for r in rows})
    old, new = sides
    changes = []
    for key in sorted(old.keys() | new.keys()):
        if old.get(key) != new.get(key):
            changes.append(PackageChange(key[0], key[1], old.get(key), new.get(key)))
    return changes
