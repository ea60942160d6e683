"""Commands that talk to a condastore server: ``env``, ``build`` and ``download``."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from condastore_core.errors import CondastoreError
from condastore_web.cli.client import ApiClient
from condastore_web.cli.common import reports_errors
from condastore_web.cli.output import anonymous_hint, emit_json, fields, more_hint, table

F = TypeVar("F", bound=Callable[..., Any])
FINISHED = {"COMPLETED", "FAILED", "CANCELED"}
BUILD_FIELDS = [
    "id",
    "namespace",
    "environment",
    "status",
    "step",
    "build_key",
    "lock_hash",
    "spec_hash",
    "platforms",
    "size",
    "error",
    "queued_at",
    "started_at",
    "ended_at",
]


def server_options(f: F) -> F:
    f = click.option("--url", envvar="CONDASTORE_URL", help="Server URL (env CONDASTORE_URL).")(f)
    f = click.option(
        "--token", envvar="CONDASTORE_TOKEN", help="API token (env CONDASTORE_TOKEN)."
    )(f)
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(f)


def complete_environment(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """Shell completion of NAMESPACE/NAME from the server (nothing when it cannot be asked)."""
    try:
        client = ApiClient(ctx.params.get("url"), ctx.params.get("token"))
        namespace, sep, name = incomplete.partition("/")
        params = {"namespace": namespace, "search": name} if sep else {"search": incomplete}
        page = client.get("/environments", limit=100, **params)
    except (CondastoreError, OSError, ValueError):
        return []
    names = (f"{e['namespace']}/{e['name']}" for e in page["items"])
    return sorted(n for n in names if n.startswith(incomplete))


def complete_namespace(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """Shell completion of namespace names from the server."""
    try:
        page = ApiClient(ctx.params.get("url"), ctx.params.get("token")).get(
            "/namespaces", limit=500
        )
    except (CondastoreError, OSError, ValueError):
        return []
    return sorted(n["name"] for n in page["items"] if n["name"].startswith(incomplete))


def split_name(value: str) -> tuple[str, str]:
    namespace, sep, name = value.partition("/")
    if not sep or not namespace or not name:
        raise CondastoreError(f"expected NAMESPACE/NAME, not {value!r}")
    return namespace, name


def follow_log(client: ApiClient, build_id: int, *, follow: bool, poll: float = 0.5) -> dict:
    """Print the log as it grows; returns the build once it finished (or at once without follow)."""
    offset = 0
    while True:
        part = client.get(f"/builds/{build_id}/log", offset=offset)
        if part["text"]:
            sys.stdout.write(part["text"])
            sys.stdout.flush()
        offset = part["next_offset"]
        if part["finished"] or not follow:
            return client.get(f"/builds/{build_id}")
        time.sleep(poll)


def wait_for(client: ApiClient, build_id: int, poll: float = 0.5) -> dict:
    while True:
        build = client.get(f"/builds/{build_id}")
        if build["status"] in FINISHED:
            return build
        time.sleep(poll)


def show_build(build: dict, as_json: bool) -> None:
    if as_json:
        emit_json(build)
        return
    fields(build, BUILD_FIELDS)
    for a in build["artifacts"]:
        click.echo(f"artifact  {a['kind']:<9} {a['digest']}  {a['size']} bytes")
    for kind, message in sorted((build.get("artifact_errors") or {}).items()):
        click.echo(f"artifact  {kind:<9} FAILED: {message}")


def exit_for(build: dict) -> None:
    if build["status"] != "COMPLETED":
        click.echo(f"build {build['id']} {build['status']}: {build.get('error') or ''}", err=True)
        sys.exit(1)


# -- env ---------------------------------------------------------------------------


@click.group("env")
def env_group() -> None:
    """Manage environments on a condastore server."""


@env_group.command("create")
@click.option(
    "-f",
    "--file",
    "spec_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The environment.yaml.",
)
@click.option(
    "-n",
    "--namespace",
    default=None,
    shell_complete=complete_namespace,
    help="Where the environment lives (default: your own).",
)
@click.option(
    "--lockfile",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Build exactly this conda-lock.yml instead of solving.",
)
@click.option("-p", "--platform", "platforms", multiple=True, help="Platforms to lock for.")
@click.option("--description", default=None)
@click.option("--wait", is_flag=True, help="Follow the build log until the build finishes.")
@server_options
@reports_errors
def env_create(spec_file, namespace, lockfile, platforms, description, wait, url, token, as_json):  # type: ignore[no-untyped-def]
    """Create or update an environment from a spec; queues a build."""
    client = ApiClient(url, token)
    namespace = namespace or client.own_namespace()
    body: dict[str, Any] = {"namespace": namespace, "specification": spec_file.read_text()}
    if lockfile:
        body["lockfile"] = lockfile.read_text()
    if platforms:
        body["platforms"] = list(platforms)
    if description is not None:
        body["description"] = description
    build = client.call("POST", "/environments", body)
    if not as_json:
        click.echo(
            f"build {build['id']} of {build['namespace']}/{build['environment']} queued", err=True
        )
    if wait:
        build = (
            wait_for(client, build["id"])
            if as_json
            else follow_log(client, build["id"], follow=True)
        )
    show_build(build, as_json)
    if wait:
        exit_for(build)


@env_group.command("list")
@click.option("-n", "--namespace", default=None, shell_complete=complete_namespace)
@click.option("--search", default=None)
@click.option("--package", default=None, help="Only those whose current build holds it.")
@click.option("--limit", type=int, default=None)
@click.option("--cursor", default=None, help="Where the previous page ended.")
@server_options
@reports_errors
def env_list(namespace, search, package, limit, cursor, url, token, as_json):  # type: ignore[no-untyped-def]
    """List environments."""
    client = ApiClient(url, token)
    page = client.get(
        "/environments",
        namespace=namespace,
        search=search,
        package=package,
        limit=limit,
        cursor=cursor,
    )
    if client.anonymous and not page["items"]:
        anonymous_hint(client.url)
    if as_json:
        emit_json(page)
        return
    table(
        [
            (
                f"{e['namespace']}/{e['name']}",
                e["current_build_id"],
                e["current_build_key"],
                e["description"],
            )
            for e in page["items"]
        ],
        ["ENVIRONMENT", "CURRENT", "BUILD KEY", "DESCRIPTION"],
    )
    more_hint(page.get("next_cursor"))


@env_group.command("show")
@click.argument("environment", shell_complete=complete_environment)
@server_options
@reports_errors
def env_show(environment, url, token, as_json):  # type: ignore[no-untyped-def]
    """Show NAMESPACE/NAME."""
    namespace, name = split_name(environment)
    env = ApiClient(url, token).get(f"/environments/{namespace}/{name}")
    if as_json:
        emit_json(env)
    else:
        fields(
            env,
            [
                "namespace",
                "name",
                "description",
                "current_build_id",
                "current_build_key",
                "created_at",
                "updated_at",
            ],
        )


@env_group.command("rollback")
@click.argument("environment", shell_complete=complete_environment)
@click.argument("build_id", type=int)
@server_options
@reports_errors
def env_rollback(environment, build_id, url, token, as_json):  # type: ignore[no-untyped-def]
    """Make completed build BUILD_ID current again."""
    namespace, name = split_name(environment)
    env = ApiClient(url, token).call(
        "PUT", f"/environments/{namespace}/{name}/current", {"build_id": build_id}
    )
    emit_json(env) if as_json else click.echo(f"{environment} is now at build {build_id}")


@env_group.command("delete")
@click.argument("environment", shell_complete=complete_environment)
@server_options
@reports_errors
def env_delete(environment, url, token, as_json):  # type: ignore[no-untyped-def]
    """Delete NAMESPACE/NAME (kept for audit, hidden from lists)."""
    namespace, name = split_name(environment)
    ApiClient(url, token).call("DELETE", f"/environments/{namespace}/{name}")
    if not as_json:
        click.echo(f"deleted {environment}")


@env_group.command("diff")
@click.argument("environment", shell_complete=complete_environment)
@click.argument("old", type=int)
@click.argument("new", type=int)
@server_options
@reports_errors
def env_diff(environment, old, new, url, token, as_json):  # type: ignore[no-untyped-def]
    """Packages added, removed and changed from build OLD to build NEW."""
    namespace, name = split_name(environment)
    diff = ApiClient(url, token).get(
        f"/environments/{namespace}/{name}/diff", **{"from": old, "to": new}
    )
    if as_json:
        emit_json(diff)
        return
    for c in diff["changes"]:
        sign = "+" if c["old"] is None else "-" if c["new"] is None else "~"
        change = (
            c["new"]
            if c["old"] is None
            else c["old"]
            if c["new"] is None
            else (f"{c['old']} -> {c['new']}")
        )
        click.echo(f"{sign} {c['name']} {change} ({c['platform']})")


# -- build -------------------------------------------------------------------------


@click.group("build-remote")
def build_group() -> None:
    """Builds on a condastore server."""


@build_group.command("list")
@click.option("--status", default=None)
@click.option("-n", "--namespace", default=None, shell_complete=complete_namespace)
@click.option("-e", "--environment", default=None)
@click.option("--package", default=None, help="Only builds containing this package.")
@click.option("--limit", type=int, default=None)
@click.option("--cursor", default=None, help="Where the previous page ended.")
@server_options
@reports_errors
def build_list(status, namespace, environment, package, limit, cursor, url, token, as_json):  # type: ignore[no-untyped-def]
    """List builds, newest first."""
    client = ApiClient(url, token)
    page = client.get(
        "/builds",
        status=status,
        namespace=namespace,
        environment=environment,
        package=package,
        limit=limit,
        cursor=cursor,
    )
    if client.anonymous and not page["items"]:
        anonymous_hint(client.url)
    if as_json:
        emit_json(page)
        return
    table(
        [
            (
                b["id"],
                f"{b['namespace']}/{b['environment']}",
                b["status"],
                b["step"],
                b["build_key"],
                b["queued_at"],
            )
            for b in page["items"]
        ],
        ["ID", "ENVIRONMENT", "STATUS", "STEP", "BUILD KEY", "QUEUED"],
    )
    more_hint(page.get("next_cursor"))


@build_group.command("show")
@click.argument("build_id", type=int)
@server_options
@reports_errors
def build_show(build_id, url, token, as_json):  # type: ignore[no-untyped-def]
    """Show one build and its artifacts."""
    show_build(ApiClient(url, token).get(f"/builds/{build_id}"), as_json)


@build_group.command("log")
@click.argument("build_id", type=int)
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the build finishes.")
@server_options
@reports_errors
def build_log(build_id, follow, url, token, as_json):  # type: ignore[no-untyped-def]
    """Print a build's log."""
    follow_log(ApiClient(url, token), build_id, follow=follow)


