"""What each machine keeps on its own disk, kept in check by that machine.

Past one machine, garbage collection runs once for the cluster (blobs, rows),
but every worker has prefixes and a package cache of its own that no other
process can see. Each worker therefore tidies its own data directory now and
then: prefixes of builds that were collected (or never completed), what
stopped builds left, and the package cache down to ``package_cache_max_bytes``,
least recently used packages first. A worker whose disk is under the guard
(``min_free_bytes``) takes no work meanwhile, so another worker does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from condastore_core import layout
from condastore_core.locks import try_file_lock
from condastore_core.periodic import Periodic
from condastore_core.service.context import Context
from condastore_core.service.gc import GcReport, remove_leftovers, remove_prefixes

logger = logging.getLogger(__name__)


@dataclass
class TidyReport:
    prefixes_removed: list[str] = field(default_factory=list)
    leftovers_removed: int = 0
    packages_removed: list[str] = field(default_factory=list)
    package_bytes_freed: int = 0


def tidy(ctx: Context) -> TidyReport:
    """One round of this machine's housekeeping; safe while builds run here."""
    report = TidyReport()
    gc_report = GcReport()
    remove_prefixes(ctx, gc_report, dry_run=False, collected=set())
    report.prefixes_removed = gc_report.prefixes_removed
    report.leftovers_removed = len(remove_leftovers(ctx))
    trim_package_cache(ctx, report)
    if report.prefixes_removed or report.packages_removed:
        logger.info(
            "tidied this machine: %d prefixes, %d packages (%d bytes)",
            len(report.prefixes_removed),
            len(report.packages_removed),
            report.package_bytes_freed,
        )
    return report


def trim_package_cache(ctx: Context, report: TidyReport) -> None:
    """Remove least recently used packages until the cache is under its cap.

    Installs hold the cache's lock shared; trimming takes it exclusively and
    gives up for this round while any install runs.
    """
    cap = ctx.settings.package_cache_max_bytes
    cache = layout.package_cache_dir(ctx.settings.data_dir)
    if cap <= 0 or not cache.is_dir():
        return
    with try_file_lock(layout.package_cache_lock_path(ctx.settings.data_dir)) as free:
        if not free:
            return
        entries = [
            (p, _last_used(p), _size(p)) for p in cache.iterdir() if not p.name.startswith(".")
        ]
        total = sum(size for _, _, size in entries)
        for path, _, size in sorted(entries, key=lambda e: e[1]):
            if total <= cap:
                break
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            total -= size
            report.packages_removed.append(path.name)
            report.package_bytes_freed += size


def _last_used(path: Path) -> float:
    """When a cache entry was last written or read (an install reads its files)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return 0.0
    newest = max(stat.st_mtime, stat.st_atime)
    index = path / "info" / "index.json"
    try:
        info = index.stat()
        newest = max(newest, info.st_mtime, info.st_atime)
    except (FileNotFoundError, NotADirectoryError):
        pass
    return newest


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                total += os.lstat(os.path.join(root, name)).st_size
    return total


class Housekeeper(Periodic):
    """Runs :func:`tidy` every ``tidy_interval_seconds`` in a worker, in a thread."""

    thread_name = "condastore-tidy"
    work = "tidying this machine"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx.settings.tidy_interval_seconds)
        self.ctx = ctx

    def run_once(self) -> None:
        tidy(self.ctx)
