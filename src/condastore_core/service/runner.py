"""The body of a build job: solve (or take the given lock), reuse or build, record everything.

Runs wherever the job engine puts it (a thread of ``condastore serve``, an RQ
worker). It takes a QUEUED build only, so running it twice is harmless. A build
ends COMPLETED, FAILED (with the reason) or CANCELED, always with its log
stored as an artifact; artifacts are recorded only once their bytes are in the
blob store, and the environment's current build moves only on success.
"""

from __future__ import annotations

import logging
import traceback

from sqlalchemy import select

from condastore_core.artifacts import ArtifactKind
from condastore_core.db.models import Artifact, Build, BuildPackage, BuildStatus, utcnow
from condastore_core.digests import Digest
from condastore_core.errors import BuildCanceled, CondastoreError
from condastore_core.lock import Lock, parse_conda_lock_yaml
from condastore_core.service.context import Context
from condastore_core.service.logs import BuildLog, read_log
from condastore_core.service.policies import enforce_retention
from condastore_core.spec import EnvironmentSpec
from condastore_core.store import put

logger = logging.getLogger(__name__)


def run_build(ctx: Context, build_id: int) -> BuildStatus | None:
    """Run build ``build_id`` if it is still QUEUED; returns its final status."""
    with ctx.sessions.begin() as session:
        build = session.get(Build, build_id)
        if build is None or build.status != BuildStatus.QUEUED:
            return None
        build.status = BuildStatus.BUILDING
        build.started_at = utcnow()
        build.step = "starting"
        spec = EnvironmentSpec.from_dict(build.specification.spec)
        platforms = list(build.platforms) or None
        input_lock = build.input_lock
        env_id = build.environment_id

    log = BuildLog(ctx, build_id)
    try:
        log.check_canceled(force=True)
        if input_lock is not None:
            log.log("building the given lock as it is (no solve)")
            lock = parse_conda_lock_yaml(input_lock)
        else:
            log.step("solving")
            log.log(f"solving {spec.name} (spec {spec.spec_hash[:12]})")
            lock = ctx.solver.solve(spec, platforms)
        _record_lock(ctx, build_id, lock)
        log.log(f"lock {lock.lock_hash[:12]}, build key {lock.build_key}")
        log.check_canceled(force=True)
        artifacts = _reusable_artifacts(ctx, build_id, lock.lock_hash)
        if artifacts is not None:
            log.log(f"reusing the artifacts of build {artifacts[0]} (same lock)")
            _finish(ctx, build_id, env_id, log, BuildStatus.COMPLETED, artifacts[1], artifacts[0])
        else:
            result = ctx.builder().build(spec, lock=lock, reporter=log)
            log.check_canceled(force=True)
            found = {k.value: (str(a.digest), a.size) for k, a in result.artifacts.items()}
            found.pop(ArtifactKind.LOG.value, None)  # this build's own log replaces it
            _finish(ctx, build_id, env_id, log, BuildStatus.COMPLETED, found)
    except BuildCanceled:
        log.log("canceled")
        _finish(ctx, build_id, env_id, log, BuildStatus.CANCELED, {})
    except CondastoreError as exc:
        log.log(f"error: {exc.message}")
        _finish(ctx, build_id, env_id, log, BuildStatus.FAILED, {}, error=exc.message)
    except Exception as exc:  # a bug: record it on the build rather than leave it BUILDING
        logger.exception("build %s failed unexpectedly", build_id)
        log.log(traceback.format_exc())
        message = f"internal error: {type(exc).__name__}: {exc}"
        _finish(ctx, build_id, env_id, log, BuildStatus.FAILED, {}, error=message)
    with ctx.sessions() as session:
        return session.get_one(Build, build_id).status


def _record_lock(ctx: Context, build_id: int, lock: Lock) -> None:
    with ctx.sessions.begin() as session:
        build = session.get_one(Build, build_id)
        build.lock_hash = lock.lock_hash
        build.build_key = lock.build_key
        for platform in lock.platforms:
            for pkg in lock.records(platform):
                session.add(
                    BuildPackage(
                        build_id=build_id,
                        platform=platform,
                        name=pkg.name,
                        version=pkg.version,
                        build=pkg.build,
                        channel=pkg.channel,
                        sha256=pkg.sha256,
                    )
                )


def _reusable_artifacts(
    ctx: Context, build_id: int, lock_hash: str
) -> tuple[int, dict[str, tuple[str, int]]] | None:
    """The artifacts of a completed build of the same lock whose blobs are all still stored."""
    with ctx.sessions() as session:
        candidates = session.scalars(
            select(Build)
            .where(
                Build.lock_hash == lock_hash,
                Build.status == BuildStatus.COMPLETED,
                Build.id != build_id,
            )
            .order_by(Build.id.desc())
        ).all()
        for other in candidates:
            found = {
                a.kind: (a.digest, a.size)
                for a in other.artifacts
                if a.kind != ArtifactKind.LOG.value
            }
            if found and all(_stored(ctx, digest) for digest, _ in found.values()):
                return other.id, found
    return None


def _stored(ctx: Context, digest: str) -> bool:
    return ctx.store.exists(Digest.parse(digest))


def _finish(
    ctx: Context,
    build_id: int,
    env_id: int,
    log: BuildLog,
    status: BuildStatus,
    artifacts: dict[str, tuple[str, int]],
    reused_from: int | None = None,
    *,
    error: str | None = None,
) -> None:
    log.log(f"build {status.value.lower()}")
    log_info = put(ctx.store, read_log(ctx, build_id).text.encode())
    artifacts = {**artifacts, ArtifactKind.LOG.value: (str(log_info.digest), log_info.size)}
    with ctx.sessions.begin() as session:
        build = session.get_one(Build, build_id)
        for kind, (digest, size) in sorted(artifacts.items()):
            session.add(Artifact(build_id=build_id, kind=kind, digest=digest, size=size))
        build.status = status
        build.step = status.value.lower()
        build.error = error
        build.reused_build_id = reused_from
        build.ended_at = utcnow()
        build.size = sum(size for _, size in artifacts.values())
        if status == BuildStatus.COMPLETED and build.deleted_at is None:
            build.environment.current_build_id = build_id
            build.environment.updated_at = utcnow()
            session.flush()
            enforce_retention(session, build.environment)


def recover_interrupted(ctx: Context) -> list[int]:
    """After a restart of the in-process engine: fail builds it was running, requeue the rest.

    Returns the ids of the builds still QUEUED, for the caller to enqueue.
    """
    with ctx.sessions.begin() as session:
        for build in session.scalars(select(Build).where(Build.status == BuildStatus.BUILDING)):
            build.status = BuildStatus.FAILED
            build.error = "the server stopped while this build was running"
            build.step = "failed"
            build.ended_at = utcnow()
        return list(
            session.scalars(
                select(Build.id).where(Build.status == BuildStatus.QUEUED).order_by(Build.id)
            )
        )
