"""``/channel/``, ``/package/``, ``/setting/`` and ``/usage/``.

Channels are the configured ones (condastore keeps no channel index table);
packages are searched in them live, as our ``/packages`` does. Settings are
conda-store's names for condastore's settings and namespace policies: the
policy keys can be changed per namespace or environment, the rest are read-only.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import falcon
from pydantic import ConfigDict

from condastore_core.auth.rbac import Action
from condastore_core.errors import InvalidRequest
from condastore_core.service import builds, environments, namespaces, policies
from condastore_core.service.context import Context
from condastore_core.service.policies import namespace_gate
from condastore_core.solve import native_platform
from condastore_web.api.access import require, require_admin, require_login, visibility
from condastore_web.compat import shapes
from condastore_web.compat.auth import DEFAULT_NAMESPACE
from condastore_web.compat.envelope import (
    WALK_LIMIT,
    Body,
    list_param,
    ok,
    paginated,
    param,
    read_body,
    walk,
)

#: conda-store setting -> condastore policy field.
POLICY_SETTINGS = {
    "conda_allowed_channels": "allowed_channels",
    "conda_required_packages": "required_packages",
    "conda_default_packages": "default_packages",
    "conda_solve_platforms": "allowed_platforms",
}


class Channels:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        require_login(req)
        channels = list(self.ctx.settings.channels)
        rows = [{**shapes.channel(channels, c), "last_update": None} for c in channels]
        paginated(req, resp, rows, lambda c: c, {"name": lambda c: c["name"]}, ["name"])


class Packages:
    """Packages whose name contains ``search`` (is ``search``, with ``exact`` set).

    In the configured channels, or (beyond conda-store) in the ``channel``
    parameters' channels, which pass the channel gate as in our ``/packages``.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        require_login(req)
        exact = bool(param(req, "exact"))
        query = (param(req, "search") or "").strip()
        configured = list(self.ctx.settings.channels)
        channels = list_param(req, "channel") or configured
        rows: list[dict[str, Any]] = []
        if query:
            gate = namespace_gate(self.ctx, DEFAULT_NAMESPACE)
            found = self.ctx.search_packages(query, channels, [native_platform()], 100, gate=gate)
            distinct = set(list_param(req, "distinct_on"))
            for summary in found:
                if exact and summary.name != query:
                    continue
                versions = [summary.latest] if "version" not in distinct and distinct else []
                for version in versions or list(summary.versions):
                    channel = summary.channels[0] if summary.channels else channels[0]
                    rows.append(
                        {
                            "id": len(rows) + 1,
                            "channel": shapes.channel(configured, channel),
                            "license": None,
                            "name": summary.name,
                            "version": version,
                            "summary": None,
                        }
                    )
        paginated(
            req,
            resp,
            rows,
            lambda p: p,
            {
                "channel": lambda p: p["channel"]["name"],
                "name": lambda p: p["name"],
                "version": lambda p: p["version"],
            },
            ["channel", "name", "version"],
        )


class SettingsChange(Body):
    """Any keys: each is checked against :data:`POLICY_SETTINGS` by name."""

    model_config = ConfigDict(extra="allow", frozen=True)


def _scope(namespace: str | None, environment_name: str | None) -> str:
    if namespace is None:
        return ""
    return namespace if environment_name is None else f"{namespace}/{environment_name}"


class Settings:
    """``/setting/[{namespace}/[{environment_name}/]]``: read, and change the policy keys."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _check(
        self, req: falcon.Request, namespace: str | None, environment: str | None, action: Action
    ) -> None:
        if namespace is None:
            require_admin(req) if action is Action.ADMIN else require_login(req)
            return
        hidden = f"namespace {namespace!r} does not exist"
        require(self.ctx, req, action, namespace, environment, hidden=hidden)

    def on_get(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        namespace: str | None = None,
        environment_name: str | None = None,
    ) -> None:
        self._check(req, namespace, environment_name, Action.READ)
        settings = self.ctx.settings
        levels = [policies.get_policy(self.ctx, "")]
        if namespace is not None:
            levels.append(policies.get_policy(self.ctx, namespace))
        if environment_name is not None:
            levels.append(policies.get_policy(self.ctx, _scope(namespace, environment_name)))
        merged: dict[str, Any] = {}
        for level in levels:
            merged.update(level.model_dump(exclude_none=True, mode="json"))
        artifacts = ["LOCKFILE", "YAML"] + (["CONDA_PACK"] if settings.tarball else [])
        ok(
            resp,
            {
                "default_namespace": DEFAULT_NAMESPACE,
                "conda_channel_alias": settings.channel_alias,
                "conda_default_channels": list(settings.channels),
                "conda_allowed_channels": merged.get("allowed_channels", []),
                "conda_required_packages": merged.get("required_packages", []),
                "conda_default_packages": merged.get("default_packages", []),
                "conda_included_packages": [],
                "conda_solve_platforms": merged.get("allowed_platforms", [native_platform()]),
                "pypi_default_packages": [],
                "pypi_required_packages": [],
                "pypi_included_packages": [],
                "build_artifacts": artifacts,
                "build_artifacts_kept_on_deletion": ["LOGS", "LOCKFILE", "YAML"],
            },
        )

    def on_put(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        namespace: str | None = None,
        environment_name: str | None = None,
    ) -> None:
        self._check(req, namespace, environment_name, Action.ADMIN)
        data = read_body(req, SettingsChange).model_dump()
        unknown = sorted(k for k in data if k not in POLICY_SETTINGS)
        if unknown:
            raise InvalidRequest(f"setting {unknown[0]!r} cannot be changed on this server")
        scope = _scope(namespace, environment_name)
        current = policies.get_policy(self.ctx, scope).model_dump(exclude_none=True, mode="json")
        for key, value in data.items():
            current[POLICY_SETTINGS[key]] = value
        policies.set_policy(self.ctx, scope, current)
        ok(resp, None, f"global setting keys {list(data)} updated")


class Usage:
    """Environments, builds and bytes per namespace the caller may see."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        seen = visibility(self.ctx, req)
        names = [
            n.name
            for n in walk(
                lambda cursor: namespaces.list_namespaces(
                    self.ctx, limit=WALK_LIMIT, cursor=cursor, visible=seen
                )
            )
        ]
        envs: Counter[str] = Counter()
        for env in walk(
            lambda cursor: environments.list_environments(
                self.ctx, limit=WALK_LIMIT, cursor=cursor, visible=seen
            )
        ):
            envs[env.namespace.name] += 1
        counts: Counter[str] = Counter()
        storage: Counter[str] = Counter()
        for build in walk(
            lambda cursor: builds.list_builds(
                self.ctx, limit=WALK_LIMIT, cursor=cursor, visible=seen
            )
        ):
            counts[build.environment.namespace.name] += 1
            storage[build.environment.namespace.name] += build.size or 0
        ok(
            resp,
            {
                name: {
                    "num_environments": envs[name],
                    "num_builds": counts[name],
                    "storage": storage[name],
                }
                for name in names
            },
        )
