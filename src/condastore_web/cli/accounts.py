"""``condastore login``, ``logout`` and ``token create``: a client's side of accounts."""

from __future__ import annotations

import click

from condastore_core.errors import CondastoreError
from condastore_web.cli import manage
from condastore_web.cli.client import ApiClient
from condastore_web.cli.common import read_password, reports_errors
from condastore_web.cli.credentials import store_token
from condastore_web.cli.output import emit_json

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int:
    """``90s``, ``30m``, ``12h``, ``7d``, ``2w`` or plain seconds -> seconds."""
    text = text.strip().lower()
    unit = DURATION_UNITS.get(text[-1:]) if text else None
    number = text[:-1] if unit else text
    try:
        value = int(number) * (unit or 1)
    except ValueError:
        raise CondastoreError(f"invalid duration {text!r}: use e.g. 3600, 30m, 12h, 7d") from None
    if value <= 0:
        raise CondastoreError("a duration must be positive")
    return value


@click.command("login")
@click.option("--url", envvar="CONDASTORE_URL", default=None, help="Server URL.")
@click.option("-u", "--username", default=None, help="Your user name (not with --sso).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--sso", is_flag=True, help="Log in at the server's identity provider.")
@click.option("--browser", is_flag=True, help="With --sso: a browser here, not the device code.")
@reports_errors
def login(
    url: str | None, username: str | None, password_stdin: bool, sso: bool, browser: bool
) -> None:
    """Log in and keep the token so later commands are authenticated."""
    client = ApiClient(url)
    client.token = None  # a login needs no token, and an old one may be revoked
    if sso:
        from condastore_web.cli.sso import login_sso

        answer = login_sso(client, browser=browser)
        path = store_token(client.url, answer["token"])
        click.echo(f"logged in to {client.url} as {answer['user']} (token saved in {path})")
        return
    if not username:
        raise click.UsageError("give --username, or --sso to log in at the identity provider")
    answer = client.call(
        "POST",
        "/auth/login",
        {"username": username, "password": read_password(password_stdin, False)},
    )
    path = store_token(client.url, answer["token"])
    click.echo(f"logged in to {client.url} as {username} (token saved in {path})")


@click.command("logout")
@click.option("--url", envvar="CONDASTORE_URL", default=None, help="Server URL.")
@reports_errors
def logout(url: str | None) -> None:
    """Revoke the saved token and forget it."""
    client = ApiClient(url)
    if client.token:
        try:
            client.call("POST", "/auth/logout")
        finally:
            store_token(client.url, None)
    click.echo(f"logged out of {client.url}")


@click.group("token")
def token_group() -> None:
    """API tokens for scripts, CI jobs and notebooks."""


@token_group.command("create")
@click.option(
    "--binding",
    "bindings",
    multiple=True,
    help="Narrow the token to PATTERN=ROLE, e.g. 'team-a/*=viewer' (repeatable).",
)
@click.option("--expires-in", default=None, help="Lifetime: 3600, 30m, 12h, 7d...")
@click.option("--description", default="")
@click.option("--url", envvar="CONDASTORE_URL", default=None, help="Server URL.")
@click.option("--token", envvar="CONDASTORE_TOKEN", default=None, help="Token to ask with.")
@click.option("--json", "as_json", is_flag=True)
@reports_errors
def token_create(
    bindings: tuple[str, ...],
    expires_in: str | None,
    description: str,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Print a new token with at most your rights (or the --binding subset)."""
    body: dict = {"description": description}
    if bindings:
        body["bindings"] = list(bindings)
    if expires_in:
        body["expires_in"] = parse_duration(expires_in)
    issued = ApiClient(url, token).call("POST", "/tokens", body)
    if as_json:
        emit_json(issued)
    else:
        click.echo(issued["token"])
        click.echo(
            f"expires {issued['expires_at']}; scope {issued['scope'] or 'all your rights'}",
            err=True,
        )


token_group.add_command(manage.token_list)
token_group.add_command(manage.token_revoke)
