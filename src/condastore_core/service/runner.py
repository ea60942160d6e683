"""The body of a build job: solve (or take the given lock), reuse or build, record everything.

Runs wherever the job engine puts it (a thread of ``condastore serve``, an RQ
worker). It takes a QUEUED build only, so running it twice is harmless. A build
ends COMPLETED, FAILED (with the reason) or CANCELED, always with its log
stored as an artifact (a build stopped from outside, or whose worker was
lost, too); artifacts are recorded only once their bytes are in the blob store,
and the environment's current build moves only on success.

Builds of one lock take turns on a cluster lock (``build:<lock hash>``), so
the whole cluster installs and packs each lock once and later builds reuse
the result; the tarball is made in the build's own job, where its prefix is.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import traceback
from collections.abc import Callable

from sqlalchemy import delete, select, update

from condastore_core.artifacts import ArtifactKind
from condastore_core.db.base import rowcount
from condastore_core.db.models import Artifact, Build, BuildPackage, BuildStatus, as_utc, utcnow
from condastore_core.digests import Digest
from condastore_core.diskspace import is_out_of_space, out_of_space_error
from condastore_core.errors import BuildCanceled, CondastoreError, PackError
from condastore_core.lock import Lock, parse_conda_lock_yaml
from condastore_core.render import render_text_artifacts
from condastore_core.service import envlinks
from condastore_core.service.context import Context
from condastore_core.service.environments import describe
from condastore_core.service.images import attach_artifacts
from condastore_core.service.logs import BuildLog, log_length, read_log
from condastore_core.service.policies import enforce_retention, namespace_gate
from condastore_core.spec import EnvironmentSpec
from condastore_core.store import put, read_all

logger = logging.getLogger(__name__)


def claim(ctx: Context, build_id: int, worker: str) -> bool:
    """Take a QUEUED build for this worker; only one of several racing claims succeeds."""
    now = utcnow()
    with ctx.sessions.begin() as session:
        result = session.execute(
            update(Build)
            .where(Build.id == build_id, Build.status == BuildStatus.QUEUED)
            .values(
                status=BuildStatus.BUILDING,
                started_at=now,
                heartbeat_at=now,
                step="starting",
                worker=worker[:128],
                attempts=Build.attempts + 1,
            )
        )
        return rowcount(result) == 1


class Heartbeat:
    """Renews a running build's lease from a background thread until stopped."""

    def __init__(self, ctx: Context, build_id: int) -> None:
        self._ctx = ctx
        self._build_id = build_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{build_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        interval = max(0.2, self._ctx.settings.build_lease_seconds / 3)
        while not self._stop.wait(interval):
            try:
                with self._ctx.sessions.begin() as session:
                    session.execute(
                        update(Build)
                        .where(Build.id == self._build_id, Build.status == BuildStatus.BUILDING)
                        .values(heartbeat_at=utcnow())
                    )
            except Exception:  # a missed beat is retried; the lease covers several
                logger.warning("build %s: heartbeat failed", self._build_id, exc_info=True)


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_build(ctx: Context, build_id: int, worker: str | None = None) -> BuildStatus | None:
    """Run build ``build_id`` if it is still QUEUED; returns its final status."""
    if not claim(ctx, build_id, worker or worker_identity()):
        return None
    with Heartbeat(ctx, build_id):
        _run_claimed(ctx, build_id)
    with ctx.sessions() as session:
        return session.get_one(Build, build_id).status


def _run_claimed(ctx: Context, build_id: int) -> None:
    with ctx.sessions() as session:
        build = session.get_one(Build, build_id)
        spec = EnvironmentSpec.from_dict(build.specification.spec)
        platforms = list(build.platforms) or None
        input_lock = build.input_lock
        env_id = build.environment_id
        where = (build.environment.namespace.name, build.environment.name)
    gate = namespace_gate(ctx, *where)

    log = BuildLog(ctx, build_id, start=log_length(ctx, build_id))
    try:
        log.check_canceled(force=True)
        if input_lock is not None:
            log.log("building the given lock as it is (no solve)")
            lock = parse_conda_lock_yaml(input_lock)
            gate.check_lock(lock)
        else:
            log.step("solving")
            log.log(f"solving {spec.name} (spec {spec.spec_hash[:12]})")
            lock = ctx.solve(spec, platforms, gate=gate, reporter=log)
        _record_lock(ctx, build_id, lock)
        log.log(f"lock {lock.lock_hash[:12]}, build key {lock.build_key}")
        log.check_canceled(force=True)
        # One install per lock in the whole cluster: builds of the same lock wait here,
        # then find the first one's artifacts and reuse them.
        with ctx.locks.hold(f"build:{lock.lock_hash}", waiting=log.check_canceled):
            reused = _reusable_artifacts(ctx, build_id, lock.lock_hash)
            if reused is not None:
                source, found = reused
                log.log(f"reusing the artifacts of build {source} (same lock)")
                found.update(_own_text_artifacts(ctx, spec, lock))
            else:
                result = ctx.builder().build(spec, lock=lock, reporter=log)
                log.check_canceled(force=True)
                source = None
                found = {k.value: (str(a.digest), a.size) for k, a in result.artifacts.items()}
                found.pop(ArtifactKind.LOG.value, None)  # this build's own log replaces it
            # Packed in this job, where the prefix is, before the build says COMPLETED.
            installable = ctx.builder().install_platform in lock.packages
            if (
                reused is not None
                and installable
                and ctx.settings.environments_dir is not None
                and ctx.builder().find(lock.build_key) is None
            ):  # built before the shared directory was set: install it there once
                log.log("installing the build into the shared environments directory")
                ctx.builder().build(spec, lock=lock, reporter=log)
            if ctx.settings.tarball and installable and ArtifactKind.TARBALL.value not in found:
                tarball = _pack_here(ctx, build_id, spec, lock, log)
                if tarball is not None:
                    found[ArtifactKind.TARBALL.value] = tarball
            _finish(ctx, build_id, env_id, log, BuildStatus.COMPLETED, found, source)
        _switch_link(ctx, build_id, env_id)
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


def _switch_link(ctx: Context, build_id: int, env_id: int) -> None:
    """Move the environment's shared link to its (new) current build.

    The build is COMPLETED and current whatever happens here; a link that cannot
    be switched is said in the build's log and the server's, and the next change
    of the environment (or a rollback to this build) tries again.
    """
    try:
        envlinks.sync(ctx, env_id)
    except Exception as exc:
        message = exc.message if isinstance(exc, CondastoreError) else repr(exc)
        logger.exception("build %s: could not switch its environment's link", build_id)
        BuildLog(ctx, build_id, start=log_length(ctx, build_id)).log(
            f"environment link not switched: {message}"
        )
        store_log(ctx, build_id)


def _own_text_artifacts(
    ctx: Context, spec: EnvironmentSpec, lock: Lock
) -> dict[str, tuple[str, int]]:
    """The text artifacts of a reused lock as this build's spec names them (its own name)."""
    builder = ctx.builder()
    platform = builder.install_platform
    rendered = render_text_artifacts(
        spec, lock, platform if platform in lock.packages else lock.platforms[0]
    )
    found = {}
    for kind, data in rendered.items():
        info = put(ctx.store, data)
        found[kind.value] = (str(info.digest), info.size)
    return found


def _pack_here(
    ctx: Context, build_id: int, spec: EnvironmentSpec, lock: Lock, log: BuildLog
) -> tuple[str, int] | None:
    """The conda-pack tarball, made on the machine that holds (or now installs) the prefix.

    A failure is recorded on the build (``artifact_errors``), which completes without it.
    """
    log.step("packing")
    log.log("packing the prefix with conda-pack")
    try:
        builder = ctx.builder()
        info = builder.pack(lock.build_key)
        if info is None:  # built on another machine: put the prefix here first
            log.log("the prefix is not on this machine: installing it to pack it")
            builder.build(spec, lock=lock, reporter=log)
            info = builder.pack(lock.build_key)
            if info is None:
                raise PackError(f"the lock has no {builder.install_platform} packages to pack")
    except BuildCanceled:
        raise
    except Exception as exc:
        _record_artifact_error(ctx, build_id, log, ArtifactKind.TARBALL, exc)
        return None
    log.log(f"tarball: {info.size} bytes ({info.digest})")
    return str(info.digest), info.size


def pack_build(ctx: Context, build_id: int) -> bool:
    """Add the conda-pack tarball to a completed build; returns whether one was added.

    Made where the job runs: a machine without the build's prefix installs it
    from the build's lock first, so the tarball never depends on which worker
    took the job.
    """
    with ctx.sessions() as session:
        build = session.get(Build, build_id)
        if build is None or build.status != BuildStatus.COMPLETED or build.build_key is None:
            return False
        kinds = {a.kind: a.digest for a in build.artifacts}
        if ArtifactKind.TARBALL.value in kinds or ArtifactKind.LOCKFILE.value not in kinds:
            return False
        spec = EnvironmentSpec.from_dict(build.specification.spec)
        lockfile = kinds[ArtifactKind.LOCKFILE.value]
    log = BuildLog(ctx, build_id, start=log_length(ctx, build_id))
    try:
        lock = parse_conda_lock_yaml(read_all(ctx.store, Digest.parse(lockfile)))
        with ctx.locks.hold(f"build:{lock.lock_hash}"):
            packed = _pack_here(ctx, build_id, spec, lock, log)
        if packed is None:
            return False
        log_info = put(ctx.store, read_log(ctx, build_id).text.encode())
    except Exception as exc:
        _record_artifact_error(ctx, build_id, log, ArtifactKind.TARBALL, exc)
        return False
    digest, size = packed
    with ctx.sessions.begin() as session:
        build = session.get_one(Build, build_id)
        build.artifact_errors = _without(build.artifact_errors, ArtifactKind.TARBALL)
        session.add(
            Artifact(build_id=build_id, kind=ArtifactKind.TARBALL.value, digest=digest, size=size)
        )
        for artifact in build.artifacts:
            if artifact.kind == ArtifactKind.LOG.value:  # the stored log now tells of the packing
                artifact.digest, artifact.size = str(log_info.digest), log_info.size
        build.size = (build.size or 0) + size
    try:
        attach_artifacts(ctx, build_id)
    except Exception:  # the tarball is recorded: the next pull of the image attaches it
        logger.exception("build %s: could not attach its tarball to its images yet", build_id)
    return True


def _record_artifact_error(
    ctx: Context, build_id: int, log: BuildLog, kind: ArtifactKind, exc: Exception
) -> None:
    """Say on the build why it has no ``kind`` artifact: in its log and its artifact_errors."""
    if is_out_of_space(exc):
        message = out_of_space_error(exc).message
    elif isinstance(exc, CondastoreError):
        message = exc.message
    else:  # a bug: the server log gets the traceback, the build the gist
        logger.exception("build %s: making its %s failed", build_id, kind.value)
        message = f"internal error: {type(exc).__name__}: {exc}"
    logger.warning("build %s: no %s: %s", build_id, kind.value, message)
    try:
        log.log(f"{kind.value} failed: {message}")
        with ctx.sessions.begin() as session:
            build = session.get_one(Build, build_id)
            build.artifact_errors = {**(build.artifact_errors or {}), kind.value: message}
    except Exception:  # the database may be on the full disk too: the server log keeps it
        logger.exception("build %s: could not record that its %s failed", build_id, kind.value)


def _without(errors: dict | None, kind: ArtifactKind) -> dict | None:
    rest = {k: v for k, v in (errors or {}).items() if k != kind.value}
    return rest or None


def _record_lock(ctx: Context, build_id: int, lock: Lock) -> None:
    with ctx.sessions.begin() as session:
        build = session.get_one(Build, build_id)
        build.lock_hash = lock.lock_hash
        build.build_key = lock.build_key
        # A retried build records its lock again.
        session.execute(delete(BuildPackage).where(BuildPackage.build_id == build_id))
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
                        sha256=pkg.content_id,
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
            describe(build.environment, build)
            session.flush()
            enforce_retention(session, build.environment)


def reap_lost_builds(ctx: Context, *, lease_seconds: float | None = None) -> list[int]:
    """Settle builds whose worker stopped renewing their lease; returns ids to enqueue again.

    A lost build is CANCELED if that was asked for, QUEUED again while it has
    attempts left, and FAILED with the reason otherwise: never left BUILDING.
    """
    lease = ctx.settings.build_lease_seconds if lease_seconds is None else lease_seconds
    cutoff = utcnow() - dt.timedelta(seconds=lease)
    requeue, settled = [], []
    with ctx.sessions.begin() as session:
        lost = session.scalars(
            select(Build)
            .where(Build.status == BuildStatus.BUILDING, Build.heartbeat_at < cutoff)
            .with_for_update(skip_locked=True, of=Build)
        ).all()
        for build in lost:
            who = build.worker or "its worker"
            if build.cancel_requested:
                build.status, build.step = BuildStatus.CANCELED, "canceled"
            elif build.attempts < ctx.settings.build_max_attempts:
                build.status, build.step = BuildStatus.QUEUED, "queued (retry)"
                requeue.append(build.id)
            else:
                build.status, build.step = BuildStatus.FAILED, "failed"
                build.error = (
                    f"{who} stopped renewing the build's lease ({lease:g} s) and the build "
                    f"was started {build.attempts} times; giving up"
                )
            if build.status != BuildStatus.QUEUED:
                build.ended_at = utcnow()
            settled.append((build.id, build.status, who))
    for build_id, status, who in settled:
        BuildLog(ctx, build_id, start=log_length(ctx, build_id)).log(
            f"lost {who} (no heartbeat for {lease:g} s): build {status.value.lower()}"
        )
        if status != BuildStatus.QUEUED:
            store_log(ctx, build_id)
    return requeue


def store_log(ctx: Context, build_id: int, settle: Callable[[Build], bool] | None = None) -> None:
    """Keep a build's log as its ``log`` artifact (replacing an older one), as it is now.

    ``settle``, when given, changes the build in the same transaction (its final
    status, say), so nobody sees it ended without its log; False leaves it all alone.
    """
    info = put(ctx.store, read_log(ctx, build_id).text.encode())
    with ctx.sessions.begin() as session:
        build = session.get_one(Build, build_id)
        if settle is not None and not settle(build):
            return
        for artifact in build.artifacts:
            if artifact.kind == ArtifactKind.LOG.value:
                artifact.digest, artifact.size = str(info.digest), info.size
                return
        session.add(
            Artifact(
                build_id=build_id,
                kind=ArtifactKind.LOG.value,
                digest=str(info.digest),
                size=info.size,
            )
        )


def settle_stopped(ctx: Context, build_id: int) -> None:
    """A build whose work process was killed on request: CANCELED, its half-prefix removed."""
    with ctx.sessions() as session:
        build = session.get(Build, build_id)
        if build is None or build.status != BuildStatus.BUILDING:
            return
        key, canceled = build.build_key, build.cancel_requested
    if key is not None:
        ctx.builder().discard_incomplete(key)
    BuildLog(ctx, build_id, start=log_length(ctx, build_id)).log(
        "stopped: build canceled" if canceled else "stopped: the build's work process was stopped"
    )

    def settle(build: Build) -> bool:
        if build.status != BuildStatus.BUILDING:
            return False  # settled meanwhile (by the reaper)
        build.status = BuildStatus.CANCELED if build.cancel_requested else BuildStatus.FAILED
        build.step = build.status.value.lower()
        build.error = None if build.cancel_requested else "the build's work process was stopped"
        build.ended_at = utcnow()
        return True

    store_log(ctx, build_id, settle)


def recover_interrupted(ctx: Context) -> list[int]:
    """When the in-process engine starts: fail the builds a stopped process was running,
    and return the ids of the builds still QUEUED, for the caller to enqueue.

    Several processes may run the engine over one database (gunicorn workers), so a
    BUILDING build is failed only when its process is gone (same host, no such pid)
    or it stopped renewing its lease; a sibling's running build is left alone.
    Enqueuing a QUEUED build twice is harmless: only one claim takes it.
    """
    cutoff = utcnow() - dt.timedelta(seconds=ctx.settings.build_lease_seconds)
    failed = []
    with ctx.sessions.begin() as session:
        for build in session.scalars(select(Build).where(Build.status == BuildStatus.BUILDING)):
            stale = build.heartbeat_at is None or as_utc(build.heartbeat_at) < cutoff
            if not stale and _process_alive(build.worker):
                continue
            build.status = BuildStatus.FAILED
            build.error = "the server stopped while this build was running"
            build.step = "failed"
            build.ended_at = utcnow()
            failed.append(build.id)
        queued = list(
            session.scalars(
                select(Build.id).where(Build.status == BuildStatus.QUEUED).order_by(Build.id)
            )
        )
    for build_id in failed:
        store_log(ctx, build_id)
    return queued


def _process_alive(worker: str | None) -> bool:
    """Whether the process named by ``worker_identity()`` may still run; True if unknowable."""
    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's: only its lease tells
    if int(pid) == os.getpid():
        return False  # a previous process that had this pid: this one is only starting
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
