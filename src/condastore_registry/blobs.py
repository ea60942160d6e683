"""Blobs: GET/HEAD (with Range), DELETE. Local blobs are streamed, never read into memory."""

from __future__ import annotations

import re

import falcon

from condastore_core.service import registry as reg
from condastore_core.service.context import Context

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def get_blob(
    ctx: Context, req: falcon.Request, resp: falcon.Response, name: str, digest: str
) -> None:
    parsed = reg.parse_digest(digest)
    size = reg.blob_size(ctx, name, parsed)
    resp.set_header("Docker-Content-Digest", str(parsed))
    resp.set_header("Accept-Ranges", "bytes")
    resp.content_type = "application/octet-stream"
    url = ctx.store.url_for(parsed)
    if url is not None and req.method == "GET":
        resp.status = falcon.HTTP_307
        resp.location = url
        return
    start, end = 0, size
    header = req.get_header("Range")
    if header:
        match = _RANGE.match(header.strip())
        if not match or (not match.group(1) and not match.group(2)):
            raise falcon.HTTPRangeNotSatisfiable(size)
        if match.group(1):
            start = int(match.group(1))
            end = min(int(match.group(2)) + 1, size) if match.group(2) else size
        else:  # the last N bytes
            start = max(size - int(match.group(2)), 0)
        if start >= size or start >= end:
            raise falcon.HTTPRangeNotSatisfiable(size)
        resp.status = falcon.HTTP_206
        resp.set_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
    resp.content_length = end - start
    if req.method == "GET":  # a whole local file goes out by sendfile / wsgi.file_wrapper
        resp.stream = ctx.store.open(parsed, start, None if end == size else end)


def delete_blob(
    ctx: Context, req: falcon.Request, resp: falcon.Response, name: str, digest: str
) -> None:
    reg.unlink_blob(ctx, name, reg.parse_digest(digest))
    resp.status = falcon.HTTP_202
