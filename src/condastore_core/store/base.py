"""The blob store interface: content-addressed bytes, written once, never changed.

A backend implements :class:`BlobStore` completely and passes the shared
conformance suite in ``tests/core/test_store_conformance.py``. Nothing outside
:func:`condastore_core.store.open_store` knows which backend is in use.

Writing is always: open a writer, stream bytes through it (they are hashed as
they pass), then ``commit`` with the digest the caller expects. Only a commit
whose bytes hash to that digest makes the blob visible; ``cancel`` (or a crash)
leaves nothing visible behind.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable

from condastore_core.digests import DEFAULT_ALGORITHM, Digest

#: Read size used when copying streams into a store.
CHUNK_SIZE = 1024 * 1024


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: Digest
    size: int
    #: When the blob was written (seconds since the epoch), where the backend knows.
    modified: float | None = None


@dataclass(frozen=True, slots=True)
class StagedUpload:
    """An upload that was started and never committed nor canceled."""

    upload_id: str
    #: When its bytes were last written (seconds since the epoch).
    modified: float


@runtime_checkable
class BlobWriter(Protocol):
    """An upload in progress. ``upload_id`` lets a later process resume it."""

    upload_id: str

    @property
    def size(self) -> int:
        """Bytes received so far."""

    def write(self, data: bytes) -> int: ...

    def commit(self, expected: Digest | None = None) -> BlobInfo:
        """Verify against ``expected`` (when given) and make the blob visible.

        Raises :class:`~condastore_core.errors.DigestMismatch` and discards the
        upload when the bytes do not match.
        """

    def cancel(self) -> None: ...

    def close(self) -> None:
        """Stop writing for now, keeping what was written; resume later by ``upload_id``.

        When it returns, what was written is durable (fsynced, or stored as an
        object): only then may the caller record the new ``size``.
        """


@runtime_checkable
class BlobStore(Protocol):
    def stat(self, digest: Digest) -> BlobInfo:
        """Size of a blob; raises :class:`~condastore_core.errors.BlobNotFound`."""

    def exists(self, digest: Digest) -> bool: ...

    def open(self, digest: Digest, start: int = 0, end: int | None = None) -> BinaryIO:
        """A readable stream of the blob's bytes ``[start, end)``; ``end=None`` reads to the end."""

    def writer(
        self,
        algorithm: str = DEFAULT_ALGORITHM,
        upload_id: str | None = None,
        offset: int | None = None,
    ) -> BlobWriter:
        """Start an upload, or resume the one named ``upload_id``.

        ``offset`` resumes at that many bytes: the size the caller last recorded
        after a ``close``. Anything staged past it (bytes of a session that
        crashed before the caller recorded them) is dropped, so the upload
        holds exactly what its owner acknowledged. An upload holding fewer
        bytes than ``offset`` raises BlobNotFound: its recorded bytes are lost.
        """

    def delete(self, digest: Digest) -> None:
        """Remove a blob; deleting a missing blob raises BlobNotFound."""

    def iterate(self) -> Iterator[BlobInfo]:
        """Every committed blob, in no particular order."""

    def staged_uploads(self) -> Iterator[StagedUpload]:
        """Every upload in the staging area (a live one, or one its writer abandoned)."""

    def discard_upload(self, upload_id: str) -> None:
        """Drop an upload's staged bytes; an unknown upload is not an error."""

    def url_for(self, digest: Digest, expires_in: int = 900) -> str | None:
        """A URL a client may fetch the blob from directly (presigned), or None."""

    def local_path(self, digest: Digest) -> str | None:
        """A filesystem path for zero-copy serving, or None when the blob is not on local disk."""


def put(
    store: BlobStore,
    data: bytes | BinaryIO,
    expected: Digest | None = None,
    algorithm: str | None = None,
) -> BlobInfo:
    """Stream ``data`` into ``store`` and commit it; the one way callers write a whole blob."""
    stream: BinaryIO = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    algo = algorithm or (expected.algorithm if expected else DEFAULT_ALGORITHM)
    writer = store.writer(algo)
    try:
        while chunk := stream.read(CHUNK_SIZE):
            writer.write(chunk)
        return writer.commit(expected)
    except BaseException:
        writer.cancel()
        raise


def read_all(store: BlobStore, digest: Digest) -> bytes:
    with store.open(digest) as f:
        return f.read()
