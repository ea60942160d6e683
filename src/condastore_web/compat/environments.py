"""``/environment/`` and ``/specification/``: list, show, update, delete; solve and submit.

conda-store points an environment at its newest build from the moment it is
submitted; condastore moves ``current_build_id`` only when a build completes.
Until then this API answers the newest build, so conda-store's clients (which
wait on ``current_build_id``) follow the build they just started.
"""

from __future__ import annotations

from typing import Any

import falcon
import yaml

from condastore_core.auth.rbac import Action
from condastore_core.bounded import check_size, check_yaml, yaml_loader
from condastore_core.db.models import Build, Environment
from condastore_core.errors import InvalidRequest, NotFound
from condastore_core.lock import parse_conda_lock_yaml
from condastore_core.service import builds, environments, namespaces
from condastore_core.service.context import Context
from condastore_core.service.policies import namespace_gate
from condastore_core.spec import MAX_SPEC_BYTES, EnvironmentSpec, parse_spec
from condastore_web.api.access import access_policy, principal, require, require_login, visibility
from condastore_web.compat.auth import primary_namespace
from condastore_web.compat.envelope import (
    WALK_LIMIT,
    Body,
    ack,
    list_param,
    ok,
    paginated,
    param,
    read_body,
    walk,
)
from condastore_web.compat.shapes import ARTIFACT_TYPES, channel_id, environment

MISSING = "environment does not exist"


def guard(ctx: Context, req: falcon.Request, action: Action, namespace: str, name: str) -> None:
    require(ctx, req, action, namespace, name, hidden=NotFound(MISSING))


def current(ctx: Context, env: Environment) -> Build | None:
    """The build conda-store would call current: the completed one, else the newest."""
    if env.current_build is not None:
        return env.current_build
    newest = builds.list_builds(ctx, namespace=env.namespace.name, environment=env.name, limit=1)
    return newest.items[0] if newest.items else None


def shape(ctx: Context, env: Environment) -> dict[str, Any]:
    build = current(ctx, env)
    return environment(env, build.id if build is not None else None)


class EnvironmentList:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        seen = visibility(self.ctx, req)
        name = param(req, "name")
        status = param(req, "status")
        artifact = param(req, "artifact")
        wanted = set(list_param(req, "packages"))
        rows = []
        for env in walk(
            lambda cursor: environments.list_environments(
                self.ctx,
                namespace=param(req, "namespace"),
                search=param(req, "search"),
                limit=WALK_LIMIT,
                cursor=cursor,
                visible=seen,
            )
        ):
            if name and env.name != name:
                continue
            build = current(self.ctx, env) if status or artifact or wanted else None
            if status and (build is None or build.status.value != status.upper()):
                continue
            kinds = {ARTIFACT_TYPES.get(a.kind) for a in build.artifacts} if build else set()
            if artifact and artifact not in kinds:
                continue
            if wanted and (
                build is None
                or not wanted <= {p.name for p in builds.build_packages(self.ctx, build.id)}
            ):
                continue
            rows.append(env)
        paginated(
            req,
            resp,
            rows,
            lambda env: shape(self.ctx, env),
            {"namespace": lambda e: e.namespace.name, "name": lambda e: e.name},
            ["namespace", "name"],
        )


class EnvironmentUpdate(Body):
    build_id: int | None = None
    description: str | None = None


class EnvironmentItem:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, namespace: str, name: str) -> None:
        guard(self.ctx, req, Action.READ, namespace, name)
        ok(resp, shape(self.ctx, environments.get_environment(self.ctx, namespace, name)))

    def on_put(self, req: falcon.Request, resp: falcon.Response, namespace: str, name: str) -> None:
        """Make another completed build current, change the description, or both."""
        guard(self.ctx, req, Action.WRITE, namespace, name)
        body = read_body(req, EnvironmentUpdate)
        if body.build_id is not None:
            environments.set_current_build(self.ctx, namespace, name, body.build_id)
        if body.description is not None:
            environments.set_description(self.ctx, namespace, name, body.description)
        ack(resp)

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, namespace: str, name: str
    ) -> None:
        guard(self.ctx, req, Action.DELETE, namespace, name)
        environments.delete_environment(self.ctx, namespace, name)
        ack(resp)


