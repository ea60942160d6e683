"""``/api/v1/builds``: list with filters, show, log, cancel, rebuild, artifacts."""

from __future__ import annotations

import falcon

from condastore_core.auth.rbac import Action
from condastore_core.db.models import Build
from condastore_core.service import builds
from condastore_core.service.context import Context
from condastore_core.service.logs import read_log
from condastore_web.api import serialize
from condastore_web.api.access import principal, require, visibility
from condastore_web.api.common import int_param, send_artifact


def guard(ctx: Context, req: falcon.Request, action: Action, build_id: int) -> Build:
    """The build, if the caller may ``action`` its environment; unreadable ones do not exist."""
    build = builds.get_build(ctx, build_id)
    env = build.environment
    require(
        ctx, req, action, env.namespace.name, env.name, hidden=f"build {build_id} does not exist"
    )
    return build


class BuildCollection:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = builds.list_builds(
            self.ctx,
            status=req.get_param("status"),
            namespace=req.get_param("namespace"),
            environment=req.get_param("environment"),
            package=req.get_param("package"),
            limit=int_param(req, "limit"),
            cursor=req.get_param("cursor"),
            visible=visibility(self.ctx, req),
        )
        resp.media = serialize.page(page, serialize.build)


class BuildItem:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, build_id: int) -> None:
        resp.media = serialize.build(guard(self.ctx, req, Action.READ, build_id))


class BuildPackages:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, build_id: int) -> None:
        guard(self.ctx, req, Action.READ, build_id)
        resp.media = {
            "items": [
                {
                    "platform": p.platform,
                    "name": p.name,
                    "version": p.version,
                    "build": p.build,
                    "channel": p.channel,
                    "sha256": p.sha256,
                }
                for p in builds.build_packages(self.ctx, build_id)
            ]
        }


class BuildLog:
    """``GET .../log?offset=N``: the log from character N; tail by passing back next_offset."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, build_id: int) -> None:
        guard(self.ctx, req, Action.READ, build_id)
        part = read_log(self.ctx, build_id, int_param(req, "offset", 0) or 0)
        resp.media = {"text": part.text, "next_offset": part.next_offset, "finished": part.finished}


class BuildCancel:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, build_id: int) -> None:
        guard(self.ctx, req, Action.WRITE, build_id)
        resp.media = serialize.build(builds.cancel_build(self.ctx, build_id))
        resp.status = falcon.HTTP_202


class BuildRebuild:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, build_id: int) -> None:
        guard(self.ctx, req, Action.WRITE, build_id)
        build = builds.rebuild(self.ctx, build_id, submitted_by=principal(req).name)
        resp.media = serialize.build(build)
        resp.status = falcon.HTTP_202
        resp.location = f"{serialize.API}/builds/{build.id}"


class BuildArtifact:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, build_id: int, kind: str) -> None:
        guard(self.ctx, req, Action.READ, build_id)
        send_artifact(self.ctx, resp, builds.find_artifact(self.ctx, build_id, kind))

    def on_post(self, req: falcon.Request, resp: falcon.Response, build_id: int, kind: str) -> None:
        """Make the artifact again (the tarball only), e.g. after its packing failed."""
        guard(self.ctx, req, Action.WRITE, build_id)
        resp.media = serialize.build(builds.request_artifact(self.ctx, build_id, kind))
        resp.status = falcon.HTTP_202
