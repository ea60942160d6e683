"""Conda packages built to hurt the server that installs them, in a ``file://`` channel.

Each is a genuine ``.conda`` archive (``tests/support/packages.py`` writes its
metadata) whose payload or ``info/paths.json`` holds what a careless or hostile
package author could put there: absolute paths, ``..`` members, symlinks and
hard links out of the prefix, a post-link script that never ends, a
``paths.json`` that takes gigabytes to read. Targets outside the prefix are
files under ``outside``, a directory the test owns and watches.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from tests.support.packages import ARCHIVE_MTIME, PackageDef, write_package


@dataclass
class Member:
    """One payload entry: a file (``data``), a symlink or a hard link (``link`` target)."""

    path: str
    data: bytes = b""
    kind: bytes = tarfile.REGTYPE
    link: str = ""
    mode: int = 0o644
    #: Listed in paths.json (rattler links only what it lists).
    listed: bool = True


@dataclass
class HostilePackage:
    name: str
    members: list[Member]
    version: str = "1.0"
    #: Extra ``paths.json`` entries that name no payload member.
    extra_paths: list[dict] = field(default_factory=list)
    #: A generator of ``paths.json`` bytes instead of the listed members (a huge one).
    paths_json: Iterator[bytes] | None = None
    paths_json_size: int = 0

    @property
    def stem(self) -> str:
        return f"{self.name}-{self.version}-0"


def _payload_tar(members: list[Member]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m in members:
            info = tarfile.TarInfo(m.path)
            info.type = m.kind
            info.mtime = ARCHIVE_MTIME
            info.mode = m.mode
            info.linkname = m.link
            info.size = len(m.data) if m.kind == tarfile.REGTYPE else 0
            tf.addfile(info, io.BytesIO(m.data) if m.kind == tarfile.REGTYPE else None)
    return buf.getvalue()


def _paths_entries(pkg: HostilePackage) -> list[dict]:
    entries = []
    for m in pkg.members:
        if not m.listed:
            continue
        if m.kind == tarfile.SYMTYPE:
            entries.append({"_path": m.path, "path_type": "softlink", "size_in_bytes": 0})
        else:
            entries.append(
                {
                    "_path": m.path,
                    "path_type": "hardlink",
                    "sha256": hashlib.sha256(m.data).hexdigest(),
                    "size_in_bytes": len(m.data),
                }
            )
    return entries + pkg.extra_paths


class _Stream(io.RawIOBase):
    """A read-only file over a generator of chunks (tarfile copies from it)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        while not self._rest:
            try:
                self._rest = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


def write_hostile(pkg: HostilePackage, subdir_dir: Path) -> Path:
    """Write ``pkg`` as a ``.conda`` archive into a channel subdir."""
    index = PackageDef(pkg.name, pkg.version).index_json()
    info_small = {
        "info/index.json": json.dumps(index, sort_keys=True).encode(),
        "info/files": "".join(f"{m.path}\n" for m in pkg.members if m.listed).encode(),
    }
    subdir_dir.mkdir(parents=True, exist_ok=True)
    target = subdir_dir / f"{pkg.stem}.conda"
    cctx = zstandard.ZstdCompressor(level=3)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(
            zipfile.ZipInfo("metadata.json", date_time=(2023, 11, 14, 22, 13, 20)),
            json.dumps({"conda_pkg_format_version": 2}),
        )
        with (
            zf.open(f"info-{pkg.stem}.tar.zst", "w", force_zip64=True) as raw,
            cctx.stream_writer(raw, closefd=False) as zst,
            tarfile.open(fileobj=zst, mode="w|", format=tarfile.PAX_FORMAT) as tf,
        ):
            for name, data in info_small.items():
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), ARCHIVE_MTIME
                tf.addfile(info, io.BytesIO(data))
            info = tarfile.TarInfo("info/paths.json")
            info.mtime = ARCHIVE_MTIME
            if pkg.paths_json is not None:
                info.size = pkg.paths_json_size
                tf.addfile(info, io.BufferedReader(_Stream(pkg.paths_json), 1 << 20))
            else:
                data = json.dumps({"paths": _paths_entries(pkg), "paths_version": 1}).encode()
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        zf.writestr(
            zipfile.ZipInfo(f"pkg-{pkg.stem}.tar.zst", date_time=(2023, 11, 14, 22, 13, 20)),
            cctx.compress(_payload_tar(pkg.members)),
        )
    return target


