"""Retention and garbage collection: what administrators need to run for years.

1. Retention: per environment, keep the newest ``max_builds_kept`` completed
   builds and any younger than ``keep_days`` (policies, inherited); never the
   current build. Collected builds are soft-deleted (rows stay for audit) and
   their prefixes removed once no live build shares the build key.
2. Blob mark and sweep: a blob is live when an artifact of a live build, a live
   registry manifest (tagged, a child of a live index, or referring to a live
   manifest) or what such a manifest names, or a registry blob link younger
   than the grace period, references it. Blobs written within the grace period
   are never swept, so collection can run while builds and pushes go on.
3. Registry uploads started more than ``upload_max_age_hours`` ago and never
   finished are ended and their staged bytes removed: whoever may push could
   otherwise fill the disk with uploads they never complete.
4. Leftovers of stopped builds on this machine (:mod:`condastore_core.leftovers`):
   half-installed staging prefixes, scratch directories, half-written records,
   never those of a build whose lease is current; and blob uploads abandoned
   half-way by a stopped process (no registry upload owns them, nothing was
   written to them for the grace period).
5. With a shared ``environments_dir``: builds there that no environment links
   to and no live or running build names (:func:`remove_shared_builds`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import shutil
import time
from dataclasses import dataclass, field

from sqlalchemy import delete, select

from condastore_core import envlinks, layout, leftovers
from condastore_core.db.models import (
    Artifact,
    Build,
    BuildStatus,
    Environment,
    ImageLayer,
    RegistryBlob,
    RegistryManifest,
    RegistryTag,
    RegistryUpload,
    as_utc,
    utcnow,
)
from condastore_core.digests import Digest
from condastore_core.errors import BlobNotFound
from condastore_core.image import manifest as oci
from condastore_core.service import uploads
from condastore_core.service.context import Context
from condastore_core.service.policies import effective_policy
from condastore_core.store import read_all

logger = logging.getLogger(__name__)
GRACE_SECONDS = 3600.0


@dataclass
class GcReport:
    builds_collected: list[int] = field(default_factory=list)
    prefixes_removed: list[str] = field(default_factory=list)
    manifests_pruned: int = 0
    blobs_deleted: int = 0
    bytes_freed: int = 0
    blobs_kept: int = 0
    uploads_purged: int = 0
    upload_bytes_freed: int = 0
    #: Leftovers of stopped builds (paths under the data directory) and their bytes.
    leftovers_removed: list[str] = field(default_factory=list)
    leftover_bytes: int = 0
    #: Staged blob uploads no registry upload owns, abandoned by a stopped process.
    uploads_discarded: list[str] = field(default_factory=list)
    #: Builds in the shared environments directory no link and no live build needs.
    shared_builds_removed: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "builds_collected": self.builds_collected,
            "prefixes_removed": self.prefixes_removed,
            "manifests_pruned": self.manifests_pruned,
            "blobs_deleted": self.blobs_deleted,
            "bytes_freed": self.bytes_freed,
            "blobs_kept": self.blobs_kept,
            "uploads_purged": self.uploads_purged,
            "upload_bytes_freed": self.upload_bytes_freed,
            "leftovers_removed": self.leftovers_removed,
            "leftover_bytes": self.leftover_bytes,
            "uploads_discarded": self.uploads_discarded,
            "shared_builds_removed": self.shared_builds_removed,
            "dry_run": self.dry_run,
        }


def collect(
    ctx: Context,
    *,
    dry_run: bool = False,
    grace_seconds: float = GRACE_SECONDS,
    prune_untagged: bool = False,
) -> GcReport:
    """Apply retention, purge abandoned uploads, then sweep every blob nothing live references."""
    with ctx.locks.hold("gc"):  # one round at a time in the whole cluster
        return _collect(ctx, dry_run, grace_seconds, prune_untagged)


def _collect(ctx: Context, dry_run: bool, grace_seconds: float, prune_untagged: bool) -> GcReport:
    report = GcReport(dry_run=dry_run)
    _retention(ctx, report, dry_run)
    # A dry run changes nothing, so what retention would collect is passed on: the
    # report then says exactly what the real run removes.
    collected = set(report.builds_collected)
    remove_prefixes(ctx, report, dry_run, collected)
    remove_shared_builds(ctx, report, dry_run, collected)
    _remove_leftovers(ctx, report, dry_run)
    report.uploads_discarded = discard_abandoned_uploads(ctx, grace_seconds, dry_run=dry_run)
    if prune_untagged:
        _prune_untagged(ctx, report, dry_run, grace_seconds)
    _purge_uploads(ctx, report, dry_run)
    _sweep(ctx, report, dry_run, grace_seconds, collected)
    return report


def _purge_uploads(ctx: Context, report: GcReport, dry_run: bool) -> None:
    max_age = dt.timedelta(hours=ctx.settings.upload_max_age_hours)
    for upload in uploads.purge_abandoned(ctx, max_age, dry_run=dry_run):
        report.uploads_purged += 1
        report.upload_bytes_freed += upload.size


def _retention(ctx: Context, report: GcReport, dry_run: bool) -> None:
    now = utcnow()
    with ctx.sessions() as session:
        for env in session.scalars(select(Environment)):
            policy = effective_policy(session, env.namespace.name, env.name)
            keep = policy.max_builds_kept
            if keep is None and env.deleted_at is None:
                continue
            builds = session.scalars(
                select(Build)
                .where(
                    Build.environment_id == env.id,
                    Build.deleted_at.is_(None),
                    Build.status == BuildStatus.COMPLETED,
                )
                .order_by(Build.id.desc())
            ).all()
            young = dt.timedelta(days=policy.keep_days or 0)
            for rank, build in enumerate(builds):
                if build.id == env.current_build_id and env.deleted_at is None:
                    continue
                if env.deleted_at is None and keep is not None and rank < keep:
                    continue
                ended = as_utc(build.ended_at or build.queued_at)
                if env.deleted_at is None and now - ended < young:
                    continue
                report.builds_collected.append(build.id)
                if not dry_run:
                    build.deleted_at = now
        # Failed builds keep their log only.
        if not dry_run:
            for artifact in session.scalars(
                select(Artifact)
                .join(Build)
                .where(
                    Build.status.in_([BuildStatus.FAILED, BuildStatus.CANCELED]),
                    Artifact.kind != "log",
                )
            ):
                session.delete(artifact)
            session.commit()


def remove_prefixes(ctx: Context, report: GcReport, dry_run: bool, collected: set[int]) -> None:
    """Remove this machine's prefixes of builds no live build shares (``collected`` are not)."""
    envs = layout.envs_dir(ctx.settings.data_dir)
    if not envs.is_dir():
        return
    keep = _needed_build_keys(ctx, collected)
    for prefix in envs.iterdir():
        if prefix.name.startswith(".") or prefix.name in keep:
            continue
        report.prefixes_removed.append(prefix.name)
        if not dry_run:
            shutil.rmtree(prefix, ignore_errors=True)
            record = layout.build_record_path(ctx.settings.data_dir, prefix.name)
            record.unlink(missing_ok=True)


