"""``condastore user add``: accounts written straight into the server's database."""

from __future__ import annotations

from pathlib import Path

import click

from condastore_core.service.context import Context
from condastore_core.service.users import create_user
from condastore_web.cli.common import (
    config_option,
    data_dir_option,
    read_password,
    reports_errors,
    settings_from,
)


@click.group("user")
def user_group() -> None:
    """Manage users directly in the server's database (run where the server's data lives)."""


@user_group.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Administrator of the whole installation.")
@click.option("--group", "groups", multiple=True, help="A group the user belongs to.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@data_dir_option
@config_option
@reports_errors
def user_add(
    name: str,
    admin: bool,
    groups: tuple[str, ...],
    password_stdin: bool,
    data_dir: Path | None,
    config_file: Path | None,
) -> None:
    """Create user NAME (and their personal namespace NAME)."""
    ctx = Context.from_settings(settings_from(config_file, data_dir=data_dir))
    create_user(ctx, name, read_password(password_stdin, True), admin=admin, groups=list(groups))
    click.echo(f"created user {name}{' (admin)' if admin else ''} and namespace {name}")
