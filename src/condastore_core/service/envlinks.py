"""Keep ``<environments_dir>/<namespace>/<environment>`` on the environment's current build.

Called after every change of an environment's current build (a build
completes, a rollback, a deletion) when ``environments_dir`` is set. The link
is made from what the database says *now*, under a cluster lock per
environment, so two changes racing leave the link on whichever committed last.
"""

from __future__ import annotations

from pathlib import Path

from condastore_core import envlinks, layout
from condastore_core.db.models import Environment
from condastore_core.service.context import Context


def sync(ctx: Context, environment_id: int) -> Path | None:
    """Point the environment's link at its current build's prefix (or remove it).

    Returns the link, or None when there is none (no shared directory, a deleted
    environment, no current build, or a build with no prefix for this platform).
    """
    shared = ctx.settings.environments_dir
    if shared is None:
        return None
    with ctx.sessions() as session:
        env = session.get(Environment, environment_id)
        if env is None:
            return None
        where = (env.namespace.name, env.name)
    with ctx.locks.hold(f"envlink:{where[0]}:{where[1]}"):
        with ctx.sessions() as session:
            env = session.get_one(Environment, environment_id)
            current = env.current_build if env.deleted_at is None else None
            key = current.build_key if current is not None else None
        builds = layout.shared_builds_dir(shared)
        if key is None or not (layout.prefix_in(builds, key) / "conda-meta").is_dir():
            envlinks.remove(shared, *where)
            return None
        group = ctx.settings.environments_groups.get(where[0])
        return envlinks.point(shared, *where, key, group=group)
