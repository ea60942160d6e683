"""Blobs in a local directory: staged, fsynced, verified, then renamed into place.

Paths come from :mod:`condastore_core.layout`. A blob file is never modified
after its rename; a second writer of the same content just discards its copy.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from condastore_core import layout
from condastore_core.digests import ALGORITHMS, DEFAULT_ALGORITHM, Digest, new_hasher
from condastore_core.errors import BlobNotFound, DigestMismatch, InvalidDigest
from condastore_core.store.base import CHUNK_SIZE, BlobInfo, StagedUpload

_UPLOAD_ID_CHARS = set("0123456789abcdef-")


class _RangeReader:
    """A file limited to ``[start, end)``; keeps Range reads from streaming past the end.

    It has no ``fileno``: servers must not sendfile() past the range from it.
    """

    def __init__(self, f: BinaryIO, remaining: int) -> None:
        self._f = f
        self._remaining = remaining

    def read(self, n: int = -1) -> bytes:
        if self._remaining <= 0:
            return b""
        if n < 0 or n > self._remaining:
            n = self._remaining
        data = self._f.read(n)
        self._remaining -= len(data)
        return data

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> _RangeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalBlobWriter:
    def __init__(
        self, store: LocalBlobStore, algorithm: str, upload_id: str | None, offset: int | None
    ) -> None:
        self._store = store
        self._algorithm = algorithm
        self._hasher = new_hasher(algorithm)
        self._written = False
        if upload_id is None:
            self.upload_id = uuid.uuid4().hex
            self._path = store.staging_path(self.upload_id)
            self._file: BinaryIO = open(self._path, "xb")  # noqa: SIM115 - closed in commit/cancel
            self._size = 0
            self._hashed_as_written = True
            return
        self.upload_id = upload_id
        self._path = store.staging_path(upload_id)
        try:
            self._file = open(self._path, "r+b")  # noqa: SIM115 - closed in commit/cancel
        except FileNotFoundError:
            raise BlobNotFound(f"upload {upload_id} is unknown") from None
        staged = os.fstat(self._file.fileno()).st_size
        self._size = staged if offset is None else offset
        if self._size > staged:
            self._file.close()
            raise BlobNotFound(
                f"upload {upload_id} holds {staged} bytes, fewer than the {self._size} recorded"
            )
        if staged > self._size:  # written by a session that died before it was recorded
            self._file.truncate(self._size)
        self._file.seek(self._size)
        # hashlib state cannot be saved: a resumed upload is hashed from disk at commit,
        # once, rather than at every resumption (a PATCH each) of a long chunked upload.
        self._hashed_as_written = self._size == 0

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes) -> int:
        self._written = True
        self._file.write(data)
        if self._hashed_as_written:
            self._hasher.update(data)
        self._size += len(data)
        return len(data)

    def commit(self, expected: Digest | None = None) -> BlobInfo:
        self._file.flush()
        os.fsync(self._file.fileno())
        if not self._hashed_as_written:
            self._file.seek(0)
            while chunk := self._file.read(CHUNK_SIZE):
                self._hasher.update(chunk)
        self._file.close()
        actual = Digest(self._algorithm, self._hasher.hexdigest())
        if expected is not None and expected != actual:
            self._discard()
            raise DigestMismatch(f"content hashes to {actual}, not {expected}")
        target = self._store.blob_path(actual)
        if target.exists():
            self._discard()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._path, target)
            _fsync_dir(target.parent)
        return BlobInfo(actual, self._size)

    def close(self) -> None:
        if not self._file.closed:
            if self._written:  # an empty new upload has nothing to make durable
                self._file.flush()
                os.fsync(self._file.fileno())
            self._file.close()

    def cancel(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._discard()

    def _discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()


class LocalBlobStore:
    """A :class:`~condastore_core.store.base.BlobStore` on a local directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / layout.STAGING_DIR).mkdir(parents=True, exist_ok=True)

    def blob_path(self, digest: Digest) -> Path:
        return self.root / layout.blob_relpath(digest.algorithm, digest.hex)

    def staging_path(self, upload_id: str) -> Path:
        if not upload_id or not set(upload_id) <= _UPLOAD_ID_CHARS:
            raise InvalidDigest(f"malformed upload id: {upload_id!r}")
        return self.root / layout.STAGING_DIR / upload_id

    def stat(self, digest: Digest) -> BlobInfo:
        try:
            return BlobInfo(digest, self.blob_path(digest).stat().st_size)
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found") from None

    def exists(self, digest: Digest) -> bool:
        return self.blob_path(digest).is_file()

    def open(self, digest: Digest, start: int = 0, end: int | None = None) -> BinaryIO:
        try:
            f = open(self.blob_path(digest), "rb")  # noqa: SIM115 - returned to the caller
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found") from None
        if start == 0 and end is None:
            return f
        f.seek(start)
        size = os.fstat(f.fileno()).st_size
        remaining = (size if end is None else min(end, size)) - start
        return _RangeReader(f, remaining)  # type: ignore[return-value]

    def writer(
        self,
        algorithm: str = DEFAULT_ALGORITHM,
        upload_id: str | None = None,
        offset: int | None = None,
    ) -> LocalBlobWriter:
        return LocalBlobWriter(self, algorithm, upload_id, offset)

    def delete(self, digest: Digest) -> None:
        try:
            self.blob_path(digest).unlink()
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found") from None

    def iterate(self) -> Iterator[BlobInfo]:
        for algorithm in ALGORITHMS:
            base = self.root / algorithm
            if not base.is_dir():
                continue
            for shard in sorted(base.iterdir()):
                for entry in os.scandir(shard):
                    if entry.is_file():
                        st = entry.stat()
                        yield BlobInfo(Digest(algorithm, entry.name), st.st_size, st.st_mtime)

    def staged_uploads(self) -> Iterator[StagedUpload]:
        with (
            contextlib.suppress(FileNotFoundError),
            os.scandir(self.root / layout.STAGING_DIR) as it,
        ):
            for entry in it:
                if entry.is_file() and set(entry.name) <= _UPLOAD_ID_CHARS:
                    with contextlib.suppress(FileNotFoundError):
                        yield StagedUpload(entry.name, entry.stat().st_mtime)

    def discard_upload(self, upload_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.staging_path(upload_id).unlink()

    def url_for(self, digest: Digest, expires_in: int = 900) -> str | None:
        return None

    def local_path(self, digest: Digest) -> str | None:
        path = self.blob_path(digest)
        return str(path) if path.is_file() else None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
