"""``/build/``: list, show, rebuild, cancel, delete, packages, log and artifacts.

Artifacts are sent as they are stored (conda-store redirects to its storage;
its clients follow). The log is read from the build's log lines, so it can be
followed while the build runs. Constructor installers and docker image URLs
are features condastore does not have under those names: those routes answer
as conda-store does when they are turned off.
"""

from __future__ import annotations

import falcon

from condastore_core.artifacts import ArtifactKind
from condastore_core.auth.rbac import Action
from condastore_core.db.models import Build
from condastore_core.errors import InvalidRequest, NotFound
from condastore_core.service import builds, environments
from condastore_core.service.context import Context
from condastore_core.service.logs import read_log
from condastore_web.api.access import principal, require, visibility
from condastore_web.api.common import send_artifact
from condastore_web.compat import shapes
from condastore_web.compat.envelope import (
    WALK_LIMIT,
    ack,
    int_param,
    list_param,
    ok,
    paginated,
    param,
    walk,
)

MISSING = "build id does not exist"


def guard(ctx: Context, req: falcon.Request, action: Action, build_id: int) -> Build:
    """The build, if the caller may ``action`` its environment; unreadable ones do not exist."""
    try:
        build = builds.get_build(ctx, build_id)
    except NotFound:
        raise NotFound(MISSING) from None
    env = build.environment
    require(ctx, req, action, env.namespace.name, env.name, hidden=NotFound(MISSING))
    return build


class BuildList:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        seen = visibility(self.ctx, req)
        packages = list_param(req, "packages")
        artifact = param(req, "artifact")
        if artifact is not None and artifact not in shapes.KINDS:
            raise InvalidRequest(f"unknown artifact {artifact!r}")
        environment_id = int_param(req, "environment_id")
        rows = walk(
            lambda cursor: builds.list_builds(
                self.ctx,
                status=param(req, "status"),
                namespace=param(req, "namespace"),
                environment=param(req, "name"),
                package=packages[0] if packages else None,
                limit=WALK_LIMIT,
                cursor=cursor,
                visible=seen,
            )
        )
        kept = []
        for b in rows:
            if environment_id is not None and b.environment_id != environment_id:
                continue
            if artifact is not None and shapes.KINDS[artifact] not in {a.kind for a in b.artifacts}:
                continue
            if len(packages) > 1 and not set(packages) <= {
                p.name for p in builds.build_packages(self.ctx, b.id)
            }:
                continue
            kept.append(b)
        paginated(
            req,
            resp,
            kept,
            shapes.build_brief,
            {
                "id": lambda b: b.id,
                "started_on": lambda b: b.started_at,
                "scheduled_on": lambda b: b.queued_at,
                "ended_on": lambda b: b.ended_at,
            },
            ["id"],
        )


class BuildItem:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, build_id: int) -> None:
        ok(resp, shapes.build(guard(self.ctx, req, Action.READ, build_id)))

    def on_put(self, req: falcon.Request, resp: falcon.Response, build_id: int) -> None:
        """Build the same spec again."""
        guard(self.ctx, req, Action.WRITE, build_id)
        build = builds.rebuild(self.ctx, build_id, submitted_by=principal(req).name)
        ok(resp, {"build_id": build.id}, "rebuild triggered")

    def on_delete(self, req: falcon.Request, resp: falcon.Response, build_id: int) -> None:
        guard(self.ctx, req, Action.DELETE, build_id)
        builds.delete_build(self.ctx, build_id)
        ack(resp)


class Cancel:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_put(self, req: falcon.Request, resp: falcon.Response, build_id: int) -> None:
        guard(self.ctx, req, Action.WRITE, build_id)
        builds.cancel_build(self.ctx, build_id)
        ack(resp, f"build {build_id} canceled")


class Packages:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, build_id: int) -> None:
        guard(self.ctx, req, Action.READ, build_id)
        search = param(req, "search")
        exact = param(req, "exact")
        build_string = param(req, "build")
        rows = [
            p
            for p in builds.build_packages(self.ctx, build_id)
            if (not search or (p.name == search if exact else search in p.name))
            and (not build_string or build_string in p.build)
        ]
        channels = list(self.ctx.settings.channels)
        paginated(
            req,
            resp,
            rows,
            lambda p: shapes.package(channels, p),
            {"channel": lambda p: p.channel, "name": lambda p: p.name},
            ["channel", "name"],
        )


class Logs:
    """The build's log as text, as far as it has been written."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, build_id: int) -> None:
        guard(self.ctx, req, Action.READ, build_id)
        parts, offset = [], 0
        while True:
            part = read_log(self.ctx, build_id, offset)
            parts.append(part.text)
            if not part.text or part.next_offset <= offset:
                break
            offset = part.next_offset
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = "".join(parts)


class Artifact:
    """One stored artifact of a build (``yaml``, ``lockfile``, ``archive``)."""

    def __init__(self, ctx: Context, kind: ArtifactKind) -> None:
        self.ctx = ctx
        self.kind = kind

    def on_get(self, req: falcon.Request, resp: falcon.Response, build_id: int) -> None:
        guard(self.ctx, req, Action.READ, build_id)
        send_artifact(self.ctx, resp, builds.find_artifact(self.ctx, build_id, self.kind.value))


class EnvironmentLockfile:
    """The lockfile of an environment's current build."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, namespace: str, name: str) -> None:
        missing = NotFound("environment does not exist")
        require(self.ctx, req, Action.READ, namespace, name, hidden=missing)
        env = environments.get_environment(self.ctx, namespace, name)
        if env.current_build_id is None:
            raise NotFound(MISSING)
        kind = ArtifactKind.LOCKFILE.value
        send_artifact(self.ctx, resp, builds.find_artifact(self.ctx, env.current_build_id, kind))


class Docker:
    """conda-store's answer for a build without a docker manifest; images live under /v2/."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, build_id: int) -> None:
        guard(self.ctx, req, Action.READ, build_id)
        raise InvalidRequest(f"Build {build_id} doesn't have a docker manifest")


class Installer:
    """conda-store's answer for a build without a constructor installer."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, build_id: int) -> None:
        guard(self.ctx, req, Action.READ, build_id)
        raise InvalidRequest(f"Build {build_id} doesn't have an installer")
