"""Refuse a package whose files would land outside the prefix, before rattler links it.

rattler links what a package's ``info/paths.json`` lists without resolving
``..`` (it fails today only because such a source file is missing) and aborts
its process on an absolute path. So every archive is read first, in the child
that installs it: each listed path and each payload member must stay inside
the prefix, each symlink must point inside it, each hard link at a member of
the same package. A package that breaks one of these is refused whole, the
error naming the package and the path.

Archives on ``file://`` channels are read in place; a package already in the
package cache is checked as rattler extracted it; any other is read through
the HTTP client the install downloads with (the channel gate's), so this
check never fetches what the install itself could not.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from condastore_core.errors import InstallError
from condastore_core.progress import NullReporter, Reporter


class UnsafePackage(InstallError):
    """A package holds a path that would be written outside the prefix."""

    def __init__(self, stem: str, path: str) -> None:
        super().__init__(
            f"package {stem} holds a path outside the prefix: {path}",
            detail={"package": stem, "path": path},
        )
        self.stem = stem
        self.path = path


@dataclass(frozen=True)
class PackageSource:
    """Where one package's archive is: its name (``name-version-build``), URL and sha256."""

    stem: str
    url: str
    sha256: str | None = None


def escapes(path: str) -> bool:
    """Whether a package-relative ``path`` is absolute or climbs out with ``..``."""
    if not path or path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        return True
    return ".." in re.split(r"[/\\]", path)


def link_escapes(member: str, target: str) -> bool:
    """Whether a symlink at ``member`` pointing at ``target`` reaches outside the prefix."""
    if target.startswith("/"):
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(member), target))
    return resolved == ".." or resolved.startswith("../")


def check_packages(
    sources: Iterable[PackageSource],
    cache_dir: Path,
    client: object | None = None,
    reporter: Reporter | None = None,
) -> None:
    """Raise :class:`UnsafePackage` for the first package with a path outside the prefix."""
    asyncio.run(_check_all(list(sources), cache_dir, client, reporter or NullReporter()))


async def _check_all(
    sources: list[PackageSource], cache_dir: Path, client: object | None, reporter: Reporter
) -> None:
    for source in sources:
        reporter.log(f"reading {source.stem}")
        extracted = cache_dir / source.stem
        parsed = urlparse(source.url)
        if parsed.scheme == "file":
            await _check_archive(source.stem, Path(unquote(parsed.path)), None)
        elif _cached(cache_dir, source):
            _check_directory(source.stem, extracted)
        else:
            await _check_archive(source.stem, None, (client, source.url))


def _cached(cache_dir: Path, source: PackageSource) -> bool:
    """Whether rattler's cache holds this very archive extracted: its entry's lock file
    records the archive's sha256 after an 8-byte revision; a stale entry is extracted again."""
    try:
        recorded = (cache_dir / f"{source.stem}.lock").read_bytes()[8:40].hex()
    except OSError:
        return False
    return (
        bool(source.sha256)
        and recorded == source.sha256
        and (cache_dir / source.stem / "info" / "paths.json").is_file()
    )


_BAD_ARCHIVE_PATH = re.compile(r"archive path: (?P<path>.+)$")


async def _check_archive(stem: str, path: Path | None, remote: tuple[object, str] | None) -> None:
    from rattler.networking import Client
    from rattler.package_streaming import PackageArchive

    try:
        if path is not None:
            archive = await PackageArchive.from_path(path)
        else:
            assert remote is not None
            client, url = remote
            archive = await PackageArchive.from_url(client or Client(), url)  # type: ignore[arg-type]
        listed = await archive.paths_json()
    except OSError as exc:
        where = remote[1] if remote is not None else str(path)
        raise InstallError(f"cannot read package {stem} at {where}: {exc}") from None
    for entry in listed.paths:
        if escapes(str(entry.relative_path)):
            raise UnsafePackage(stem, str(entry.relative_path))
    try:
        async for member in archive.stream("pkg"):
            _check_member(
                stem, member.name, member.link_target, member.is_symlink, member.is_hardlink
            )
    except OSError as exc:
        bad = _BAD_ARCHIVE_PATH.search(str(exc))
        if bad is not None:  # rattler's reader refuses ``..`` members itself
            raise UnsafePackage(stem, bad["path"]) from None
        raise InstallError(f"cannot read package {stem}: {exc}") from None


def _check_member(stem: str, name: str, target: str | None, symlink: bool, hardlink: bool) -> None:
    if escapes(name):
        raise UnsafePackage(stem, name)
    if symlink and target is not None and link_escapes(name, target):
        raise UnsafePackage(stem, f"{name} -> {target}")
    if hardlink and target is not None and escapes(target):
        raise UnsafePackage(stem, f"{name} => {target}")


def _check_directory(stem: str, root: Path) -> None:
    """A package as rattler extracted it into the package cache."""
    import rattler

    try:
        listed = rattler.PathsJson.from_package_directory(root)
    except Exception as exc:  # rattler raises its own exception types for bad JSON
        raise InstallError(f"cannot read package {stem}: {exc}") from None
    for entry in listed.paths:
        name = str(entry.relative_path)
        if escapes(name):
            raise UnsafePackage(stem, name)
        candidate = root / name
        if candidate.is_symlink() and link_escapes(name, os.readlink(candidate)):
            raise UnsafePackage(stem, f"{name} -> {os.readlink(candidate)}")