class SpecificationSubmit(Body):
    specification: str = ""
    namespace: str | None = None
    is_lockfile: bool = False
    environment_name: str = ""
    environment_description: str = ""


def lockfile_spec(body: SpecificationSubmit) -> tuple[EnvironmentSpec, str]:
    """The spec of a submitted conda-lock document: its channels and locked names."""
    lock = parse_conda_lock_yaml(body.specification)
    if not body.environment_name:
        raise InvalidRequest("environment_name is required with is_lockfile")
    names = sorted({p.name for records in lock.packages.values() for p in records})
    spec = EnvironmentSpec.from_dict(
        {
            "name": body.environment_name,
            "channels": list(lock.channels),
            "dependencies": names,
            "description": body.environment_description or None,
        }
    )
    return spec, body.specification


def conda_store_spec(text: str) -> EnvironmentSpec:
    """A spec as conda-store's clients write it: ours, plus ``prefix`` and empty fields.

    conda-store's UI sends ``prefix: null`` and ``variables: null``; conda-store
    builds ignore ``prefix``, so it is dropped here with every empty field.
    """
    check_size(text, MAX_SPEC_BYTES, "the specification")
    try:
        check_yaml(text, "the specification")
        data = yaml.load(text, Loader=yaml_loader())
    except yaml.YAMLError:
        raise InvalidRequest("Unable to parse. Invalid YAML") from None
    if isinstance(data, dict) and ("prefix" in data or None in data.values()):
        return EnvironmentSpec.from_dict(
            {k: v for k, v in data.items() if k != "prefix" and v is not None}
        )
    return parse_spec(text)


class Specification:
    """``GET``: solve without building (conda-store's CLI ``solve``); ``POST``: submit."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        require_login(req)
        # conda-store's server reads ``channel``; its CLI sends ``channels``.
        channels = list_param(req, "channel") or list_param(req, "channels")
        dependencies: list[Any] = list_param(req, "conda")
        pip = list_param(req, "pip")
        if pip:
            dependencies.append({"pip": pip})
        spec = EnvironmentSpec.from_dict(
            {"name": "conda-store-solve", "channels": channels, "dependencies": dependencies}
        )
        gate = namespace_gate(self.ctx, primary_namespace(principal(req)), spec.name)
        lock = self.ctx.solve(spec, gate=gate)
        configured = list(self.ctx.settings.channels)
        resp.media = {
            "solve": [
                {
                    "name": p.name,
                    "version": p.version,
                    "build": p.build,
                    "build_number": p.build_number,
                    "subdir": p.subdir,
                    "channel_id": channel_id(configured, p.channel),
                    "sha256": p.sha256,
                    "md5": p.md5,
                    "size": p.size or 0,
                    "depends": list(p.depends),
                    "constrains": list(p.constrains),
                }
                for platform in lock.platforms
                for p in lock.records(platform)
            ]
        }

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_body(req, SpecificationSubmit)
        who = principal(req)
        namespace = body.namespace or primary_namespace(who)
        lock_text = None
        if body.is_lockfile:
            spec, lock_text = lockfile_spec(body)
        else:
            spec = conda_store_spec(body.specification)
        if body.environment_description and not body.is_lockfile:
            spec = spec.model_copy(update={"description": body.environment_description})
        hidden = NotFound(f"namespace {namespace!r} does not exist")
        require(self.ctx, req, Action.WRITE, namespace, spec.name, hidden=hidden)
        # conda-store creates a missing namespace for whoever may create it.
        if access_policy(self.ctx, req).can(who, Action.ADMIN, namespace):
            namespaces.create_namespace(self.ctx, namespace, exist_ok=True)
        build = environments.submit(
            self.ctx,
            namespace,
            spec,
            lock=parse_conda_lock_yaml(lock_text) if lock_text is not None else None,
            submitted_by=who.name,
        )
        ok(resp, {"build_id": build.id})
