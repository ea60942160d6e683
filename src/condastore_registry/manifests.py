"""Manifests by tag or digest: GET/HEAD return the exact pushed bytes; PUT checks references."""

from __future__ import annotations

import falcon

from condastore_core.digests import Digest
from condastore_core.service import images, tenancy
from condastore_core.service import registry as reg
from condastore_core.service.context import Context
from condastore_core.service.registry import MAX_MANIFEST_BYTES, RegistryError
from condastore_core.store import read_all
from condastore_registry.request_body import BodyTooLarge, read_body


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
    try:
        body = read_body(req, MAX_MANIFEST_BYTES)
    except BodyTooLarge:
        raise RegistryError(
            "SIZE_INVALID", f"manifests are limited to {MAX_MANIFEST_BYTES} bytes"
        ) from None
    tags = req.get_param_as_list("tag") or []  # several tags in one push (spec 1.1.1)
    stored = reg.put_manifest(ctx, name, reference, body, req.content_type, tags)
    resp.status = falcon.HTTP_201
    resp.location = f"/v2/{name}/manifests/{stored.digest}"
    resp.set_header("Docker-Content-Digest", stored.digest)
    if tags:
        for tag in stored.tags:
            _add_header_line(resp, "OCI-Tag", tag)
    subject = reg.manifest_subject(body)
    if subject:
        resp.set_header("OCI-Subject", subject)


def delete_manifest(
    ctx: Context, req: falcon.Request, resp: falcon.Response, name: str, reference: str
) -> None:
    tenancy.check_manifest_delete(ctx, name, reference)
    reg.delete_manifest(ctx, name, reference)
    resp.status = falcon.HTTP_202


def _add_header_line(resp: falcon.Response, name: str, value: str) -> None:
    """One header line per value, as the spec asks for ``OCI-Tag``.

    Falcon joins repeated headers into one comma-separated line, except
    Set-Cookie, whose lines it keeps apart in ``_extra_headers``; we use that.
    """
    extra = getattr(resp, "_extra_headers", ())
    if extra is None or isinstance(extra, list):
        resp._extra_headers = [*(extra or []), (name, value)]
    else:  # a falcon that no longer has it: one list-valued line is equivalent (RFC 9110)
        resp.append_header(name, value)
