"""Blob uploads: monolithic (POST+PUT, or one POST with the digest), chunked (PATCH), mounts."""

from __future__ import annotations

import re
from collections.abc import Iterator

import falcon

from condastore_core.service import registry as reg
from condastore_core.service.context import Context
from condastore_core.service.registry import RegistryError
from condastore_registry.access import pull_check

CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/\d+|/\*)?$")


def body_chunks(req: falcon.Request) -> Iterator[bytes]:
    stream = req.bounded_stream
    while chunk := stream.read(CHUNK):
        yield chunk


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
    upload_id = reg.start_upload(ctx, name)
    digest = req.get_param("digest")
    if digest is not None:  # the whole blob in this one POST
        parsed = reg.parse_digest(digest)
        reg.finish_upload(ctx, name, upload_id, parsed, body_chunks(req))
        _created(resp, name, str(parsed))
        return
    resp.status = falcon.HTTP_202
    _upload_location(resp, name, upload_id, 0)


def upload_status(
    ctx: Context, req: falcon.Request, resp: falcon.Response, name: str, upload_id: str
) -> None:
    size = reg.upload_size(ctx, name, upload_id)
    resp.status = falcon.HTTP_204
    _upload_location(resp, name, upload_id, size)


def patch_upload(
    ctx: Context, req: falcon.Request, resp: falcon.Response, name: str, upload_id: str
) -> None:
    start = None
    header = req.get_header("Content-Range")
    if header:
        match = _CONTENT_RANGE.match(header.strip())
        if not match:
            raise RegistryError("BLOB_UPLOAD_INVALID", f"malformed Content-Range {header!r}")
        start = int(match.group(1))
        if req.content_length is not None and int(match.group(2)) - start + 1 != req.content_length:
            raise RegistryError("BLOB_UPLOAD_INVALID", "Content-Range and Content-Length differ")
    size = reg.append_upload(ctx, name, upload_id, body_chunks(req), start)
    resp.status = falcon.HTTP_202
    _upload_location(resp, name, upload_id, size)


def finish_upload(
    ctx: Context, req: falcon.Request, resp: falcon.Response, name: str, upload_id: str
) -> None:
    digest = req.get_param("digest")
    if digest is None:
        raise RegistryError("DIGEST_INVALID", "a digest query parameter is required")
    parsed = reg.parse_digest(digest)
    reg.finish_upload(ctx, name, upload_id, parsed, body_chunks(req))  # with a last chunk, if any
    _created(resp, name, str(parsed))


def cancel_upload(
    ctx: Context, req: falcon.Request, resp: falcon.Response, name: str, upload_id: str
) -> None:
    reg.cancel_upload(ctx, name, upload_id)
    resp.status = falcon.HTTP_204