def remove_shared_builds(
    ctx: Context, report: GcReport, dry_run: bool, collected: set[int]
) -> None:
    """Remove builds in the shared environments directory that no environment links to,
    no live build (kept by retention) names and no running build is installing, and
    the half-installed prefixes of builds no longer running."""
    shared = ctx.settings.environments_dir
    if shared is None:
        return
    builds = layout.shared_builds_dir(shared)
    if not builds.is_dir():
        return
    keep = _needed_build_keys(ctx, collected) | envlinks.linked_keys(shared)
    running = live_build_keys(ctx)
    for prefix in sorted(builds.iterdir()):
        if prefix.name.startswith(leftovers.STAGING_PREFIX):
            # Half an install by a worker that died (any machine's): no running build owns it.
            key = prefix.name[len(leftovers.STAGING_PREFIX) :].rpartition("-")[0]
            if key in running:
                continue
        elif prefix.name.startswith(".") or prefix.name in keep:
            continue
        report.shared_builds_removed.append(prefix.name)
        if not dry_run:
            if not prefix.name.startswith("."):
                # The record first: a prefix without its record is never taken for a build.
                record = layout.record_in(layout.shared_records_dir(shared), prefix.name)
                record.unlink(missing_ok=True)
            shutil.rmtree(prefix, ignore_errors=True)


