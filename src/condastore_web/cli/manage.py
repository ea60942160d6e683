"""Managing a server from the CLI: namespaces, users, tokens, role bindings, package search.

Each command is one API call (or one per page); tables for people, ``--json``
for scripts, ``--cursor`` to go on where a page ended (the next cursor is
printed on stderr), and exit codes a script can test (see ``common.reports_errors``).
"""

from __future__ import annotations

from typing import Any

import click

from condastore_web.cli.client import ApiClient
from condastore_web.cli.common import read_password, reports_errors
from condastore_web.cli.output import anonymous_hint, emit_json, more_hint, table
from condastore_web.cli.remote import server_options


def paging(f):  # type: ignore[no-untyped-def]
    f = click.option("--cursor", default=None, help="Where the previous page ended.")(f)
    return click.option("--limit", type=int, default=None, help="At most this many rows.")(f)


def show_page(
    client: ApiClient,
    page: dict[str, Any],
    as_json: bool,
    headers: list[str],
    row: Any,
) -> None:
    """The page as JSON, or as a table with the next cursor (if any) on stderr."""
    if client.anonymous and not page["items"]:
        anonymous_hint(client.url)
    if as_json:
        emit_json(page)
        return
    table([row(item) for item in page["items"]], headers)
    more_hint(page.get("next_cursor"))


def done(as_json: bool, data: Any, message: str) -> None:
    emit_json(data) if as_json else click.echo(message)


# -- namespaces ---------------------------------------------------------------------


@click.group("namespace")
def namespace_group() -> None:
    """Namespaces on a condastore server: list, create, delete."""


@namespace_group.command("list")
@paging
@server_options
@reports_errors
def namespace_list(limit, cursor, url, token, as_json):  # type: ignore[no-untyped-def]
    """List the namespaces you can see."""
    client = ApiClient(url, token)
    page = client.get("/namespaces", limit=limit, cursor=cursor)
    show_page(
        client, page, as_json, ["NAMESPACE", "CREATED"], lambda n: (n["name"], n["created_at"])
    )


@namespace_group.command("create")
@click.argument("name")
@server_options
@reports_errors
def namespace_create(name, url, token, as_json):  # type: ignore[no-untyped-def]
    """Create namespace NAME."""
    created = ApiClient(url, token).call("POST", "/namespaces", {"name": name})
    done(as_json, created, f"created namespace {name}")


@namespace_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@server_options
@reports_errors
def namespace_delete(name, yes, url, token, as_json):  # type: ignore[no-untyped-def]
    """Delete namespace NAME (it must hold no environments)."""
    if not yes:
        click.confirm(f"Delete namespace {name}?", abort=True)
    ApiClient(url, token).call("DELETE", f"/namespaces/{name}")
    done(as_json, {"deleted": name}, f"deleted namespace {name}")


# -- users (on the server, through its API; ``user add`` writes the database itself) -------


@click.command("list")
@paging
@server_options
@reports_errors
def user_list(limit, cursor, url, token, as_json):  # type: ignore[no-untyped-def]
    """List users (administrators only)."""
    client = ApiClient(url, token)
    page = client.get("/users", limit=limit, cursor=cursor)

    def row(u: dict) -> tuple:
        state = "disabled" if u["disabled"] else ""
        return (u["name"], "yes" if u["is_admin"] else "", ", ".join(u["groups"]), state)

    show_page(client, page, as_json, ["USER", "ADMIN", "GROUPS", "STATE"], row)


@click.command("disable")
@click.argument("name")
@click.option("--enable", is_flag=True, help="Enable the account again.")
@server_options
@reports_errors
def user_disable(name, enable, url, token, as_json):  # type: ignore[no-untyped-def]
    """Disable user NAME (their tokens are revoked), or --enable them again."""
    user = ApiClient(url, token).call("PATCH", f"/users/{name}", {"disabled": not enable})
    done(as_json, user, f"{'enabled' if enable else 'disabled'} user {name}")


@click.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@server_options
@reports_errors
def user_delete(name, yes, url, token, as_json):  # type: ignore[no-untyped-def]
    """Delete user NAME: disabled for good, tokens revoked, role bindings removed."""
    if not yes:
        click.confirm(f"Delete user {name}?", abort=True)
    ApiClient(url, token).call("DELETE", f"/users/{name}")
    done(as_json, {"deleted": name}, f"deleted user {name}")


@click.command("passwd")
@click.argument("name", required=False)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@server_options
@reports_errors
def user_passwd(name, password_stdin, url, token, as_json):  # type: ignore[no-untyped-def]
    """Set NAME's password (yours without NAME; others' as an administrator)."""
    client = ApiClient(url, token)
    name = name or client.own_namespace()
    password = read_password(password_stdin, True)
    client.call("PUT", f"/users/{name}/password", {"password": password})
    done(as_json, {"user": name}, f"password of {name} changed")


