"""Content discovery: the tag list and the catalog (sorted, ``n``/``last`` with ``Link``),
and referrers."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable

import falcon

from condastore_core.image.manifest import INDEX
from condastore_core.service import discovery
from condastore_core.service import registry as reg
from condastore_core.service.context import Context

#: Catalog pages: the size without ``n``, and the most one page holds.
CATALOG_PAGE = 100
MAX_CATALOG_PAGE = 1000


def _next_link(resp: falcon.Response, path: str, n: int, items: list[str]) -> None:
    if n and len(items) == n:
        query = urllib.parse.urlencode({"n": n, "last": items[-1]})
        resp.set_header("Link", f'<{path}?{query}>; rel="next"')


def list_tags(ctx: Context, req: falcon.Request, resp: falcon.Response, name: str) -> None:
    n = req.get_param_as_int("n", min_value=0)
    tags = discovery.list_tags(ctx, name, n, req.get_param("last"))
    resp.media = {"name": name, "tags": tags}
    _next_link(resp, f"/v2/{name}/tags/list", n or 0, tags)


def list_catalog(
    ctx: Context, req: falcon.Request, resp: falcon.Response, may_pull: Callable[[str], bool]
) -> None:
    n = req.get_param_as_int("n", min_value=0, default=CATALOG_PAGE)
    n = min(n, MAX_CATALOG_PAGE)  # a larger n gets a full page and a Link to the rest
    repositories = discovery.catalog(ctx, may_pull, n, req.get_param("last"))
    resp.media = {"repositories": repositories}
    _next_link(resp, "/v2/_catalog", n, repositories)


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
        "manifests": discovery.referrers(ctx, name, parsed, artifact_type),
    }
    resp.data = json.dumps(index).encode()