def _needed_build_keys(ctx: Context, collected: set[int]) -> set[str]:
    """Build keys of live builds (but ``collected``) and of builds queued or running."""
    with ctx.sessions() as session:
        live = set(
            session.scalars(
                select(Build.build_key).where(
                    Build.deleted_at.is_(None),
                    Build.build_key.is_not(None),
                    Build.id.not_in(collected),
                )
            )
        )
        pending = set(
            session.scalars(
                select(Build.build_key).where(
                    Build.status.in_([BuildStatus.QUEUED, BuildStatus.BUILDING])
                )
            )
        )
    return {k for k in live | pending if k}


def live_build_keys(ctx: Context) -> set[str]:
    """Build keys of the builds running now: BUILDING, with a current lease, on any machine."""
    cutoff = utcnow() - dt.timedelta(seconds=ctx.settings.build_lease_seconds)
    with ctx.sessions() as session:
        rows = session.execute(
            select(Build.build_key, Build.heartbeat_at).where(
                Build.status == BuildStatus.BUILDING, Build.build_key.is_not(None)
            )
        ).all()
    return {key for key, beat in rows if key and beat is not None and as_utc(beat) >= cutoff}


def remove_leftovers(ctx: Context) -> list[leftovers.Leftover]:
    """Remove what stopped builds left on this machine; every process runs this at start."""
    removed = leftovers.remove(ctx.settings.data_dir, live_keys=live_build_keys(ctx))
    for item in removed:
        logger.info("removed %s left by a stopped build: %s", item.kind, item.path)
    discard_abandoned_uploads(ctx)
    return removed


def discard_abandoned_uploads(
    ctx: Context, grace_seconds: float = GRACE_SECONDS, *, dry_run: bool = False
) -> list[str]:
    """Drop staged blob uploads that no registry upload owns and nobody wrote to lately.

    A registry upload owns its staged bytes while its row exists (abandoned
    registry uploads end with their row); bytes of a blob being written by a
    build have no row, and are abandoned once their writer is quiet for the
    grace period: a live writer writes all the time.
    """
    cutoff = time.time() - grace_seconds
    with ctx.sessions() as session:
        owned = set(session.scalars(select(RegistryUpload.id)))
    abandoned = [
        staged.upload_id
        for staged in ctx.store.staged_uploads()
        if staged.upload_id not in owned and staged.modified < cutoff
    ]
    if not dry_run:
        for upload_id in abandoned:
            ctx.store.discard_upload(upload_id)
            logger.info("discarded upload %s abandoned by a stopped process", upload_id)
    return abandoned


def _remove_leftovers(ctx: Context, report: GcReport, dry_run: bool) -> None:
    data_dir = ctx.settings.data_dir
    live = live_build_keys(ctx)
    found = (
        leftovers.find(data_dir, live_keys=live)
        if dry_run
        else leftovers.remove(data_dir, live_keys=live)
    )
    for item in found:
        report.leftovers_removed.append(str(item.path.relative_to(data_dir)))
        report.leftover_bytes += item.size


def _prune_untagged(ctx: Context, report: GcReport, dry_run: bool, grace: float) -> None:
    live = _live_manifests(ctx)
    cutoff = utcnow() - dt.timedelta(seconds=grace)
    with ctx.sessions() as session:
        for row in session.scalars(select(RegistryManifest)):
            if (row.repository, row.digest) not in live and as_utc(row.created_at) < cutoff:
                report.manifests_pruned += 1
                if not dry_run:
                    session.delete(row)
        if not dry_run:
            session.commit()


