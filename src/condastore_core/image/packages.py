"""What goes into a package's layer: its files as installed, and a normalised conda-meta record.

A package's layer must depend only on the package record, the install prefix
and the platform (and, for noarch python packages, the python they were placed
for). So each package is installed alone into a scratch prefix patched for the
image prefix, and rattler's ``conda-meta/<pkg>.json`` loses what describes
*this* machine or request (where the package cache is, what the user asked
for); ``size`` comes from the record or the archive, never ``null`` for one
history and a number for another.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from condastore_core.hashing import content_hash
from condastore_core.image.tarball import Entry
from condastore_core.install import local_archive_size
from condastore_core.lock import LockedPackage

#: conda-meta fields that describe this machine or this request, not the package.
VOLATILE_FIELDS = (
    "extracted_package_dir",
    "package_tarball_full_path",
    "requested_spec",
    "requested_specs",
    "link",
)

#: 2: each package installed alone (no ``__clobbers__``), ``size`` from the record.
LAYER_SCHEME = 2


def layer_cache_key(
    pkg: LockedPackage, prefix: str, platform: str, compression: str, python: str | None
) -> str:
    """Everything a package layer's bytes depend on, hashed."""
    return content_hash(
        "layer",
        {
            "scheme": LAYER_SCHEME,
            "sha256": pkg.content_id,
            # conda-meta records where the package came from.
            "url": pkg.url,
            "prefix": prefix,
            "platform": platform,
            "compression": compression,
            # Only noarch python packages are placed differently per python version.
            "python": python if pkg.noarch == "python" else None,
        },
    )


def python_version(packages: tuple[LockedPackage, ...]) -> str | None:
    """``major.minor`` of the lock's python, which decides where noarch python goes."""
    for pkg in packages:
        if pkg.name == "python":
            return ".".join(pkg.version.split(".")[:2])
    return None


def archive_size(pkg: LockedPackage) -> int | None:
    """The archive's size: the record's, else a local archive's own (a re-read lock has none)."""
    return pkg.size if pkg.size is not None else local_archive_size(pkg.url)


@dataclass(frozen=True)
class InstalledPackage:
    record_name: str  # conda-meta file name without .json
    #: (path in the prefix, path of the file in the scratch prefix), sorted
    files: tuple[tuple[str, str], ...]
    meta: bytes  # the normalised conda-meta json


def read_installed_package(prefix: Path, pkg: LockedPackage) -> InstalledPackage:
    """``pkg`` as installed in a scratch prefix, its conda-meta normalised.

    A file rattler moved aside (``__clobbers__``, when python came along for a
    noarch package) is taken back to its own path: a layer holds the package as
    if alone.
    """
    stem = f"{pkg.name}-{pkg.version}-{pkg.build}"
    record = json.loads((prefix / "conda-meta" / f"{stem}.json").read_text())
    for key in VOLATILE_FIELDS:
        record.pop(key, None)
    record["size"] = archive_size(pkg)
    files: list[tuple[str, str]] = []
    paths = record.get("paths_data", {}).get("paths", [])
    for entry in paths:
        where = entry.pop("original_path", None) or entry["_path"]
        files.append((where, entry["_path"]))
        entry["_path"] = where
    if not paths:
        files = [(f, f) for f in record.get("files", ())]
    record["files"] = sorted(f for f, _ in files)
    if paths:
        paths.sort(key=lambda e: e["_path"])
    meta = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
    return InstalledPackage(stem, tuple(sorted(files)), meta)


def layer_entries(staging: Path, install_prefix: str, pkg: InstalledPackage) -> list[Entry]:
    root = install_prefix.strip("/")
    entries = [Entry(f"{root}/{path}", source=staging / source) for path, source in pkg.files]
    entries.append(Entry(f"{root}/conda-meta/{pkg.record_name}.json", data=pkg.meta))
    return entries
