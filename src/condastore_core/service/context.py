"""Everything a service call or a job needs, built once from settings."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine, Executable, Row
from sqlalchemy.orm import Session, sessionmaker

from condastore_core import layout
from condastore_core.auth.credentials import FailureThrottle, VerifiedCredentials
from condastore_core.auth.keys import DatabaseKeyRing, FileKeyRing, KeyRing
from condastore_core.auth.tokens import TokenSigner
from condastore_core.builds import LocalBuilder
from condastore_core.channels import ChannelGate
from condastore_core.clusterlock import ClusterLocks, cluster_locks
from condastore_core.db.base import make_engine, make_sessionmaker
from condastore_core.db.migrate import upgrade
from condastore_core.isolation import Limits
from condastore_core.lock import Lock
from condastore_core.progress import Reporter
from condastore_core.settings import Settings
from condastore_core.solve import PackageSummary, Solver, solver_for
from condastore_core.solver_pool import SolverPool
from condastore_core.spec import EnvironmentSpec
from condastore_core.store import BlobStore, open_store

if TYPE_CHECKING:
    from condastore_core.jobs.base import JobQueue


def key_ring(settings: Settings, engine: Engine) -> KeyRing:
    """Keys from the file an administrator named, else from the database every server shares."""
    if settings.signing_key_path is not None:
        return FileKeyRing(settings.signing_key_path)
    return DatabaseKeyRing(engine, legacy_key_file=layout.signing_key_path(settings.data_dir))


@dataclass
class Context:
    settings: Settings
    sessions: sessionmaker[Session]
    store: BlobStore
    solver: Solver
    signer: TokenSigner
    #: Locks that serialise work across every process and machine of the installation.
    locks: ClusterLocks
    #: Where new builds are sent; set by whoever runs the service (web app, worker).
    jobs: JobQueue | None = field(default=None)
    #: Watched spec directories of this process (``service.watch.DirectoryWatcher``).
    watchers: list = field(default_factory=list)
    #: Background threads of this process with a ``stop()`` (scheduler, reaper).
    background: list = field(default_factory=list)
    #: HTTP Basic passwords this process verified lately, and its recent failed logins.
    credentials: VerifiedCredentials = field(default_factory=VerifiedCredentials)
    login_failures: FailureThrottle = field(default_factory=FailureThrottle)
    #: This process's solver children, started on the first solve (see ``solvers``).
    _solvers: SolverPool | None = field(default=None, repr=False)
    _solvers_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, *, migrate: bool = True) -> Context:
        """Connect to the database (migrating it to head) and the blob store."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url)
        if migrate:
            upgrade(engine)
        return cls(
            settings,
            make_sessionmaker(engine),
            open_store(
                settings.resolved_store_url,
                endpoint_url=settings.s3_endpoint_url,
                region_name=settings.s3_region,
                aws_access_key_id=settings.s3_access_key,
                aws_secret_access_key=settings.s3_secret_key,
            ),
            solver_for(settings),
            TokenSigner(key_ring(settings, engine)),
            cluster_locks(
                engine, settings.data_dir, settings.redis_url, settings.build_lease_seconds
            ),
            credentials=VerifiedCredentials(settings.basic_auth_cache_seconds),
            login_failures=FailureThrottle(window=settings.login_failure_window_seconds),
        )

    @property
    def engine(self) -> Engine:
        """The database engine every session of this context is bound to."""
        return self.sessions.kw["bind"]

    def first(self, statement: Executable, params: dict | None = None) -> Row | None:
        """The first row of a read-only Core query, without an ORM session.

        For the registry's hottest paths, where a session's bookkeeping costs
        more than the query itself.
        """
        with self.engine.connect() as conn:
            return conn.execute(statement, params).first()

    def rows(self, statement: Executable, params: dict | None = None) -> list[Row]:
        """Every row of a read-only Core query, without an ORM session."""
        with self.engine.connect() as conn:
            return list(conn.execute(statement, params))

    @property
    def limits(self) -> Limits:
        """What package work in a child process may use (memory, seconds per phase)."""
        return Limits.from_settings(self.settings)

    def solve(
        self,
        spec: EnvironmentSpec,
        platforms: list[str] | None = None,
        *,
        gate: ChannelGate | None = None,
        reporter: Reporter | None = None,
    ) -> Lock:
        """Solve ``spec`` in a solver child (never in this process), under ``gate``."""
        return self.solvers.solve(spec, platforms, gate=gate, reporter=reporter)

    def search_packages(
        self,
        query: str,
        channels: list[str],
        platforms: list[str],
        limit: int = 50,
        *,
        gate: ChannelGate | None = None,
    ) -> list[PackageSummary]:
        """Packages of ``channels`` whose name holds ``query``, read in a solver child."""
        return self.solvers.search(query, channels, platforms, limit, gate=gate)

    @property
    def solvers(self) -> SolverPool:
        """The solver children of this process, sized and recycled by settings."""
        with self._solvers_lock:
            if self._solvers is None:
                self._solvers = SolverPool(
                    self.solver,
                    self.limits,
                    size=self.settings.solver_processes,
                    max_solves=self.settings.solver_max_solves,
                    max_rss_mb=self.settings.solver_max_rss_mb,
                )
            return self._solvers

    def builder(self) -> LocalBuilder:
        """The pipeline of the service's builds; the tarball is a job of its own (``pack``)."""
        shared = self.settings.environments_dir
        return LocalBuilder(
            self.settings.data_dir,
            self.store,
            self.solver,
            tarball=False,
            limits=self.limits,
            envs_root=layout.shared_builds_dir(shared) if shared else None,
            records_root=layout.shared_records_dir(shared) if shared else None,
        )