@build_group.command("watch")
@click.argument("build_id", type=int)
@click.option("--poll", type=float, default=1.0, show_default=True, help="Seconds between looks.")
@server_options
@reports_errors
def build_watch(build_id, poll, url, token, as_json):  # type: ignore[no-untyped-def]
    """Show a build's progress until its final state; exit 1 unless it completed."""
    from condastore_web.cli.progress import Progress

    client = ApiClient(url, token)
    progress = Progress(f"build {build_id}")
    while True:
        build = client.get(f"/builds/{build_id}")
        progress.step(f"{build['status']} · {build['step']}")
        # A completed build's tarball comes after: its log says when all is done.
        log_end = client.get(f"/builds/{build_id}/log", offset=10**12)
        if build["status"] in FINISHED and log_end["finished"]:
            build = client.get(f"/builds/{build_id}")
            break
        time.sleep(poll)
    progress.finish(build["status"])
    if as_json:
        emit_json(build)
    exit_for(build)


@build_group.command("cancel")
@click.argument("build_id", type=int)
@server_options
@reports_errors
def build_cancel(build_id, url, token, as_json):  # type: ignore[no-untyped-def]
    """Cancel a queued or running build."""
    build = ApiClient(url, token).call("POST", f"/builds/{build_id}/cancel")
    emit_json(build) if as_json else click.echo(f"build {build_id}: {build['status']}")


