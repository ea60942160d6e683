"""``condastore user``: ``add`` writes straight into the server's database; the rest ask the API.

``user add`` is how the first administrator comes to be, before anyone can log
in; ``list``, ``disable``, ``delete`` and ``passwd`` go through the server
(``cli/manage.py``) like every other management command.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from condastore_web.cli import manage
from condastore_web.cli.common import (
    config_option,
    data_dir_option,
    read_password,
    reports_errors,
    settings_from,
)

if TYPE_CHECKING:
    from condastore_core.settings import Settings


@click.group("user")
def user_group() -> None:
    """Manage users: `add` in the server's database (where its data lives), the rest by API."""


@user_group.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Administrator of the whole installation.")
@click.option("--group", "groups", multiple=True, help="A group the user belongs to.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option(
    "--init",
    is_flag=True,
    help="Create the data directory's database if it has none yet (the first administrator).",
)
@data_dir_option
@config_option
@reports_errors
def user_add(
    name: str,
    admin: bool,
    groups: tuple[str, ...],
    password_stdin: bool,
    init: bool,
    data_dir: Path | None,
    config_file: Path | None,
) -> None:
    """Create user NAME (and their personal namespace NAME)."""
    from condastore_core.service.context import Context
    from condastore_core.service.users import create_user

    settings = settings_from(config_file, data_dir=data_dir)
    if not init:
        check_database_exists(settings)
    ctx = Context.from_settings(settings)
    create_user(ctx, name, read_password(password_stdin, True), admin=admin, groups=list(groups))
    click.echo(f"created user {name}{' (admin)' if admin else ''} and namespace {name}")


def check_database_exists(settings: Settings) -> None:
    """Refuse a data directory without a database: a mistyped path must not become a new store."""
    from condastore_core import layout
    from condastore_core.errors import ConfigError

    if settings.database_url is not None:
        return  # a configured server database exists or fails to connect on its own
    path = layout.sqlite_path(settings.data_dir)
    if not path.is_file():
        raise ConfigError(
            f"no condastore database in {settings.data_dir} (is the data directory right?); "
            "pass --init to create one there"
        )


for _command in (manage.user_list, manage.user_disable, manage.user_delete, manage.user_passwd):
    user_group.add_command(_command)
