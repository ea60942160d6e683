"""``condastore keys rotate``: a new token signing key for every server of the installation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from condastore_web.cli.common import config_option, data_dir_option, reports_errors, settings_from


@click.group("keys")
def keys_group() -> None:
    """Token signing keys (run where the server's database is reachable)."""


@keys_group.command("rotate")
@data_dir_option
@config_option
@reports_errors
def rotate(data_dir: Path | None, config_file: Path | None) -> None:
    """Sign new tokens with a new key; older keys verify until their tokens have expired."""
    from condastore_core.auth.keys import DatabaseKeyRing
    from condastore_core.service.context import Context

    settings = settings_from(config_file, data_dir=data_dir)
    if settings.signing_key_path is not None:
        raise click.ClickException(
            f"tokens are signed with the key in {settings.signing_key_path}: "
            "replace that file on every machine to rotate it"
        )
    ctx = Context.from_settings(settings)
    ring = DatabaseKeyRing(ctx.engine, legacy_key_file=None)
    kid = ring.rotate(dt.timedelta(seconds=settings.max_token_lifetime_seconds))
    click.echo(f"tokens are now signed with key {kid}; servers pick it up within 30 s")
