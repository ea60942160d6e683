"""What stopped builds leave on this machine's disk: found, reported and removed.

A build installs its prefix into ``envs/.staging-<build key>-<id>/`` and
renames it into place when complete; packing and image layers work in scratch
directories under ``tmp/``; a build record is written as ``builds/.record-*``
and renamed. A process killed in the middle (out of memory, a redeploy, a
canceled work process) leaves these behind, and nothing else ever removes them.

Each piece has an owner that holds a ``flock`` while it works, and the kernel
drops that lock when the owner dies, however it dies:

- a staging prefix: the build key's lock (``locks/build-<key>.lock``), held by
  the pipeline for the whole build;
- a scratch directory: a lock on the directory itself (:func:`scratch_directory`);
- a record being written: none (it lives for milliseconds); it is left alone
  until it is older than ``min_age``.

A piece is a leftover only when its lock can be taken now, and, for staging
prefixes, when the caller does not name its build key as live (a build whose
lease is current, on any machine). The service's garbage collection and every
serving or worker process at start remove them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from condastore_core import layout
from condastore_core.locks import try_file_lock

#: A scratch directory is locked right after it is made; younger ones are left alone.
SCRATCH_MIN_AGE_SECONDS = 60.0
STAGING_PREFIX = ".staging-"
RECORD_PREFIX = ".record-"


@dataclass(frozen=True)
class Leftover:
    path: Path
    #: ``staging`` (a half-installed prefix), ``scratch`` or ``record``.
    kind: str
    size: int


@contextlib.contextmanager
def scratch_directory(root: Path, prefix: str) -> Iterator[Path]:
    """A new directory under ``root``, locked while in use and removed afterwards."""
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=root, prefix=prefix))
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def find(
    data_dir: Path, *, live_keys: Collection[str] = (), min_age: float = SCRATCH_MIN_AGE_SECONDS
) -> list[Leftover]:
    """Leftovers under ``data_dir`` that nothing holds now (a report: nothing is removed)."""
    return [item for item, _ in _scan(data_dir, live_keys, min_age, remove=False)]


def remove(
    data_dir: Path, *, live_keys: Collection[str] = (), min_age: float = SCRATCH_MIN_AGE_SECONDS
) -> list[Leftover]:
    """Remove the leftovers under ``data_dir``; each is removed while its lock is held."""
    return [item for item, removed in _scan(data_dir, live_keys, min_age, remove=True) if removed]


def _scan(
    data_dir: Path, live_keys: Collection[str], min_age: float, *, remove: bool
) -> Iterator[tuple[Leftover, bool]]:
    now = time.time()
    envs = layout.envs_dir(data_dir)
    for path in _entries(envs, STAGING_PREFIX):
        key = path.name[len(STAGING_PREFIX) :].rpartition("-")[0]
        if not key or key in live_keys:
            continue
        with try_file_lock(layout.lock_file_path(data_dir, f"build-{key}")) as free:
            if free:
                yield _take(path, "staging", remove)
    for path in _entries(layout.scratch_dir(data_dir), ""):
        if _age(path, now) < min_age:
            continue
        with try_file_lock(path) as free:
            if free:
                yield _take(path, "scratch", remove)
    for path in _entries(layout.build_record_path(data_dir, "x").parent, RECORD_PREFIX):
        if _age(path, now) >= min_age:
            yield _take(path, "record", remove)


def _entries(directory: Path, prefix: str) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.name.startswith(prefix))
    except FileNotFoundError:
        return []


def _age(path: Path, now: float) -> float:
    try:
        return now - path.lstat().st_mtime
    except FileNotFoundError:
        return 0.0


def _take(path: Path, kind: str, remove: bool) -> tuple[Leftover, bool]:
    item = Leftover(path, kind, _size(path))
    if not remove:
        return item, False
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return item, not path.exists()


def _size(path: Path) -> int:
    if not path.is_dir() or path.is_symlink():
        with contextlib.suppress(FileNotFoundError):
            return path.lstat().st_size
        return 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total
