"""Deterministic layer tarballs: sorted entries, fixed mtime, uid/gid 0, reproducible gzip/zstd.

Bytes depend only on the files given, never on the clock, the user or the
order the filesystem lists them in, so the same package always yields the same
layer digest.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import zstandard

GZIP = "gzip"
ZSTD = "zstd"
COMPRESSIONS = (GZIP, ZSTD)


class _Tee(io.RawIOBase):
    """Hashes and counts what passes through on its way to ``sink``."""

    def __init__(self, sink: BinaryIO | None) -> None:
        self.sink = sink
        self.hasher = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def write(self, data) -> int:  # type: ignore[no-untyped-def]
        self.hasher.update(data)
        self.size += len(data)
        if self.sink is not None:
            self.sink.write(data)
        return len(data)


@dataclass(frozen=True)
class Entry:
    """One path in a layer: a file from disk, a symlink, or bytes made up on the spot."""

    path: str  # relative to the layer root, POSIX, no leading slash
    source: Path | None = None
    data: bytes | None = None
    mode: int | None = None
    linkname: str | None = None  # a symlink to this target (merged layers)


@dataclass(frozen=True)
class TarResult:
    diff_id: str  # sha256 hex of the uncompressed tar
    size_uncompressed: int


def write_layer(entries: Iterable[Entry], sink: BinaryIO, compression: str = GZIP) -> TarResult:
    """Write ``entries`` (plus their parent directories) as a compressed tar to ``sink``."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}")
    if compression == GZIP:
        compressor: Any = gzip.GzipFile(
            filename="", mode="wb", fileobj=sink, mtime=0, compresslevel=6
        )
    else:
        compressor = zstandard.ZstdCompressor(level=3, write_checksum=True).stream_writer(
            sink, closefd=False
        )
    tee = _Tee(compressor)
    with tarfile.open(fileobj=tee, mode="w", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[arg-type]
        by_path = {e.path: e for e in entries}
        dirs = sorted({str(p) for e in by_path for p in PurePosixPath(e).parents if str(p) != "."})
        for path in sorted(set(dirs) | set(by_path)):
            entry = by_path.get(path)
            if entry is None or (
                entry.source is not None and entry.source.is_dir() and not entry.source.is_symlink()
            ):
                tar.addfile(_info(path, tarfile.DIRTYPE, 0o755))
            else:
                _add(tar, entry)
    compressor.close()
    return TarResult(tee.hasher.hexdigest(), tee.size)


def _info(path: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add(tar: tarfile.TarFile, entry: Entry) -> None:
    if entry.linkname is not None:
        info = _info(entry.path, tarfile.SYMTYPE, 0o777)
        info.linkname = entry.linkname
        tar.addfile(info)
        return
    if entry.data is not None:
        info = _info(entry.path, tarfile.REGTYPE, entry.mode or 0o644, len(entry.data))
        tar.addfile(info, io.BytesIO(entry.data))
        return
    assert entry.source is not None
    st = os.lstat(entry.source)
    if stat.S_ISLNK(st.st_mode):
        info = _info(entry.path, tarfile.SYMTYPE, 0o777)
        info.linkname = os.readlink(entry.source)
        tar.addfile(info)
        return
    mode = 0o755 if st.st_mode & 0o111 else 0o644
    info = _info(entry.path, tarfile.REGTYPE, mode, st.st_size)
    with open(entry.source, "rb") as f:
        tar.addfile(info, f)
