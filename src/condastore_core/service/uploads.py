"""Blob uploads of the registry: sessions whose bytes are staged until they become a blob.

An upload is a row (its repository, and the size acknowledged to the client)
and a staged upload in the blob store under the same id. The row's size is
the truth: it is recorded only after the store made those bytes durable
(``BlobWriter.close``), and every writer resumes at it, dropping whatever a
request that died half-way (a killed process, a dropped connection) staged
past it. So a client that asks where an upload stands after a crash is told
the bytes that survive, and a resumed upload completes.

Uploads nobody finishes are purged by garbage collection after
``upload_max_age_hours`` (see :func:`purge_abandoned`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, select, update

from condastore_core.db.models import RegistryUpload, as_utc, utcnow
from condastore_core.digests import Digest
from condastore_core.errors import BlobNotFound, CondastoreError
from condastore_core.service.context import Context
from condastore_core.service.registry import RegistryError, link_in
from condastore_core.store import BlobWriter

_UPLOAD_ID = re.compile(r"[a-f0-9]{32}")
_UPLOAD = select(RegistryUpload.repository, RegistryUpload.size).where(
    RegistryUpload.id == bindparam("id")
)
_UPLOAD_ENDS = delete(RegistryUpload).where(RegistryUpload.id == bindparam("id"))


def start_upload(ctx: Context, repository: str) -> str:
    writer = ctx.store.writer()  # the store names the upload; its bytes are staged there
    writer.close()
    upload_id = writer.upload_id
    with ctx.engine.begin() as conn:
        conn.execute(insert(RegistryUpload), {"id": upload_id, "repository": repository, "size": 0})
    return upload_id


def upload_size(ctx: Context, repository: str, upload_id: str) -> int:
    """The bytes of an upload acknowledged so far; BLOB_UPLOAD_UNKNOWN for another repository's."""
    row = ctx.first(_UPLOAD, {"id": upload_id}) if _UPLOAD_ID.fullmatch(upload_id) else None
    if row is None or row.repository != repository:
        raise RegistryError("BLOB_UPLOAD_UNKNOWN", f"no upload {upload_id!r} in {repository}")
    return row.size


def _check_start(start: int | None, size: int) -> None:
    """A chunk (Content-Range) must start where the upload ends: 416 otherwise, upload kept."""
    if start is not None and start != size:
        raise RegistryError(
            "BLOB_UPLOAD_INVALID",
            f"chunk starts at {start} but the upload holds {size} bytes",
            detail={"range_not_satisfiable": True, "size": size},
        )


def _resume(ctx: Context, upload_id: str, size: int, algorithm: str = "sha256") -> BlobWriter:
    try:
        return ctx.store.writer(algorithm, upload_id=upload_id, offset=size)
    except BlobNotFound as exc:  # its staged bytes are gone: the upload cannot complete
        _end_upload(ctx, upload_id)
        raise RegistryError("BLOB_UPLOAD_UNKNOWN", exc.message) from None


def append_upload(
    ctx: Context,
    repository: str,
    upload_id: str,
    chunks: Iterable[bytes],
    start: int | None,
) -> int:
    """Append a chunk; ``start`` (from Content-Range) must be where the upload ends."""
    size = upload_size(ctx, repository, upload_id)
    _check_start(start, size)
    writer = _resume(ctx, upload_id, size)
    try:
        for chunk in chunks:
            writer.write(chunk)
    finally:
        writer.close()  # durable from here on; only now is the new size recorded
    with ctx.engine.begin() as conn:
        conn.execute(
            update(RegistryUpload).where(RegistryUpload.id == upload_id).values(size=writer.size)
        )
    return writer.size


def finish_upload(
    ctx: Context,
    repository: str,
    upload_id: str,
    digest: Digest,
    last_chunk: Iterable[bytes] = (),
    start: int | None = None,
) -> int:
    """Append ``last_chunk``, verify, commit under ``digest`` and link; the upload ends.

    A last chunk that does not start where the upload ends is refused before
    anything is written, and the upload stays (the client may retry it).
    """
    size = upload_size(ctx, repository, upload_id)
    _check_start(start, size)
    writer = _resume(ctx, upload_id, size, digest.algorithm)
    try:
        for chunk in last_chunk:
            writer.write(chunk)
        info = writer.commit(digest)  # a mismatch discards the staged bytes
    except BaseException as exc:
        _end_upload(ctx, upload_id)
        if isinstance(exc, CondastoreError):
            raise RegistryError("DIGEST_INVALID", exc.message) from None
        raise
    with ctx.engine.begin() as conn:  # the upload ends and the blob appears together
        conn.execute(_UPLOAD_ENDS, {"id": upload_id})
        link_in(conn, repository, info.digest, info.size)
    return info.size


def _end_upload(ctx: Context, upload_id: str) -> None:
    with ctx.engine.begin() as conn:
        conn.execute(_UPLOAD_ENDS, {"id": upload_id})


def cancel_upload(ctx: Context, repository: str, upload_id: str) -> None:
    upload_size(ctx, repository, upload_id)
    _discard_staged(ctx, upload_id)
    _end_upload(ctx, upload_id)


def _discard_staged(ctx: Context, upload_id: str) -> None:
    with contextlib.suppress(BlobNotFound):  # nothing staged any more: just as good
        ctx.store.writer(upload_id=upload_id).cancel()


@dataclass(frozen=True)
class AbandonedUpload:
    upload_id: str
    repository: str
    size: int
    started_at: dt.datetime


def purge_abandoned(
    ctx: Context, max_age: dt.timedelta, *, dry_run: bool = False
) -> list[AbandonedUpload]:
    """End uploads started longer than ``max_age`` ago, with their staged bytes.

    Like the reference registry's upload purging, the age counts from the
    start: a user who may push cannot keep staged bytes for ever by sending a
    byte now and then.
    """
    cutoff = utcnow() - max_age
    with ctx.sessions() as session:
        rows = session.execute(
            select(
                RegistryUpload.id,
                RegistryUpload.repository,
                RegistryUpload.size,
                RegistryUpload.started_at,
            )
        ).all()
    abandoned = [
        AbandonedUpload(row.id, row.repository, row.size, as_utc(row.started_at))
        for row in rows
        if as_utc(row.started_at) < cutoff
    ]
    if not dry_run:
        for upload in abandoned:
            _end_upload(ctx, upload.upload_id)  # first: a late PATCH finds no upload
            _discard_staged(ctx, upload.upload_id)
    return abandoned
