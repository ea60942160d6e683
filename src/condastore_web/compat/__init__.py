"""conda-store's REST API v1, served beside condastore's own so its clients work unchanged.

conda-store names its resources in the singular (``/api/v1/namespace/``,
``/environment/``, ``/build/`` ...), condastore in the plural, so the two
never collide. Every route here is a thin mapping over ``condastore_core.service``
with the same access checks as our own routes; only names and shapes differ
(:mod:`.shapes`, the envelope and page parameters in :mod:`.envelope`, the error
body in :mod:`.errors`). The routes and their modules:

    /api/v1/permission/, /token/                              auth.py
    /api/v1/namespace/[{ns}/[metadata|roles|role]]            namespaces.py
    /api/v1/environment/[{ns}/{name}/], /specification/       environments.py
    /api/v1/build/[{id}/[cancel|packages|logs|yaml|lockfile|
        conda-lock.yml|conda-lock.yaml|archive|docker|installer]],
    /api/v1/environment/{ns}/{name}/[lockfile|conda-lock.yml|conda-lock.yaml]
                                                              builds.py
    /api/v1/channel/, /package/, /setting/[...], /usage/      catalog.py

``GET /api/v1/`` is condastore's own version answer, left as it is.
"""

from __future__ import annotations

import falcon

from condastore_core.artifacts import ArtifactKind
from condastore_core.service.context import Context
from condastore_web.compat import auth, builds, catalog, environments, errors, namespaces

API = "/api/v1"


def routes(ctx: Context) -> list[tuple[str, object]]:
    """Every route template with its resource; tests read the templates from here."""
    ns = f"{API}/namespace/{{namespace_name}}"
    env = f"{API}/environment/{{namespace}}/{{name}}"
    build = f"{API}/build/{{build_id:int}}"
    lockfile = builds.Artifact(ctx, ArtifactKind.LOCKFILE)
    env_lockfile = builds.EnvironmentLockfile(ctx)
    settings = catalog.Settings(ctx)
    return [
        (f"{API}/permission", auth.Permission(ctx)),
        (f"{API}/token", auth.Token(ctx)),
        (f"{API}/usage", catalog.Usage(ctx)),
        (f"{API}/namespace", namespaces.NamespaceList(ctx)),
        (ns, namespaces.NamespaceItem(ctx)),
        (f"{ns}/metadata", namespaces.Metadata(ctx)),
        (f"{ns}/roles", namespaces.Roles(ctx)),
        (f"{ns}/role", namespaces.Role(ctx)),
        (f"{API}/environment", environments.EnvironmentList(ctx)),
        (env, environments.EnvironmentItem(ctx)),
        (f"{env}/lockfile", env_lockfile),
        (f"{env}/conda-lock.yml", env_lockfile),
        (f"{env}/conda-lock.yaml", env_lockfile),
        (f"{API}/specification", environments.Specification(ctx)),
        (f"{API}/build", builds.BuildList(ctx)),
        (build, builds.BuildItem(ctx)),
        (f"{build}/cancel", builds.Cancel(ctx)),
        (f"{build}/packages", builds.Packages(ctx)),
        (f"{build}/logs", builds.Logs(ctx)),
        (f"{build}/yaml", builds.Artifact(ctx, ArtifactKind.YAML)),
        (f"{build}/lockfile", lockfile),
        (f"{build}/conda-lock.yml", lockfile),
        (f"{build}/conda-lock.yaml", lockfile),
        (f"{build}/archive", builds.Artifact(ctx, ArtifactKind.TARBALL)),
        (f"{build}/docker", builds.Docker(ctx)),
        (f"{build}/installer", builds.Installer(ctx)),
        (f"{API}/channel", catalog.Channels(ctx)),
        (f"{API}/package", catalog.Packages(ctx)),
        (f"{API}/setting", settings),
        (f"{API}/setting/{{namespace}}", settings),
        (f"{API}/setting/{{namespace}}/{{environment_name}}", settings),
    ]


def mount(app: falcon.App, ctx: Context) -> None:
    for template, resource in routes(ctx):
        app.add_route(template, resource)
    errors.register(app)
