"""Real conda packages built by the tests, so every path is exercised without a network.

Each package is a genuine archive: `.tar.bz2` (v1) or `.conda` (v2: a zip of
zstd-compressed `info-` and `pkg-` tarballs), with `info/index.json`,
`info/paths.json`, `info/files` and a script in `bin/`. Archives are
deterministic (fixed mtimes and owners), so the same definition gives the same
sha256 every time.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

#: The placeholder conda-build writes into files that mention the build prefix.
PREFIX_PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3" + "_placehold" * 10
ARCHIVE_MTIME = 1_700_000_000


@dataclass(frozen=True)
class PackageDef:
    """What a test package holds; defaults give a runnable `bin/<name>` printing its version."""

    name: str
    version: str
    build: str = "0"
    build_number: int = 0
    subdir: str = "linux-64"
    depends: list[str] = field(default_factory=list)
    constrains: list[str] = field(default_factory=list)
    files: dict[str, str] | None = None
    has_prefix_file: bool = False
    archive: str = "conda"

    @property
    def stem(self) -> str:
        return f"{self.name}-{self.version}-{self.build}"

    @property
    def filename(self) -> str:
        return f"{self.stem}.{self.archive}"

    def payload(self) -> dict[str, str]:
        files = dict(
            self.files
            if self.files is not None
            else {f"bin/{self.name}": f"#!/bin/sh\necho {self.name} {self.version}\n"}
        )
        if self.has_prefix_file:
            files[f"share/{self.name}/prefix.txt"] = f"installed in {PREFIX_PLACEHOLDER}\n"
        return files

    def index_json(self) -> dict:
        index = {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "build_number": self.build_number,
            "depends": list(self.depends),
            "constrains": list(self.constrains),
            "subdir": self.subdir,
            "license": "BSD-3-Clause",
            "timestamp": ARCHIVE_MTIME * 1000,
        }
        if self.subdir == "noarch":
            index["noarch"] = "generic"
        else:
            index["platform"], _, index["arch"] = self.subdir.partition("-")
        return index


def _tar(members: dict[str, bytes], modes: dict[str, int] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name in sorted(members):
            data = members[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = ARCHIVE_MTIME
            info.mode = (modes or {}).get(name, 0o644)
            info.uname = info.gname = ""
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _contents(pkg: PackageDef) -> tuple[dict[str, bytes], dict[str, bytes], dict[str, int]]:
    """Return the payload files, the info files and file modes of a package."""
    payload = {path: text.encode() for path, text in pkg.payload().items()}
    modes = {path: 0o755 for path in payload if path.startswith("bin/")}
    paths = []
    for path, data in sorted(payload.items()):
        entry = {
            "_path": path,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(data).hexdigest(),
            "size_in_bytes": len(data),
        }
        if PREFIX_PLACEHOLDER.encode() in data:
            entry["file_mode"] = "text"
            entry["prefix_placeholder"] = PREFIX_PLACEHOLDER
        paths.append(entry)
    info = {
        "info/index.json": json.dumps(pkg.index_json(), indent=2, sort_keys=True).encode(),
        "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}, indent=2).encode(),
        "info/files": "".join(f"{p}\n" for p in sorted(payload)).encode(),
    }
    return payload, info, modes


def write_package(pkg: PackageDef, subdir_dir: Path) -> Path:
    """Write `pkg` as a real archive into a channel subdir and return its path."""
    payload, info, modes = _contents(pkg)
    subdir_dir.mkdir(parents=True, exist_ok=True)
    target = subdir_dir / pkg.filename
    if pkg.archive == "tar.bz2":
        import bz2

        target.write_bytes(bz2.compress(_tar({**info, **payload}, modes)))
    elif pkg.archive == "conda":
        cctx = zstandard.ZstdCompressor(level=3)
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as zf:
            members = [
                ("metadata.json", json.dumps({"conda_pkg_format_version": 2}).encode()),
                (f"info-{pkg.stem}.tar.zst", cctx.compress(_tar(info))),
                (f"pkg-{pkg.stem}.tar.zst", cctx.compress(_tar(payload, modes))),
            ]
            for name, data in members:
                zinfo = zipfile.ZipInfo(name, date_time=(2023, 11, 14, 22, 13, 20))
                zf.writestr(zinfo, data)
    else:
        raise ValueError(f"unknown archive format {pkg.archive!r}")
    return target


def make_channel(root: Path, packages: list[PackageDef]) -> str:
    """Build a `file://` channel holding `packages`, indexed by py-rattler; return its URL."""
    from rattler.index import index_fs

    root.mkdir(parents=True, exist_ok=True)
    for pkg in packages:
        write_package(pkg, root / pkg.subdir)
    (root / "noarch").mkdir(exist_ok=True)  # every channel has a noarch subdir
    asyncio.run(index_fs(root))
    return root.resolve().as_uri()
