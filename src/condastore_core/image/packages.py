"""What goes into a package's layer: its files as installed, and a normalised conda-meta record.

A package's layer must depend only on the package, the install prefix and the
platform (and, for noarch python packages, the python they were placed for).
rattler's ``conda-meta/<pkg>.json`` also records where *this* machine kept its
package cache and what the user asked for; those fields are dropped here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from condastore_core.hashing import content_hash
from condastore_core.image.tarball import Entry
from condastore_core.lock import LockedPackage

#: conda-meta fields that describe this machine or this request, not the package.
VOLATILE_FIELDS = (
    "extracted_package_dir",
    "package_tarball_full_path",
    "requested_spec",
    "requested_specs",
    "link",
)

LAYER_SCHEME = 1


def layer_cache_key(
    pkg: LockedPackage, prefix: str, platform: str, compression: str, python: str | None
) -> str:
    """Everything a package layer's bytes depend on, hashed."""
    return content_hash(
        "layer",
        {
            "scheme": LAYER_SCHEME,
            "sha256": pkg.content_id,
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


@dataclass(frozen=True)
class InstalledPackage:
    record_name: str  # conda-meta file name without .json
    files: tuple[str, ...]
    meta: bytes  # the normalised conda-meta json


def read_installed(prefix: Path) -> dict[str, InstalledPackage]:
    """Installed packages of a prefix, by package name."""
    result = {}
    for path in sorted((prefix / "conda-meta").glob("*.json")):
        record = json.loads(path.read_text())
        for key in VOLATILE_FIELDS:
            record.pop(key, None)
        meta = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
        result[record["name"]] = InstalledPackage(path.stem, tuple(record.get("files", ())), meta)
    return result


def layer_entries(staging: Path, install_prefix: str, pkg: InstalledPackage) -> list[Entry]:
    root = install_prefix.strip("/")
    entries = [Entry(f"{root}/{f}", source=staging / f) for f in pkg.files]
    entries.append(Entry(f"{root}/conda-meta/{pkg.record_name}.json", data=pkg.meta))
    return entries
