"""``condastore worker``: an RQ worker with condastore's settings, the lost-build reaper,
and the housekeeping of this machine's own disk."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

import click
from rq import Worker

from condastore_core.errors import ConfigError
from condastore_core.jobs.reaper import Reaper
from condastore_core.jobs.rq_engine import QUEUE_KINDS, RQQueue, queue_name
from condastore_core.jobs.scheduler import Scheduler
from condastore_core.service.context import Context
from condastore_core.service.gc import remove_leftovers
from condastore_core.service.machine import Housekeeper
from condastore_core.settings import Settings
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
    # RQ forks a work process per job, which reads its settings again: from here on.
    os.environ["CONDASTORE_DATA_DIR"] = str(settings.data_dir)
    if config_file is not None:
        os.environ["CONDASTORE_CONFIG"] = str(config_file)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    ctx = Context.from_settings(settings)
    engine = RQQueue(settings)
    ctx.jobs = engine
    remove_leftovers(ctx)  # of builds a previous worker on this machine was running
    queues = [engine.queue(k) for k in (kinds or QUEUE_KINDS)]
    worker = GuardedWorker(
        settings,
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
    housekeeper = Housekeeper(ctx).start()
    try:
        worker.work(burst=burst, logging_level=settings.log_level)
    finally:
        housekeeper.stop()
        scheduler.stop()
        reaper.stop()


class GuardedWorker(Worker):
    """Takes no job while this machine's disk is under the guard: the job waits in its
    queue for a worker that has room, and this one takes work again once it has."""

    #: How often a worker short of space looks again.
    RECHECK_SECONDS = 5.0

    def __init__(self, settings: Settings, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.settings = settings

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):  # type: ignore[no-untyped-def]
        from rq.exceptions import StopRequested

        from condastore_core.diskspace import shortfall

        reported = False
        while (problem := shortfall(self.settings)) is not None:
            if not reported:
                logging.getLogger(__name__).warning("taking no work: %s", problem)
                reported = True
            if self._stop_requested:
                raise StopRequested()
            self.heartbeat()
            time.sleep(self.RECHECK_SECONDS)
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
