"""The registry browser: repositories, tags, a manifest, its layers (and packages), referrers.

It shows what ``/v2/`` serves, to those who may pull it (the registry's own
pull check): environments' images and repositories pushed with skopeo or
oras alike. Repository names hold slashes, so they travel as query parameters.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import falcon

from condastore_core.errors import BlobNotFound, CondastoreError
from condastore_core.image.manifest import PACKAGES_ANNOTATION
from condastore_core.service import discovery, registry
from condastore_core.service.context import Context
from condastore_core.store import read_all
from condastore_registry.access import Caller, pull_check
from condastore_web.api.access import principal
from condastore_web.ui.render import render

PAGE = 100


def _may_pull(ctx: Context, req: falcon.Request, repository: str) -> None:
    if not repository or not pull_check(ctx, Caller(principal(req)))(repository):
        raise falcon.HTTPNotFound(description=f"repository {repository!r} does not exist")


def _packages(layer: dict[str, Any]) -> list[str]:
    """The packages a layer holds, as the image builder annotates it."""
    annotations = layer.get("annotations")
    value = annotations.get(PACKAGES_ANNOTATION, "") if isinstance(annotations, dict) else ""
    return [p for p in str(value).split(",") if p]


class RepositoryList:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        may_pull = pull_check(self.ctx, Caller(principal(req)))
        last = req.get_param("last")
        names = discovery.catalog(self.ctx, may_pull, PAGE + 1, last)
        more = names[PAGE - 1] if len(names) > PAGE else None
        render(req, resp, "registry.html", repositories=names[:PAGE], more=more)


class RepositoryPage:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        name = req.get_param("name") or ""
        _may_pull(self.ctx, req, name)
        try:
            tags = discovery.list_tags(self.ctx, name, PAGE + 1, req.get_param("last"))
        except CondastoreError:
            raise falcon.HTTPNotFound(description=f"repository {name!r} does not exist") from None
        rows = []
        for tag in tags[:PAGE]:
            try:
                stored = registry.find_manifest(self.ctx, name, tag)
                rows.append({"tag": tag, "digest": stored.digest, "size": stored.size})
            except CondastoreError:  # an environment's tag, made on its first pull
                rows.append({"tag": tag, "digest": None, "size": None})
        more = tags[PAGE - 1] if len(tags) > PAGE else None
        render(req, resp, "repository.html", name=name, tags=rows, more=more)


class ManifestPage:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        name = req.get_param("name") or ""
        reference = req.get_param("ref") or ""
        _may_pull(self.ctx, req, name)
        try:
            stored = registry.find_manifest(self.ctx, name, reference)
            digest = registry.parse_digest(stored.digest)
            doc: dict[str, Any] = json.loads(read_all(self.ctx.store, digest))
        except (CondastoreError, BlobNotFound, ValueError):
            raise falcon.HTTPNotFound(
                description=f"no manifest {reference!r} in {name!r} (yet: images are made "
                "on their first pull)"
            ) from None
        layers = [
            {
                "digest": layer.get("digest"),
                "size": layer.get("size"),
                "media_type": layer.get("mediaType"),
                "packages": [
                    p
                    for p in (layer.get("annotations") or {})
                    .get(PACKAGES_ANNOTATION, "")
                    .split(",")
                    if p
                ],
            }
            for layer in doc.get("layers") or []
            if isinstance(layer, dict)
        ]
        referrers: list[dict[str, Any]] = []
        with contextlib.suppress(CondastoreError):
            referrers = discovery.referrers(self.ctx, name, digest, None)
        render(
            req,
            resp,
            "manifest.html",
            name=name,
            reference=reference,
            manifest=stored,
            config=doc.get("config") if isinstance(doc.get("config"), dict) else None,
            artifact_type=doc.get("artifactType"),
            manifests=[m for m in doc.get("manifests") or [] if isinstance(m, dict)],
            layers=layers,
            total=sum(layer["size"] or 0 for layer in layers),
            referrers=referrers,
            is_tag=not reference.startswith("sha256:"),
        )
