"""The blob store on S3 (or any S3-compatible server), with boto3.

Layout under the configured prefix (see :mod:`condastore_core.layout`)::

    <prefix>/blobs/<algorithm>/<hex>           a verified blob
    <prefix>/_staging/<upload_id>/<n>          the n-th piece of an upload in progress
    <prefix>/_staging/<upload_id>/whole        the pieces joined, while being verified

An upload is a series of pieces, one per writing session, so any process can
resume it by id (a registry's PATCHes may land on different workers). Commit
streams the pieces once, hashing them while a multipart upload joins them;
only when the digest matches is the result copied (server side) under its
digest key. A blob is therefore never visible under a digest it does not have.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from condastore_core import layout
from condastore_core.digests import ALGORITHMS, DEFAULT_ALGORITHM, Digest, new_hasher
from condastore_core.errors import BlobNotFound, DigestMismatch, InvalidDigest
from condastore_core.store.base import BlobInfo, StagedUpload

PART_SIZE = 8 * 1024 * 1024  # above S3's 5 MiB minimum part size
_SPOOL_IN_MEMORY = 8 * 1024 * 1024
_UPLOAD_ID_CHARS = set("0123456789abcdef")


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


class S3BlobWriter:
    def __init__(
        self, store: S3BlobStore, algorithm: str, upload_id: str | None, offset: int | None
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise InvalidDigest(f"unsupported digest algorithm: {algorithm!r}")
        self._store = store
        self._algorithm = algorithm
        self._spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
        self._written = 0
        if upload_id is None:
            self.upload_id = uuid.uuid4().hex
            self._pieces: list[tuple[str, int]] = []
        else:
            self.upload_id = store.check_upload_id(upload_id)
            self._pieces = store.pieces(upload_id)
            if not self._pieces and not store.upload_started(upload_id):
                raise BlobNotFound(f"upload {upload_id} is unknown")
            if offset is not None:
                self._resume_at(offset)
        if upload_id is None:
            store.mark_started(self.upload_id)

    def _resume_at(self, offset: int) -> None:
        """Keep the pieces that make up ``offset`` bytes; drop later ones (never recorded)."""
        kept, total = 0, 0
        while kept < len(self._pieces) and total < offset:
            total += self._pieces[kept][1]
            kept += 1
        if total != offset:  # pieces are whole sessions: a recorded size ends on one
            raise BlobNotFound(
                f"upload {self.upload_id} holds {total} bytes where {offset} were recorded"
            )
        self._store.delete_keys([key for key, _ in self._pieces[kept:]])
        del self._pieces[kept:]

    @property
    def size(self) -> int:
        return sum(size for _, size in self._pieces) + self._written

    def write(self, data: bytes) -> int:
        self._spool.write(data)
        self._written += len(data)
        return len(data)

    def close(self) -> None:
        """Store what this session wrote as the upload's next piece."""
        if self._written:
            self._spool.seek(0)
            key = self._store.piece_key(self.upload_id, len(self._pieces))
            self._store.client.upload_fileobj(self._spool, self._store.bucket, key)
            self._pieces.append((key, self._written))
        self._spool.close()
        self._spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
        self._written = 0

    def commit(self, expected: Digest | None = None) -> BlobInfo:
        self.close()
        store = self._store
        whole = store.whole_key(self.upload_id)
        hasher = new_hasher(self._algorithm)
        size = store.join(self._pieces, whole, hasher)
        actual = Digest(self._algorithm, hasher.hexdigest())
        if expected is not None and actual != expected:
            store.discard_upload(self.upload_id)
            raise DigestMismatch(f"content hashes to {actual}, not {expected}")
        if not store.exists(actual):
            store.client.copy(
                {"Bucket": store.bucket, "Key": whole}, store.bucket, store.blob_key(actual)
            )
        store.discard_upload(self.upload_id)
        return BlobInfo(actual, size)

    def cancel(self) -> None:
        self._spool.close()
        self._store.discard_upload(self.upload_id)


