"""The web application: wires resources to routes; no work at import time.

``create_app(ctx)`` is the factory tests and ``condastore serve``'s workers use;
without a context (``gunicorn 'condastore_web.app:create_app()'``, for those
who run gunicorn themselves) it builds one from settings (``CONDASTORE_*``
variables and the config file).
"""

from __future__ import annotations

from typing import Any

import falcon
from prometheus_client import CollectorRegistry

from condastore_core.service import sso as sso_logins
from condastore_core.service import users
from condastore_core.service.context import Context
from condastore_core.settings import load_settings
from condastore_registry import app as registry
from condastore_web import compat, observability
from condastore_web.api import (
    access,
    accounts,
    builds,
    environments,
    errors,
    misc,
    namespaces,
    sso,
)
from condastore_web.headers import SecurityHeaders
from condastore_web.ui import pages

API = "/api/v1"


def create_app(
    ctx: Context | None = None, authenticator: users.Authenticator | None = None
) -> falcon.App:
    if ctx is None:
        ctx = default_context()
    if not ctx.settings.password_login:
        authenticator = sso_logins.NoPasswords()
    authenticator = authenticator or users.LocalPasswords()
    metrics = CollectorRegistry()
    middleware: list[Any] = [
        observability.RequestMetrics(metrics),
        SecurityHeaders(form_targets=sso.form_targets(ctx.settings)),
        access.Authenticate(ctx, authenticator),
    ]
    app = falcon.App(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    errors.register(app)
    app.add_route(API, misc.Version())
    app.add_route(f"{API}/solve", misc.SolvePreview(ctx))
    app.add_route(f"{API}/packages", misc.PackageSearch(ctx))
    app.add_route(f"{API}/watched", misc.WatchedDirectories(ctx))
    app.add_route(f"{API}/channels/refresh", misc.ChannelsRefresh(ctx))
    app.add_route(f"{API}/namespaces", namespaces.NamespaceCollection(ctx))
    app.add_route(f"{API}/namespaces/{{namespace}}", namespaces.NamespaceItem(ctx))
    env = f"{API}/environments/{{namespace}}/{{name}}"
    app.add_route(f"{API}/environments", environments.EnvironmentCollection(ctx))
    app.add_route(env, environments.EnvironmentItem(ctx))
    app.add_route(f"{env}/current", environments.CurrentBuildItem(ctx))
    app.add_route(f"{env}/diff", environments.EnvironmentDiff(ctx))
    app.add_route(f"{env}/artifacts/{{kind}}", environments.EnvironmentArtifact(ctx))
    app.add_route(f"{API}/auth/login", accounts.LoginResource(ctx, authenticator))
    app.add_route(f"{API}/auth/logout", accounts.LogoutResource(ctx))
    app.add_route(f"{API}/auth/me", accounts.MeResource(ctx))
    app.add_route(f"{API}/tokens", accounts.TokenCollection(ctx))
    app.add_route(f"{API}/tokens/{{token_id}}", accounts.TokenItem(ctx))
    app.add_route(f"{API}/users", accounts.UserCollection(ctx))
    app.add_route(f"{API}/users/{{name}}", accounts.UserItem(ctx))
    app.add_route(f"{API}/users/{{name}}/password", accounts.UserPassword(ctx))
    app.add_route(f"{API}/role-bindings", accounts.RoleBindingCollection(ctx))
    app.add_route(f"{API}/role-bindings/{{binding_id:int}}", accounts.RoleBindingItem(ctx))
    app.add_route(f"{API}/policies", accounts.PolicyResource(ctx))
    build = f"{API}/builds/{{build_id:int}}"
    app.add_route(f"{API}/builds", builds.BuildCollection(ctx))
    app.add_route(build, builds.BuildItem(ctx))
    app.add_route(f"{build}/packages", builds.BuildPackages(ctx))
    app.add_route(f"{build}/log", builds.BuildLog(ctx))
    app.add_route(f"{build}/cancel", builds.BuildCancel(ctx))
    app.add_route(f"{build}/rebuild", builds.BuildRebuild(ctx))
    app.add_route(f"{build}/artifacts/{{kind}}", builds.BuildArtifact(ctx))
    compat.mount(app, ctx)
    sso.mount(app, ctx, API)
    registry.mount(app, ctx, authenticator)
    pages.mount(app, ctx, authenticator)
    observability.mount(app, ctx, metrics)
    return app


def default_context() -> Context:
    """The context of a production process: settings from the environment, jobs attached."""
    from condastore_web.runtime import start_services

    return start_services(load_settings())