# -- tokens ----------------------------------------------------------------------------


@click.command("list")
@click.option("--user", default=None, help="Another user's tokens (administrators).")
@click.option("--all", "show_all", is_flag=True, help="Revoked and expired tokens too.")
@paging
@server_options
@reports_errors
def token_list(user, show_all, limit, cursor, url, token, as_json):  # type: ignore[no-untyped-def]
    """List your live tokens (an administrator may pass --user)."""
    client = ApiClient(url, token)
    page = client.get(
        "/tokens", user=user, all="true" if show_all else None, limit=limit, cursor=cursor
    )

    def row(t: dict) -> tuple:
        scope = ", ".join(t["scope"]) if t["scope"] is not None else "all your rights"
        state = "revoked" if t["revoked"] else ""
        return (t["token_id"], t["kind"], t["description"], scope, t["expires_at"], state)

    headers = ["TOKEN ID", "KIND", "DESCRIPTION", "SCOPE", "EXPIRES", "STATE"]
    show_page(client, page, as_json, headers, row)


@click.command("revoke")
@click.argument("token_id")
@server_options
@reports_errors
def token_revoke(token_id, url, token, as_json):  # type: ignore[no-untyped-def]
    """Revoke the token TOKEN_ID (see `token list`)."""
    ApiClient(url, token).call("DELETE", f"/tokens/{token_id}")
    done(as_json, {"revoked": token_id}, f"revoked token {token_id}")


# -- role bindings -----------------------------------------------------------------------


@click.group("role-binding")
def role_binding_group() -> None:
    """Role bindings: who may read, write or administer which namespaces."""


@role_binding_group.command("list")
@click.option("-n", "--namespace", default=None, help="Only those confined to this namespace.")
@paging
@server_options
@reports_errors
def role_binding_list(namespace, limit, cursor, url, token, as_json):  # type: ignore[no-untyped-def]
    """List role bindings (all as an administrator; a namespace's as its administrator)."""
    client = ApiClient(url, token)
    page = client.get("/role-bindings", namespace=namespace, limit=limit, cursor=cursor)
    show_page(
        client,
        page,
        as_json,
        ["ID", "SUBJECT", "PATTERN", "ROLE"],
        lambda b: (b["id"], b["subject"], b["pattern"], b["role"]),
    )


@role_binding_group.command("add")
@click.argument("subject")
@click.argument("pattern")
@click.argument("role", type=click.Choice(["viewer", "editor", "admin"]))
@server_options
@reports_errors
def role_binding_add(subject, pattern, role, url, token, as_json):  # type: ignore[no-untyped-def]
    """Grant ROLE on PATTERN (e.g. 'team/*') to SUBJECT (user:NAME or group:NAME)."""
    body = {"subject": subject, "pattern": pattern, "role": role}
    row = ApiClient(url, token).call("POST", "/role-bindings", body)
    done(as_json, row, f"role binding {row['id']}: {subject} is {role} of {pattern}")


@role_binding_group.command("remove")
@click.argument("binding_id", type=int)
@server_options
@reports_errors
def role_binding_remove(binding_id, url, token, as_json):  # type: ignore[no-untyped-def]
    """Remove role binding BINDING_ID (see `role-binding list`)."""
    ApiClient(url, token).call("DELETE", f"/role-bindings/{binding_id}")
    done(as_json, {"removed": binding_id}, f"removed role binding {binding_id}")


# -- packages -------------------------------------------------------------------------


@click.group("package")
def package_group() -> None:
    """Packages in the channels a server may use."""


@package_group.command("search")
@click.argument("query")
@click.option("-c", "--channel", "channels", multiple=True, help="Search this channel.")
@click.option("-p", "--platform", "platforms", multiple=True, help="For this platform.")
@click.option("-n", "--namespace", default=None, help="Under this namespace's channel policy.")
@click.option("--limit", type=int, default=None)
@server_options
@reports_errors
def package_search(query, channels, platforms, namespace, limit, url, token, as_json):  # type: ignore[no-untyped-def]
    """Find packages whose name contains QUERY, with their versions."""
    client = ApiClient(url, token)
    params: dict[str, Any] = {"q": query, "namespace": namespace, "limit": limit}
    if channels:
        params["channel"] = ",".join(channels)
    if platforms:
        params["platform"] = ",".join(platforms)
    found = client.get("/packages", **params)
    if as_json:
        emit_json(found)
        return
    table(
        [
            (p["name"], p["latest"], ", ".join(p["versions"][:8]), ", ".join(p["channels"]))
            for p in found["items"]
        ],
        ["PACKAGE", "LATEST", "VERSIONS", "CHANNELS"],
    )
