"""Manifests by tag or digest: GET/HEAD return the exact pushed bytes; PUT checks references."""

from __future__ import annotations

import falcon

from condastore_core.digests import Digest
from condastore_core.service import images, tenancy
from condastore_core.service import registry as reg
from condastore_core.service.context import Context
from condastore_core.service.registry import MAX_MANIFEST_BYTES, RegistryError
from condastore_core.store import read_all


def get_manifest(
    ctx: Context, req: falcon.Request, resp: falcon.Response, name: str, reference: str
) -> None:
    images.prepare(ctx, name, reference)  # environment images are made on first request
    found = reg.find_manifest(ctx, name, reference)
    resp.content_type = found.media_type
    resp.set_header("Docker-Content-Digest", found.digest)
    resp.content_length = found.size
    if req.method == "GET":
        resp.data = read_all(ctx.store, Digest.parse(found.digest))


def put_manifest(
    ctx: Context, req: falcon.Request, resp: falcon.Response, name: str, reference: str
) -> None:
    tenancy.check_manifest_write(ctx, name, reference)
    if req.content_length is not None and req.content_length > MAX_MANIFEST_BYTES:
        raise RegistryError("SIZE_INVALID", f"manifests are limited to {MAX_MANIFEST_BYTES} bytes")
    body = req.bounded_stream.read(MAX_MANIFEST_BYTES + 1)
    if len(body) > MAX_MANIFEST_BYTES:
        raise RegistryError("SIZE_INVALID", f"manifests are limited to {MAX_MANIFEST_BYTES} bytes")
    stored = reg.put_manifest(ctx, name, reference, body, req.content_type)
    resp.status = falcon.HTTP_201
    resp.location = f"/v2/{name}/manifests/{stored.digest}"
    resp.set_header("Docker-Content-Digest", stored.digest)
    subject = reg.manifest_subject(body)
    if subject:
        resp.set_header("OCI-Subject", subject)


def delete_manifest(
    ctx: Context, req: falcon.Request, resp: falcon.Response, name: str, reference: str
) -> None:
    tenancy.check_manifest_delete(ctx, name, reference)
    reg.delete_manifest(ctx, name, reference)
    resp.status = falcon.HTTP_202