class S3BlobStore:
    """A :class:`~condastore_core.store.base.BlobStore` in an S3 bucket, under a key prefix."""

    def __init__(
        self, bucket: str, prefix: str = "", *, presign: bool = False, **client_options: Any
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.presign = presign
        options = {k: v for k, v in client_options.items() if v is not None}
        self.client = boto3.client("s3", config=Config(s3={"addressing_style": "path"}), **options)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3BlobStore:
        """``s3://bucket/prefix?endpoint_url=http://...&region=...&presign=1``."""
        parsed = urlparse(url)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        client = {
            "endpoint_url": query.get("endpoint_url") or options.get("endpoint_url"),
            "region_name": query.get("region") or options.get("region_name"),
            "aws_access_key_id": options.get("aws_access_key_id"),
            "aws_secret_access_key": options.get("aws_secret_access_key"),
        }
        presign = query.get("presign", "").lower() in ("1", "true", "yes")
        return cls(parsed.netloc, parsed.path, presign=presign, **client)

    # -- keys ----------------------------------------------------------------------

    def blob_key(self, digest: Digest) -> str:
        return layout.blob_key(self.prefix, digest.algorithm, digest.hex)

    def check_upload_id(self, upload_id: str) -> str:
        if not upload_id or not set(upload_id) <= _UPLOAD_ID_CHARS:
            raise InvalidDigest(f"malformed upload id: {upload_id!r}")
        return upload_id

    def piece_key(self, upload_id: str, n: int) -> str:
        return f"{layout.staging_key(self.prefix, upload_id)}/{n:08d}"

    def whole_key(self, upload_id: str) -> str:
        return f"{layout.staging_key(self.prefix, upload_id)}/whole"

    def _marker_key(self, upload_id: str) -> str:
        return f"{layout.staging_key(self.prefix, upload_id)}/started"

    # -- uploads -------------------------------------------------------------------

    def mark_started(self, upload_id: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._marker_key(upload_id), Body=b"")

    def upload_started(self, upload_id: str) -> bool:
        return self._head(self._marker_key(upload_id)) is not None

    def pieces(self, upload_id: str) -> list[tuple[str, int]]:
        base = layout.staging_key(self.prefix, upload_id) + "/"
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base
        ):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(base) :]
                if name.isdigit():
                    found.append((obj["Key"], obj["Size"]))
        return sorted(found)

    def join(self, pieces: list[tuple[str, int]], target: str, hasher: Any) -> int:
        """Stream ``pieces`` into one object at ``target``, feeding ``hasher``; returns size."""
        mpu = self.client.create_multipart_upload(Bucket=self.bucket, Key=target)
        parts: list[dict[str, Any]] = []
        buffer, size = bytearray(), 0
        try:
            for key, _ in pieces:
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
                for chunk in body.iter_chunks(1024 * 1024):
                    hasher.update(chunk)
                    buffer += chunk
                    size += len(chunk)
                    if len(buffer) >= PART_SIZE:
                        parts.append(self._upload_part(mpu["UploadId"], target, parts, buffer))
                        buffer = bytearray()
            if buffer or not parts:
                parts.append(self._upload_part(mpu["UploadId"], target, parts, buffer))
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=target,
                UploadId=mpu["UploadId"],
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=target, UploadId=mpu["UploadId"]
            )
            raise
        return size

    def _upload_part(self, upload_id: str, key: str, parts: list, data: bytearray) -> dict:
        number = len(parts) + 1
        answer = self.client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=bytes(data)
        )
        return {"ETag": answer["ETag"], "PartNumber": number}

    def discard_upload(self, upload_id: str) -> None:
        base = layout.staging_key(self.prefix, self.check_upload_id(upload_id)) + "/"
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base
        ):
            self.delete_keys([obj["Key"] for obj in page.get("Contents", [])])

    def delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # S3 deletes at most 1000 keys per call
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch})

    # -- the BlobStore protocol --------------------------------------------------------

    def _head(self, key: str) -> dict | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    def stat(self, digest: Digest) -> BlobInfo:
        head = self._head(self.blob_key(digest))
        if head is None:
            raise BlobNotFound(f"blob {digest} not found")
        return BlobInfo(digest, head["ContentLength"])

    def exists(self, digest: Digest) -> bool:
        return self._head(self.blob_key(digest)) is not None

    def open(self, digest: Digest, start: int = 0, end: int | None = None) -> BinaryIO:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.blob_key(digest)}
        if start or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            return self.client.get_object(**args)["Body"]
        except ClientError as exc:
            if _missing(exc):
                raise BlobNotFound(f"blob {digest} not found") from None
            raise

    def writer(
        self,
        algorithm: str = DEFAULT_ALGORITHM,
        upload_id: str | None = None,
        offset: int | None = None,
    ) -> S3BlobWriter:
        return S3BlobWriter(self, algorithm, upload_id, offset)

    def delete(self, digest: Digest) -> None:
        if not self.exists(digest):
            raise BlobNotFound(f"blob {digest} not found")
        self.client.delete_object(Bucket=self.bucket, Key=self.blob_key(digest))

    def staged_uploads(self) -> Iterator[StagedUpload]:
        base = layout.staging_key(self.prefix, "")
        latest: dict[str, float] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base
        ):
            for obj in page.get("Contents", []):
                upload_id = obj["Key"][len(base) :].partition("/")[0]
                when = obj["LastModified"].timestamp()
                latest[upload_id] = max(when, latest.get(upload_id, when))
        for upload_id, when in sorted(latest.items()):
            yield StagedUpload(upload_id, when)

    def iterate(self) -> Iterator[BlobInfo]:
        base = layout.blob_key_prefix(self.prefix)
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base
        ):
            for obj in page.get("Contents", []):
                algorithm, _, hexd = obj["Key"][len(base) :].partition("/")
                with contextlib.suppress(InvalidDigest):
                    yield BlobInfo(
                        Digest.parse(f"{algorithm}:{hexd}"),
                        obj["Size"],
                        obj["LastModified"].timestamp(),
                    )

    def url_for(self, digest: Digest, expires_in: int = 900) -> str | None:
        if not self.presign:
            return None
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.blob_key(digest)},
            ExpiresIn=expires_in,
        )

    def local_path(self, digest: Digest) -> str | None:
        return None