def _huge_paths_json(entries: int) -> tuple[Iterator[bytes], int]:
    """``paths.json`` of ``entries`` entries: small on the wire, gigabytes once parsed."""
    entry = b'{"_path":"share/x","path_type":"hardlink","size_in_bytes":0},'
    head, tail = b'{"paths_version":1,"paths":[', b'{"_path":"share/x","path_type":"hardlink"}]}'
    per_chunk = 16384
    chunk = entry * per_chunk

    def chunks() -> Iterator[bytes]:
        yield head
        for _ in range(entries // per_chunk):
            yield chunk
        yield tail

    size = len(head) + len(chunk) * (entries // per_chunk) + len(tail)
    return chunks(), size


def hostile_packages(outside: Path) -> dict[str, HostilePackage]:
    """Every hostile package, by name; ``outside`` is where escapes would land."""
    secret = outside / "secret"
    loop, size = _huge_paths_json(4_000_000)
    return {
        # rattler panics, then aborts the whole process ("All inserted paths must be relative").
        "evil-abspath": HostilePackage(
            "evil-abspath",
            [
                Member("share/evil-abspath/ok", b"ok\n"),
                Member(str(outside / "abs-written").lstrip("/"), b"x", listed=False),
            ],
            extra_paths=[
                {
                    "_path": str(outside / "abs-written"),
                    "path_type": "hardlink",
                    "sha256": hashlib.sha256(b"x").hexdigest(),
                    "size_in_bytes": 1,
                }
            ],
        ),
        "evil-dotdot": HostilePackage(
            "evil-dotdot",
            [Member("share/ok", b"ok\n"), Member("../../../../dotdot-written", b"x")],
        ),
        "evil-symlink": HostilePackage(
            "evil-symlink",
            [
                Member("share/out", kind=tarfile.SYMTYPE, link=str(outside)),
                Member("share/out/symlink-written", b"x", listed=False),
                Member("share/secret", kind=tarfile.SYMTYPE, link=str(secret)),
            ],
        ),
        "evil-hardlink": HostilePackage(
            "evil-hardlink",
            [
                Member("share/secret", kind=tarfile.LNKTYPE, link=str(secret)),
                Member("share/passwd", kind=tarfile.LNKTYPE, link="/etc/passwd"),
            ],
        ),
        "evil-postlink": HostilePackage(
            "evil-postlink",
            [
                Member(
                    "bin/.evil-postlink-post-link.sh",
                    f"#!/bin/sh\ntouch {outside}/postlink-ran\nwhile true; do :; done\n".encode(),
                    mode=0o755,
                )
            ],
        ),
        "evil-bigpaths": HostilePackage(
            "evil-bigpaths", [Member("share/x", b"")], paths_json=loop, paths_json_size=size
        ),
    }


def make_hostile_channel(root: Path, outside: Path, names: list[str] | None = None) -> str:
    """A ``file://`` channel with the hostile packages (``names``, default all) and an
    ordinary ``tool``; ``outside`` gets a ``secret`` file that no install may touch."""
    from rattler.index import index_fs

    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret").write_text("secret\n")
    chosen = hostile_packages(outside)
    for name in names or list(chosen):
        write_hostile(chosen[name], root / "linux-64")
    write_package(PackageDef("tool", "1.0"), root / "linux-64")
    (root / "noarch").mkdir(exist_ok=True)
    asyncio.run(index_fs(root))
    return root.resolve().as_uri()


def outside_state(outside: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``outside`` with its link count and bytes: what an escape changes."""
    return {
        str(p.relative_to(outside)): (p.lstat().st_nlink, p.read_bytes())
        for p in sorted(outside.rglob("*"))
        if p.is_file()
    }
