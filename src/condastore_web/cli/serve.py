"""``condastore serve``: the API (and later the UI and registry) on the embedded defaults."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from condastore_web.app import create_app
from condastore_web.cli.common import config_option, data_dir_option, reports_errors, settings_from
from condastore_web.runtime import start_services
from condastore_web.server import make_embedded_server


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option(
    "--workers", default=2, show_default=True, type=int, help="Builds run at once in this process."
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
    workers: int,
    watch_dirs: tuple[Path, ...],
    data_dir: Path | None,
    config_file: Path | None,
) -> None:
    """Run condastore in one process: SQLite, a local blob store, builds in the background."""
    settings = settings_from(
        config_file, data_dir=data_dir, watch_dirs=[str(d) for d in watch_dirs] or None
    )
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    ctx = start_services(settings, workers=workers)
    server = make_embedded_server(create_app(ctx), host, port)
    click.echo(
        f"condastore serving http://{host}:{server.server_port}/api/v1 "
        f"(data in {settings.data_dir}); Ctrl-C stops",
        err=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        for service in ctx.background:
            service.stop()
        if ctx.jobs is not None:
            ctx.jobs.shutdown(wait=False)