@build_group.command("rebuild")
@click.argument("build_id", type=int)
@server_options
@reports_errors
def build_rebuild(build_id, url, token, as_json):  # type: ignore[no-untyped-def]
    """Queue a new build of the same spec."""
    build = ApiClient(url, token).call("POST", f"/builds/{build_id}/rebuild")
    emit_json(build) if as_json else click.echo(f"build {build['id']} queued")


@build_group.command("pack")
@click.argument("build_id", type=int)
@server_options
@reports_errors
def build_pack(build_id, url, token, as_json):  # type: ignore[no-untyped-def]
    """Make a completed build's conda-pack tarball again (after its packing failed)."""
    build = ApiClient(url, token).call("POST", f"/builds/{build_id}/artifacts/tarball")
    emit_json(build) if as_json else click.echo(f"build {build_id}: tarball queued")


# -- download ----------------------------------------------------------------------


@click.command("download")
@click.argument("environment", shell_complete=complete_environment)
@click.option(
    "-a",
    "--artifact",
    "kind",
    required=True,
    type=click.Choice(["lockfile", "yaml", "explicit", "tarball", "log"]),
)
@click.option(
    "-b",
    "--build",
    "build_id",
    type=int,
    default=None,
    help="A build of the environment (default: its current build).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (default: standard output).",
)
@server_options
@reports_errors
def download(environment, kind, build_id, output, url, token, as_json):  # type: ignore[no-untyped-def]
    """Download an artifact of NAMESPACE/NAME's current build (or of --build)."""
    namespace, name = split_name(environment)
    client = ApiClient(url, token)
    if build_id is not None:
        build = client.get(f"/builds/{build_id}")
        if (build["namespace"], build["environment"]) != (namespace, name):
            raise CondastoreError(
                f"build {build_id} is a build of {build['namespace']}/{build['environment']}, "
                f"not of {environment}"
            )
        path = f"/builds/{build_id}/artifacts/{kind}"
    else:
        path = f"/environments/{namespace}/{name}/artifacts/{kind}"
    if output is None:
        client.download(path, sys.stdout.buffer)
    else:
        size = client.download(path, output)
        click.echo(f"wrote {output} ({size} bytes)", err=True)
