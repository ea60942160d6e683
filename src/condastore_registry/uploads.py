"""Blob uploads: monolithic (POST+PUT, or one POST with the digest), chunked (PATCH), mounts."""

from __future__ import annotations

import re

import falcon

from condastore_core.service import registry as reg
from condastore_core.service import uploads
from condastore_core.service.context import Context
from condastore_core.service.registry import RegistryError
from condastore_registry.access import pull_check
from condastore_registry.request_body import body_chunks

_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/\d+|/\*)?$")


def _upload_location(resp: falcon.Response, name: str, upload_id: str, size: int) -> None:
    resp.location = f"/v2/{name}/blobs/uploads/{upload_id}"
    resp.set_header("Docker-Upload-UUID", upload_id)
    resp.set_header("Range", f"0-{max(size - 1, 0)}")
    resp.set_header("OCI-Chunk-Min-Length", "0")


def _created(resp: falcon.Response, name: str, digest: str) -> None:
    resp.status = falcon.HTTP_201
    resp.location = f"/v2/{name}/blobs/{digest}"
    resp.set_header("Docker-Content-Digest", digest)


def start_upload(ctx: Context, req: falcon.Request, resp: falcon.Response, name: str) -> None:
    mount = req.get_param("mount")
    if mount:  # only from repositories the caller may pull; else an ordinary upload
        mounted = reg.parse_digest(mount)
        source = req.get_param("from")
        if source is not None:
            reg.check_name(source)
        may_pull = pull_check(ctx, req.context.registry_caller)
        if reg.mount_blob(ctx, name, mounted, source, may_pull):
            _created(resp, name, str(mounted))
            return
    digest = req.get_param("digest")
    parsed = reg.parse_digest(digest) if digest is not None else None  # before any upload
    upload_id = uploads.start_upload(ctx, name)
    if parsed is not None:  # the whole blob in this one POST
        uploads.finish_upload(ctx, name, upload_id, parsed, body_chunks(req))
        _created(resp, name, str(parsed))
        return
    resp.status = falcon.HTTP_202
    _upload_location(resp, name, upload_id, 0)


def upload_status(
    ctx: Context, req: falcon.Request, resp: falcon.Response, name: str, upload_id: str
) -> None:
    size = uploads.upload_size(ctx, name, upload_id)
    resp.status = falcon.HTTP_204
    _upload_location(resp, name, upload_id, size)


def _chunk_start(req: falcon.Request) -> int | None:
    """Where a chunk's ``Content-Range`` says it starts; None without the header."""
    header = req.get_header("Content-Range")
    if not header:
        return None
    match = _CONTENT_RANGE.match(header.strip())
    if not match:
        raise RegistryError("BLOB_UPLOAD_INVALID", f"malformed Content-Range {header!r}")
    start, end = int(match.group(1)), int(match.group(2))
    if end < start:
        raise RegistryError("BLOB_UPLOAD_INVALID", f"backward Content-Range {header!r}")
    if req.content_length is not None and end - start + 1 != req.content_length:
        raise RegistryError("BLOB_UPLOAD_INVALID", "Content-Range and Content-Length differ")
    return start


def patch_upload(
    ctx: Context, req: falcon.Request, resp: falcon.Response, name: str, upload_id: str
) -> None:
    start = _chunk_start(req)
    size = uploads.append_upload(ctx, name, upload_id, body_chunks(req), start)
    resp.status = falcon.HTTP_202
    _upload_location(resp, name, upload_id, size)


def finish_upload(
    ctx: Context, req: falcon.Request, resp: falcon.Response, name: str, upload_id: str
) -> None:
    digest = req.get_param("digest")
    if digest is None:
        raise RegistryError("DIGEST_INVALID", "a digest query parameter is required")
    parsed = reg.parse_digest(digest)
    start = _chunk_start(req) if req.content_length else None  # a last chunk, if any
    uploads.finish_upload(ctx, name, upload_id, parsed, body_chunks(req), start)
    _created(resp, name, str(parsed))


def cancel_upload(
    ctx: Context, req: falcon.Request, resp: falcon.Response, name: str, upload_id: str
) -> None:
    uploads.cancel_upload(ctx, name, upload_id)
    resp.status = falcon.HTTP_204
