"""``condastore channels refresh``: every process of the installation fetches channels afresh."""

from __future__ import annotations

from pathlib import Path

import click

from condastore_web.cli.common import config_option, data_dir_option, reports_errors, settings_from


@click.group("channels")
def channels_group() -> None:
    """Channels of the installation (run where the server's data or Redis is reachable)."""


@channels_group.command("refresh")
@click.argument("channels", nargs=-1)
@data_dir_option
@config_option
@reports_errors
def refresh(channels: tuple[str, ...], data_dir: Path | None, config_file: Path | None) -> None:
    """Fetch CHANNELS (default: the configured ones) afresh at every process's next solve."""
    from condastore_core.solve import solver_for

    settings = settings_from(config_file, data_dir=data_dir)
    urls = solver_for(settings).refresh(list(channels or settings.channels))
    for url in urls:
        click.echo(f"{url}: refetched at the next solve of every server and worker")
