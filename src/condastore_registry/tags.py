"""Content discovery: the tag list (sorted, ``n``/``last`` with ``Link``) and referrers."""

from __future__ import annotations

import json
import urllib.parse

import falcon

from condastore_core.image.manifest import INDEX
from condastore_core.service import registry as reg
from condastore_core.service.context import Context
from condastore_core.service.registry import RegistryError


def list_tags(ctx: Context, req: falcon.Request, resp: falcon.Response, name: str) -> None:
    n = req.get_param_as_int("n", min_value=0)
    last = req.get_param("last")
    if not reg.repository_exists(ctx, name):
        raise RegistryError("NAME_UNKNOWN", f"repository {name} is not known")
    tags = reg.list_tags(ctx, name, n, last) if n != 0 else []
    resp.media = {"name": name, "tags": tags}
    if n and len(tags) == n:
        query = urllib.parse.urlencode({"n": n, "last": tags[-1]})
        resp.set_header("Link", f'</v2/{name}/tags/list?{query}>; rel="next"')


def list_referrers(
    ctx: Context, req: falcon.Request, resp: falcon.Response, name: str, digest: str
) -> None:
    parsed = reg.parse_digest(digest)
    artifact_type = req.get_param("artifactType")
    resp.content_type = INDEX
    if artifact_type:
        resp.set_header("OCI-Filters-Applied", "artifactType")
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": reg.referrers(ctx, name, parsed, artifact_type),
    }
    resp.data = json.dumps(index).encode()