def _live_manifests(ctx: Context) -> set[tuple[str, str]]:
    """(repository, digest) of every manifest reachable from a tag."""
    with ctx.sessions() as session:
        rows = session.execute(
            select(
                RegistryManifest.repository,
                RegistryManifest.digest,
                RegistryManifest.media_type,
                RegistryManifest.subject,
            )
        ).all()
        tagged: set[tuple[str, str]] = {
            (repo, digest)
            for repo, digest in session.execute(select(RegistryTag.repository, RegistryTag.digest))
        }
    by_subject: dict[tuple[str, str], list[tuple[str, str]]] = {}
    media: dict[tuple[str, str], str] = {}
    for repo, digest, media_type, subject in rows:
        media[(repo, digest)] = media_type
        if subject:
            by_subject.setdefault((repo, subject), []).append((repo, digest))
    live: set[tuple[str, str]] = set()
    todo = [t for t in tagged if t in media]
    while todo:
        item = todo.pop()
        if item in live:
            continue
        live.add(item)
        todo.extend(by_subject.get(item, []))
        if "index" in media[item] or "list" in media[item]:
            doc = _manifest_doc(ctx, item[1])
            todo.extend(
                (item[0], m["digest"])
                for m in doc.get("manifests", [])
                if (item[0], m["digest"]) in media
            )
    return live


def _manifest_doc(ctx: Context, digest: str) -> dict:
    try:
        return json.loads(read_all(ctx.store, Digest.parse(digest)))
    except (BlobNotFound, ValueError):
        return {}


def _mark(ctx: Context, grace: float, collected: set[int]) -> set[str]:
    live: set[str] = set()
    cutoff = utcnow() - dt.timedelta(seconds=grace)
    ended_badly = Build.status.in_([BuildStatus.FAILED, BuildStatus.CANCELED])
    with ctx.sessions() as session:
        live.update(
            session.scalars(
                select(Artifact.digest)
                .join(Build)
                .where(
                    Build.deleted_at.is_(None),
                    Build.id.not_in(collected),
                    ~(ended_badly & (Artifact.kind != "log")),  # retention drops those
                )
            )
        )
        for created, digest in session.execute(
            select(RegistryBlob.created_at, RegistryBlob.digest)
        ):
            if as_utc(created) >= cutoff:
                live.add(digest)  # pushed a moment ago: its manifest may still be coming
        manifests = session.execute(
            select(RegistryManifest.repository, RegistryManifest.digest)
        ).all()
        # Base images fetched from upstream registries: the manifest their reference named
        # is kept, so images made later stand on the same base without fetching it again.
        bases = session.scalars(
            select(ImageLayer.digest).where(ImageLayer.media_type == oci.MANIFEST)
        ).all()
    reachable = _live_manifests(ctx)
    for digest in [*bases, *(d for repo, d in manifests if (repo, d) in reachable)]:
        live.add(digest)
        doc = _manifest_doc(ctx, digest)
        for blob in [doc.get("config"), *doc.get("layers", [])]:
            if isinstance(blob, dict) and "digest" in blob:
                live.add(blob["digest"])
    return live


def _sweep(
    ctx: Context, report: GcReport, dry_run: bool, grace: float, collected: set[int]
) -> None:
    live = _mark(ctx, grace, collected)
    cutoff = time.time() - grace
    dead: list[str] = []
    for info in list(ctx.store.iterate()):
        if str(info.digest) in live or (info.modified is None or info.modified > cutoff):
            report.blobs_kept += 1
            continue
        report.blobs_deleted += 1
        report.bytes_freed += info.size
        dead.append(str(info.digest))
        if not dry_run:
            with contextlib.suppress(BlobNotFound):  # gone meanwhile: just as good
                ctx.store.delete(info.digest)
    if dead and not dry_run:
        with ctx.sessions.begin() as session:
            for row in session.scalars(select(RegistryBlob).where(RegistryBlob.digest.in_(dead))):
                session.delete(row)
            session.execute(delete(ImageLayer).where(ImageLayer.digest.in_(dead)))
    logger.info(
        "gc: %d blobs (%d bytes) %s",
        report.blobs_deleted,
        report.bytes_freed,
        "would be freed" if dry_run else "freed",
    )
