"""``/api/v1`` itself (version), the solve preview and package search."""

from __future__ import annotations

from importlib.metadata import version

import falcon

from condastore_core.errors import InvalidRequest
from condastore_core.lock import to_conda_lock_yaml
from condastore_core.service.context import Context
from condastore_core.service.policies import namespace_gate
from condastore_core.solve import native_platform
from condastore_core.spec import KNOWN_PLATFORMS, parse_spec
from condastore_web.api.access import require_admin, require_login
from condastore_web.api.bodies import ChannelRefresh, SolveRequest, read_body
from condastore_web.api.common import int_param


class Version:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"name": "condastore", "version": version("condastore"), "api": "v1"}


class SolvePreview:
    """``POST /solve``: the lock a spec would get, without building anything."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        require_login(req)
        body = read_body(req, SolveRequest)
        spec = parse_spec(body.specification)
        gate = namespace_gate(self.ctx, body.namespace, spec.name)
        lock = self.ctx.solve(spec, body.platforms, gate=gate)
        resp.media = {
            "spec_hash": spec.spec_hash,
            "lock_hash": lock.lock_hash,
            "build_key": lock.build_key,
            "packages": {
                platform: [
                    {"name": p.name, "version": p.version, "build": p.build, "url": p.url}
                    for p in lock.records(platform)
                ]
                for platform in lock.platforms
            },
            "lockfile": to_conda_lock_yaml(lock, spec_hash=spec.spec_hash),
        }


class PackageSearch:
    """``GET /packages?q=ssl[&channel=...][&platform=...][&namespace=...]``.

    Across the configured channels by default; named channels pass the channel
    gate, narrowed by the namespace's policy.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        require_login(req)
        query = req.get_param("q", required=True).strip()
        if not query:
            raise InvalidRequest("query parameter 'q' must not be empty")
        channels = [c for c in req.get_param_as_list("channel") or [] if c.strip()]
        platforms = [p for p in req.get_param_as_list("platform") or [] if p.strip()]
        channels = channels or list(self.ctx.settings.channels)
        platforms = platforms or [native_platform()]
        unknown = [p for p in platforms if p not in KNOWN_PLATFORMS]
        if unknown:
            raise InvalidRequest(f"unknown platform {unknown[0]!r}")
        limit = max(1, min(int_param(req, "limit", 50) or 50, 200))
        gate = namespace_gate(self.ctx, req.get_param("namespace") or "default")
        found = self.ctx.search_packages(query, channels, platforms, limit, gate=gate)
        resp.media = {
            "items": [
                {
                    "name": p.name,
                    "latest": p.latest,
                    "versions": list(p.versions),
                    "channels": list(p.channels),
                }
                for p in found
            ]
        }


class ChannelsRefresh:
    """``POST /channels/refresh``: every process fetches the channels afresh at its next solve.

    The body (optional) names them, ``{"channels": ["conda-forge"]}``; by default
    the configured ones; each passes the channel gate. Administrators only, as
    ``condastore channels refresh``.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        require_admin(req)
        body = read_body(req, ChannelRefresh) if req.content_length else ChannelRefresh()
        names = [c.strip() for c in body.channels if c.strip()] or self.ctx.settings.channels
        gate = self.ctx.solver.gate
        urls = self.ctx.solver.refresh([gate.check_channel(c) for c in names])
        resp.media = {"channels": urls}


class WatchedDirectories:
    """``GET /watched``: each watched spec directory and the files it could not use."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        require_admin(req)
        resp.media = {"items": [watched_directory(w) for w in self.ctx.watchers]}


def watched_directory(watcher) -> dict:  # type: ignore[no-untyped-def]
    """A watched directory as the API and the admin page show it."""
    report = watcher.last_report
    return {
        "directory": str(watcher.directory),
        "namespace": watcher.namespace,
        "environments": sorted((report.submitted + report.unchanged) if report else []),
        "errors": dict(report.errors) if report else {},
    }
