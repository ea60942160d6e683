"""``/api/v1/environments``: list, show, create or update from a spec, delete, current build."""

from __future__ import annotations

import dataclasses

import falcon

from condastore_core.auth.rbac import Action
from condastore_core.lock import parse_conda_lock_yaml
from condastore_core.service import builds, environments
from condastore_core.service.context import Context
from condastore_core.spec import parse_spec
from condastore_web.api import serialize
from condastore_web.api.access import principal, require, visibility
from condastore_web.api.bodies import CurrentBuild, EnvironmentCreate, read_body
from condastore_web.api.common import int_param, send_artifact


def guard(ctx: Context, req: falcon.Request, action: Action, namespace: str, name: str) -> None:
    require(
        ctx, req, action, namespace, name, hidden=f"environment {namespace}/{name} does not exist"
    )


class EnvironmentCollection:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = environments.list_environments(
            self.ctx,
            namespace=req.get_param("namespace"),
            search=req.get_param("search"),
            package=req.get_param("package") or None,
            limit=int_param(req, "limit"),
            cursor=req.get_param("cursor"),
            visible=visibility(self.ctx, req),
        )
        resp.media = serialize.page(page, serialize.environment)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Create the environment if needed and queue a build; answers 202 with the build."""
        body = read_body(req, EnvironmentCreate)
        spec = parse_spec(body.specification)
        require(
            self.ctx,
            req,
            Action.WRITE,
            body.namespace,
            spec.name,
            hidden=f"namespace {body.namespace!r} does not exist",
        )
        lock = parse_conda_lock_yaml(body.lockfile) if body.lockfile is not None else None
        build = environments.submit(
            self.ctx,
            body.namespace,
            spec,
            description=body.description,
            platforms=body.platforms,
            lock=lock,
            submitted_by=principal(req).name,
        )
        resp.media = serialize.build(build)
        resp.status = falcon.HTTP_202
        resp.location = f"{serialize.API}/builds/{build.id}"


class EnvironmentItem:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, namespace: str, name: str) -> None:
        guard(self.ctx, req, Action.READ, namespace, name)
        resp.media = serialize.environment(environments.get_environment(self.ctx, namespace, name))

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, namespace: str, name: str
    ) -> None:
        guard(self.ctx, req, Action.DELETE, namespace, name)
        environments.delete_environment(self.ctx, namespace, name)
        resp.status = falcon.HTTP_204


class CurrentBuildItem:
    """``PUT .../current``: make any completed build current (rollback)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_put(self, req: falcon.Request, resp: falcon.Response, namespace: str, name: str) -> None:
        guard(self.ctx, req, Action.WRITE, namespace, name)
        body = read_body(req, CurrentBuild)
        env = environments.set_current_build(self.ctx, namespace, name, body.build_id)
        resp.media = serialize.environment(env)


class EnvironmentDiff:
    """``GET .../diff?from=A&to=B``: packages added, removed and changed between two builds."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, namespace: str, name: str) -> None:
        guard(self.ctx, req, Action.READ, namespace, name)
        old = req.get_param_as_int("from", required=True)
        new = req.get_param_as_int("to", required=True)
        changes = environments.diff_builds(self.ctx, namespace, name, old, new)
        resp.media = {
            "from": old,
            "to": new,
            "changes": [dataclasses.asdict(c) for c in changes],
        }


class EnvironmentArtifact:
    """``GET .../artifacts/{kind}``: an artifact of the environment's current build."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, namespace: str, name: str, kind: str
    ) -> None:
        guard(self.ctx, req, Action.READ, namespace, name)
        env = environments.get_environment(self.ctx, namespace, name)
        if env.current_build_id is None:
            raise falcon.HTTPNotFound(
                description=f"environment {namespace}/{name} has no completed build yet"
            )
        send_artifact(self.ctx, resp, builds.find_artifact(self.ctx, env.current_build_id, kind))
