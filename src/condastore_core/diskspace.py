"""Disk space: how much is free, the guard in front of new work, and knowing a full disk.

A full disk reaches the code as an ``OSError`` (ENOSPC, or EDQUOT for a quota)
from a file write, or as the database's own error when its file cannot grow
(SQLite's "database or disk is full", PostgreSQL's SQLSTATE 53100). Wherever it
comes from, callers turn it into :class:`InsufficientStorage`, which the web and
registry apps answer with HTTP 507 and a message saying what to do, instead of
an internal error.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from condastore_core.errors import InsufficientStorage
from condastore_core.settings import Settings

_OUT_OF_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
#: SQLITE_FULL, SQLite's result code for "database or disk is full".
_SQLITE_FULL = 13
_POSTGRES_DISK_FULL = "53100"
_MiB = 1 << 20


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem of ``path`` (of its parent while it does not exist yet)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def shortfall(settings: Settings) -> str | None:
    """Why the data directory is too full for new work, or None while it has room."""
    free = free_bytes(settings.data_dir)
    if free >= settings.min_free_bytes:
        return None
    return (
        f"only {free // _MiB} MiB free in {settings.data_dir}; at least "
        f"{settings.min_free_bytes // _MiB} MiB are needed (setting min_free_bytes). "
        "Free space, for example with `condastore gc`."
    )


def check_free_space(settings: Settings) -> None:
    """Refuse new work before a full disk makes it fail half-way."""
    problem = shortfall(settings)
    if problem is not None:
        raise InsufficientStorage(problem)


def is_out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says that a disk or quota is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _OUT_OF_SPACE_ERRNOS:
            return True
        original = getattr(current, "orig", None)  # a database driver's error, wrapped
        for candidate in (current, original):
            if candidate is None:
                continue
            if getattr(candidate, "sqlite_errorcode", None) == _SQLITE_FULL:
                return True
            if _POSTGRES_DISK_FULL in (
                getattr(candidate, "sqlstate", None),
                getattr(candidate, "pgcode", None),
            ):
                return True
            if "database or disk is full" in str(candidate):
                return True
        current = current.__cause__ or current.__context__
    return False


def out_of_space_error(exc: BaseException) -> InsufficientStorage:
    """The error to report for ``exc``, a write that failed because the disk is full."""
    detail = getattr(exc, "strerror", None) or str(getattr(exc, "orig", None) or exc)
    return InsufficientStorage(
        f"the server ran out of storage space ({detail.strip()}); nothing was changed. "
        "Try again once space is freed (an administrator can run `condastore gc`)."
    )
