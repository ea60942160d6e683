"""The local build pipeline: spec -> lock -> prefix -> artifacts, idempotent by lock hash.

This is the embedded, database-free pipeline behind ``condastore build``. A
build is named by its build key (a prefix of the lock hash); building a lock
that already has a complete build returns that build without installing again.
Builds of the same key in several processes serialise on a lock file; builds
of different keys run in parallel and share the package cache.

The record of a build (``builds/<key>.json``) is written last, after every
artifact is safe in the blob store: a record on disk means a complete build.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from condastore_core import layout
from condastore_core.artifacts import ArtifactInfo, ArtifactKind
from condastore_core.digests import Digest
from condastore_core.errors import BlobNotFound, CondastoreError
from condastore_core.install import install_gated
from condastore_core.isolation import DEFAULT_LIMITS, Isolation, Limits, run_phase
from condastore_core.leftovers import scratch_directory
from condastore_core.lock import Lock
from condastore_core.locks import file_lock, shared_file_lock
from condastore_core.pack import pack_gated
from condastore_core.progress import CollectingReporter, NullReporter, Reporter
from condastore_core.render import render_text_artifacts
from condastore_core.solve import Solver, native_platform
from condastore_core.spec import EnvironmentSpec
from condastore_core.store import BlobStore, put

RECORD_VERSION = 1


@dataclass(frozen=True)
class BuildResult:
    build_key: str
    spec_hash: str
    lock_hash: str
    platform: str
    prefix: Path | None
    artifacts: dict[ArtifactKind, ArtifactInfo]
    reused: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self, store: BlobStore) -> dict[str, object]:
        return {
            "build_key": self.build_key,
            "spec_hash": self.spec_hash,
            "lock_hash": self.lock_hash,
            "platform": self.platform,
            "prefix": str(self.prefix) if self.prefix else None,
            "reused": self.reused,
            "artifacts": {
                kind.value: {
                    "digest": str(a.digest),
                    "size": a.size,
                    "path": store.local_path(a.digest),
                }
                for kind, a in sorted(self.artifacts.items())
            },
        }


def spec_for_lock(lock: Lock, name: str = "locked") -> EnvironmentSpec:
    """A spec that pins exactly a lock's packages; used when a build starts from a lockfile."""
    platform = lock.platforms[0]
    deps = [f"{r.name} =={r.version} {r.build}" for r in lock.records(platform)]
    return EnvironmentSpec.from_dict(
        {
            "name": name,
            "channels": list(lock.channels),
            "dependencies": deps,
            "pip": [f"{p.name}=={p.version}" for p in lock.pip_records(platform)],
            "platforms": lock.platforms,
        }
    )


