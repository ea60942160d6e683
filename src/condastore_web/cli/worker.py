"""``condastore worker``: an RQ worker with condastore's settings, and the lost-build reaper."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import click
from rq import Worker

from condastore_core.errors import ConfigError
from condastore_core.jobs.reaper import Reaper
from condastore_core.jobs.rq_engine import QUEUE_KINDS, RQQueue, queue_name
from condastore_core.jobs.scheduler import Scheduler
from condastore_core.service.context import Context
from condastore_core.service.gc import remove_leftovers
from condastore_web.cli.common import config_option, data_dir_option, reports_errors, settings_from


@click.command("worker")
@click.option(
    "-q",
    "--queue",
    "kinds",
    multiple=True,
    type=click.Choice(QUEUE_KINDS),
    help="Kinds of work to serve (default: all).",
)
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
@click.option("--name", default=None, help="Worker name (default: host and process id).")
@data_dir_option
@config_option
@reports_errors
def worker_command(
    kinds: tuple[str, ...],
    burst: bool,
    name: str | None,
    data_dir: Path | None,
    config_file: Path | None,
) -> None:
    """Run builds from Redis (needs CONDASTORE_REDIS_URL); start as many as you like."""
    settings = settings_from(config_file, data_dir=data_dir)
    if not settings.redis_url:
        raise ConfigError("condastore worker needs a Redis URL (CONDASTORE_REDIS_URL)")
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    ctx = Context.from_settings(settings)
    engine = RQQueue(settings)
    ctx.jobs = engine
    remove_leftovers(ctx)  # of builds a previous worker on this machine was running
    queues = [engine.queue(k) for k in (kinds or QUEUE_KINDS)]
    worker = Worker(
        queues,
        connection=engine.redis,
        name=name or f"condastore-{socket.gethostname()}-{os.getpid()}",
    )
    click.echo(
        f"condastore worker {worker.name} serving "
        f"{', '.join(queue_name(k) for k in kinds or QUEUE_KINDS)}",
        err=True,
    )
    reaper = Reaper(ctx).start()
    scheduler = Scheduler(ctx, claim=engine.claim).start()
    try:
        worker.work(burst=burst, logging_level=settings.log_level)
    finally:
        scheduler.stop()
        reaper.stop()
