"""Start the service's collaborators for one process: database, store, job engine."""

from __future__ import annotations

import logging
from pathlib import Path

from condastore_core import layout
from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.jobs.reaper import Reaper
from condastore_core.jobs.rq_engine import RQQueue
from condastore_core.jobs.scheduler import Scheduler
from condastore_core.locks import claim_period
from condastore_core.service.context import Context
from condastore_core.service.gc import remove_leftovers
from condastore_core.service.namespaces import create_namespace
from condastore_core.service.runner import recover_interrupted
from condastore_core.service.watch import DirectoryWatcher
from condastore_core.settings import Settings

logger = logging.getLogger(__name__)

#: Every installation has this namespace; the CLI submits there unless told otherwise.
DEFAULT_NAMESPACE = "default"


def start_services(settings: Settings, *, workers: int = 2) -> Context:
    """Connect, migrate, and attach a job engine: RQ with a Redis URL, else in-process threads."""
    ctx = Context.from_settings(settings)
    create_namespace(ctx, DEFAULT_NAMESPACE, exist_ok=True)
    if settings.watch_dirs:  # a name it may not have stops the start, before any thread runs
        create_namespace(ctx, settings.watch_namespace, exist_ok=True)
    remove_leftovers(ctx)  # of builds a previous process was running when it stopped
    if settings.redis_url:
        ctx.jobs = RQQueue(settings)  # builds run on `condastore worker` processes
        _watch(ctx, settings)
        # Servers settle lost builds too: a cluster whose workers all died still
        # requeues their builds for the next worker to start.
        ctx.background.append(Reaper(ctx).start())
        return ctx
    # gunicorn's workers each run this engine: one of them runs each round of maintenance.
    ctx.background.append(
        Scheduler(ctx, claim=lambda name, seconds: _claim(settings, name, seconds)).start()
    )
    queue = InProcessQueue(ctx, workers=workers)
    _watch(ctx, settings)
    ctx.jobs = queue
    # A build whose process stopped renewing its lease (a sibling worker that died
    # after this one started, say) is settled and retried here, as RQ workers do.
    ctx.background.append(Reaper(ctx).start())
    requeued = recover_interrupted(ctx)
    for build_id in requeued:
        queue.enqueue_build(build_id)
    if requeued:
        logger.info("requeued %d builds left queued by a previous run", len(requeued))
    return ctx


def _claim(settings: Settings, name: str, seconds: float) -> bool:
    return claim_period(layout.claim_file_path(settings.data_dir, name), seconds)


def _watch(ctx: Context, settings: Settings) -> None:
    for directory in settings.watch_dirs:
        watcher = DirectoryWatcher(ctx, Path(directory), settings.watch_namespace)
        ctx.watchers.append(watcher.start())