class LocalBuilder:
    """Builds environments into a data directory and a blob store."""

    def __init__(
        self,
        data_dir: Path,
        store: BlobStore,
        solver: Solver,
        *,
        tarball: bool = True,
        install_platform: str | None = None,
        limits: Limits = DEFAULT_LIMITS,
        envs_root: Path | None = None,
        records_root: Path | None = None,
        isolation: Isolation = "child",
    ) -> None:
        self.data_dir = Path(data_dir)
        #: Where prefixes are installed (at their final path: a prefix never moves) and
        #: where their records are: the data directory's, or a shared environments directory.
        self.envs_root = envs_root or layout.envs_dir(self.data_dir)
        self.records_root = records_root or layout.records_dir(self.data_dir)
        self.store = store
        self.solver = solver
        self.tarball = tarball
        self.install_platform = install_platform or native_platform()
        #: Solve, install and pack run in child processes under these limits.
        self.limits = limits
        #: "inline" only for the local command line (see ``isolation.Isolation``).
        self.isolation: Isolation = isolation

    # -- public API --------------------------------------------------------------

    def lock(
        self,
        spec: EnvironmentSpec,
        platforms: list[str] | None = None,
        reporter: Reporter | None = None,
    ) -> Lock:
        return run_phase(
            self.isolation,
            "solve",
            self.limits,
            self.solver.solve,
            spec,
            platforms,
            reporter=reporter,
        )

    def build(
        self,
        spec: EnvironmentSpec | None = None,
        *,
        lock: Lock | None = None,
        platforms: list[str] | None = None,
        reporter: Reporter | None = None,
    ) -> BuildResult:
        """Build ``spec`` (solving it) or exactly ``lock``; reuse an existing build of that lock."""
        if spec is None and lock is None:
            raise ValueError("build needs a spec or a lock")
        log = CollectingReporter(echo=reporter or NullReporter())
        timings: dict[str, float] = {}
        if lock is None:
            assert spec is not None
            log.step("solving")
            log.log(
                f"solving {spec.name} ({spec.spec_hash[:12]}) for "
                f"{', '.join(platforms or spec.platforms or [self.install_platform])}"
            )
            t = time.perf_counter()
            lock = self.lock(spec, platforms, log)
            timings["solve"] = time.perf_counter() - t
        spec = spec or spec_for_lock(lock)
        key = lock.build_key
        log.log(
            f"lock {lock.lock_hash[:12]}: build key {key}, "
            f"{sum(len(r) for r in lock.packages.values())} packages"
            + (f", {sum(len(r) for r in lock.pip.values())} pip packages" if lock.pip else "")
        )

        existing = self.find(key)
        if existing is not None:
            log.log(f"build {key} exists; reusing its prefix and artifacts")
            return replace(existing, spec_hash=spec.spec_hash, reused=True)

        with self._key_lock(key):
            existing = self.find(key)  # another process may have finished it meanwhile
            if existing is not None:
                return replace(existing, spec_hash=spec.spec_hash, reused=True)
            return self._build_locked(spec, lock, log, timings)

    def find(self, build_key: str) -> BuildResult | None:
        """The complete build of ``build_key``, or None when it is missing or damaged."""
        path = layout.record_in(self.records_root, build_key)
        try:
            record = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        result = _from_record(record)
        if result.prefix is not None and not (result.prefix / "conda-meta").is_dir():
            return None
        for artifact in result.artifacts.values():
            try:
                self.store.stat(artifact.digest)
            except BlobNotFound:
                return None
        return result

    def discard_incomplete(self, build_key: str) -> None:
        """Remove what a stopped build of ``build_key`` left: staging and unrecorded prefixes."""
        with self._key_lock(build_key):
            if self.find(build_key) is not None:
                return  # complete after all
            for path in [
                self.prefix_path(build_key),
                *self.envs_root.glob(f".staging-{build_key}-*"),
            ]:
                shutil.rmtree(path, ignore_errors=True)

    # -- internals -----------------------------------------------------------------

    def _build_locked(
        self, spec: EnvironmentSpec, lock: Lock, log: CollectingReporter, timings: dict[str, float]
    ) -> BuildResult:
        key = lock.build_key
        platform = self.install_platform if self.install_platform in lock.packages else None
        export_platform = platform or lock.platforms[0]
        prefix: Path | None = None
        artifacts: dict[ArtifactKind, ArtifactInfo] = {}

        if platform is None:
            log.log(
                f"the lock has no {self.install_platform} packages: "
                "writing its lockfiles only (no prefix, no tarball)"
            )
        else:
            prefix = self.prefix_path(key)
            if prefix.exists():  # left by a crashed build that never wrote its record
                log.log(f"removing incomplete prefix {prefix}")
                shutil.rmtree(prefix)
            t = time.perf_counter()
            with (
                _discarding_staging(prefix),
                shared_file_lock(layout.package_cache_lock_path(self.data_dir)),
            ):
                run_phase(
                    self.isolation,
                    "install",
                    self.limits,
                    install_gated,
                    self.solver.gate,
                    lock,
                    platform,
                    prefix,
                    layout.package_cache_dir(self.data_dir),
                    reporter=log,
                    pip=self.solver.pip,
                )
            timings["install"] = time.perf_counter() - t

        log.step("writing artifacts")
        t = time.perf_counter()
        for kind, data in render_text_artifacts(spec, lock, export_platform).items():
            artifacts[kind] = self._put(kind, data)
        timings["artifacts"] = time.perf_counter() - t

        if prefix is not None and self.tarball:
            log.step("packing")
            log.log("packing the prefix with conda-pack")
            t = time.perf_counter()
            artifacts[ArtifactKind.TARBALL] = self._put_tarball(prefix)
            timings["tarball"] = time.perf_counter() - t
            log.log(f"tarball: {artifacts[ArtifactKind.TARBALL].size} bytes")

        log.log(f"build {key} complete")
        artifacts[ArtifactKind.LOG] = self._put(ArtifactKind.LOG, log.text().encode())
        result = BuildResult(
            key,
            spec.spec_hash,
            lock.lock_hash,
            export_platform,
            prefix,
            artifacts,
            reused=False,
            timings=timings,
        )
        self._write_record(result)
        return result

    def _put(self, kind: ArtifactKind, data: bytes) -> ArtifactInfo:
        info = put(self.store, data)
        return ArtifactInfo(kind, info.digest, info.size)

    def pack(self, build_key: str) -> ArtifactInfo | None:
        """The conda-pack tarball of an existing build's prefix, stored; None without a prefix."""
        prefix = self.prefix_path(build_key)
        if not (prefix / "conda-meta").is_dir():
            return None
        return self._put_tarball(prefix)

    def _put_tarball(self, prefix: Path) -> ArtifactInfo:
        with scratch_directory(layout.scratch_dir(self.data_dir), "pack-") as tmp:
            path = run_phase(
                self.isolation,
                "pack",
                self.limits,
                pack_gated,
                self.solver.gate,
                prefix,
                tmp / "environment.tar.gz",
            )
            with open(path, "rb") as f:
                info = put(self.store, f)
        return ArtifactInfo(ArtifactKind.TARBALL, info.digest, info.size)

    def _write_record(self, result: BuildResult) -> None:
        path = layout.record_in(self.records_root, result.build_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "version": RECORD_VERSION,
            "build_key": result.build_key,
            "spec_hash": result.spec_hash,
            "lock_hash": result.lock_hash,
            "platform": result.platform,
            "prefix": str(result.prefix) if result.prefix else None,
            "artifacts": {
                k.value: {"digest": str(a.digest), "size": a.size}
                for k, a in result.artifacts.items()
            },
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".record-")
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def prefix_path(self, build_key: str) -> Path:
        return layout.prefix_in(self.envs_root, build_key)

    def _key_lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        return file_lock(layout.lock_file_path(self.data_dir, f"build-{key}"))


@contextlib.contextmanager
def _discarding_staging(prefix: Path) -> Iterator[None]:
    """Remove the staging directories of ``prefix`` that a killed install left behind.

    The install runs in a child process; one killed (a crash, a limit, a cancel)
    cannot clean up after itself. The caller holds the build key's lock, so no
    other install of this prefix is running.
    """
    try:
        yield
    except BaseException:
        for path in prefix.parent.glob(f".staging-{prefix.name}-*"):
            shutil.rmtree(path, ignore_errors=True)
        raise


def _from_record(record: dict) -> BuildResult:
    if record.get("version") != RECORD_VERSION:
        raise CondastoreError(f"unsupported build record version {record.get('version')!r}")
    return BuildResult(
        build_key=record["build_key"],
        spec_hash=record["spec_hash"],
        lock_hash=record["lock_hash"],
        platform=record["platform"],
        prefix=Path(record["prefix"]) if record["prefix"] else None,
        artifacts={
            ArtifactKind(k): ArtifactInfo(ArtifactKind(k), Digest.parse(v["digest"]), v["size"])
            for k, v in record["artifacts"].items()
        },
    )
