"""Watched spec directories: every ``*.yml``/``*.yaml`` under a directory is an environment.

Environments of the watched namespace follow their files: a new or edited
file queues a build (an unchanged spec hash never does), a broken file is
reported and leaves the others alone, a deleted file archives its environment
(soft delete: nothing destroyed). Changes arrive through inotify (watchfiles).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles
from sqlalchemy import select

from condastore_core import layout
from condastore_core.bounded import MAX_SPEC_BYTES
from condastore_core.db.models import Build, BuildStatus, Environment, Namespace
from condastore_core.errors import CondastoreError
from condastore_core.locks import file_lock
from condastore_core.service import environments
from condastore_core.service.context import Context
from condastore_core.service.namespaces import create_namespace
from condastore_core.spec import parse_spec

logger = logging.getLogger(__name__)
SPEC_SUFFIXES = (".yml", ".yaml")


@dataclass
class SyncReport:
    submitted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)
    #: file -> the error that keeps it from being an environment
    errors: dict[str, str] = field(default_factory=dict)


def _latest_spec_hashes(ctx: Context, namespace: str) -> dict[str, str]:
    """Environment name -> spec hash of its newest build that did not get canceled."""
    with ctx.sessions() as session:
        rows = session.execute(
            select(Environment.name, Build)
            .join(Namespace, Environment.namespace_id == Namespace.id)
            .join(Build, Build.environment_id == Environment.id)
            .where(
                Namespace.name == namespace,
                Environment.deleted_at.is_(None),
                Build.status != BuildStatus.CANCELED,
            )
            .order_by(Build.id)
        ).all()
        return {name: build.specification.spec_hash for name, build in rows}


def _live_environments(ctx: Context, namespace: str) -> set[str]:
    with ctx.sessions() as session:
        return set(
            session.scalars(
                select(Environment.name)
                .join(Namespace, Environment.namespace_id == Namespace.id)
                .where(Namespace.name == namespace, Environment.deleted_at.is_(None))
            )
        )


def sync_directory(ctx: Context, directory: Path, namespace: str) -> SyncReport:
    """Make ``namespace`` match the spec files under ``directory``."""
    report = SyncReport()
    create_namespace(ctx, namespace, exist_ok=True)
    known = _latest_spec_hashes(ctx, namespace)
    seen: dict[str, Path] = {}
    for path in sorted(p for p in directory.rglob("*") if p.suffix in SPEC_SUFFIXES):
        try:
            with path.open("rb") as f:  # a file past the cap is refused unread
                spec = parse_spec(f.read(MAX_SPEC_BYTES + 1), source=str(path))
        except (OSError, CondastoreError) as exc:
            message = getattr(exc, "message", str(exc))
            report.errors[str(path)] = message
            logger.error("watched spec %s is not usable: %s", path, message)
            continue
        if spec.name in seen:
            report.errors[str(path)] = f"environment {spec.name!r} is already {seen[spec.name]}"
            logger.error("watched spec %s: %s", path, report.errors[str(path)])
            continue
        seen[spec.name] = path
        if known.get(spec.name) == spec.spec_hash:
            report.unchanged.append(spec.name)
            continue
        try:
            environments.submit(ctx, namespace, spec)
            report.submitted.append(spec.name)
        except CondastoreError as exc:
            report.errors[str(path)] = exc.message
            logger.error("watched spec %s was refused: %s", path, exc.message)
    for name in sorted(_live_environments(ctx, namespace) - set(seen)):
        environments.delete_environment(ctx, namespace, name)
        report.archived.append(name)
        logger.info("watched spec of %s/%s is gone: environment archived", namespace, name)
    return report


class DirectoryWatcher:
    """Keeps a namespace in step with a directory, from a background thread."""

    def __init__(self, ctx: Context, directory: Path, namespace: str = "filesystem") -> None:
        self.ctx = ctx
        self.directory = Path(directory)
        self.namespace = namespace
        self.last_report: SyncReport | None = None
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="condastore-watch", daemon=True)

    def start(self) -> DirectoryWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def sync(self) -> SyncReport:
        # Every server process of this machine watches the same directories: they
        # take turns, and those after the first find nothing left to do (two at once
        # would both archive a removed file's environment, and one of them fail).
        with file_lock(layout.lock_file_path(self.ctx.settings.data_dir, "watch")):
            self.last_report = sync_directory(self.ctx, self.directory, self.namespace)
        self.synced.set()
        return self.last_report

    def _run(self) -> None:
        self.sync()
        for _changes in watchfiles.watch(
            self.directory, stop_event=self._stop, debounce=300, raise_interrupt=False
        ):
            try:
                self.sync()
            except Exception:  # keep watching; the next change tries again
                logger.exception("syncing %s failed", self.directory)
