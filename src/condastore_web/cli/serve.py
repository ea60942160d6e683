"""``condastore serve``: the production server (gunicorn, threaded workers) on any settings.

On the embedded defaults it is one command with nothing else to run (SQLite, a
local blob store, builds in background threads); in production the same
command gets more workers and a database and store from its settings.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from condastore_web.cli.common import config_option, data_dir_option, reports_errors, settings_from
from condastore_web.server import (
    DEFAULT_BUILD_THREADS,
    DEFAULT_THREADS,
    Server,
    ServerOptions,
    default_workers,
    limit_malloc_arenas,
    prepare,
)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(min=1),
    help="Server processes (default: one per CPU, at least 2, at most 8).",
)
@click.option(
    "--threads",
    default=DEFAULT_THREADS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Requests each server process answers at once.",
)
@click.option(
    "--build-threads",
    default=DEFAULT_BUILD_THREADS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Builds each server process runs at once (without Redis).",
)
@click.option(
    "--watch",
    "watch_dirs",
    multiple=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Keep every spec file under this directory as an environment (repeatable).",
)
@data_dir_option
@config_option
@reports_errors
def serve_command(
    host: str,
    port: int,
    workers: int | None,
    threads: int,
    build_threads: int,
    watch_dirs: tuple[Path, ...],
    data_dir: Path | None,
    config_file: Path | None,
) -> None:
    """Serve the API, the web UI and the registry: SQLite and a local store unless configured."""
    settings = settings_from(
        config_file, data_dir=data_dir, watch_dirs=[str(d) for d in watch_dirs] or None
    )
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    limit_malloc_arenas()
    prepare(settings)
    options = ServerOptions(
        host=host,
        port=port,
        workers=workers or default_workers(),
        threads=threads,
        build_threads=build_threads,
    )

    def announce(url: str) -> None:
        click.echo(
            f"condastore serving {url}/api/v1 (data in {settings.data_dir}; "
            f"{options.workers} workers x {options.threads} threads); Ctrl-C stops",
            err=True,
        )

    Server(settings, options, on_ready=announce).run()
