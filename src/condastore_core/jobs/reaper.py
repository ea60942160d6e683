"""Periodically settle builds whose worker died, and queue their retries."""

from __future__ import annotations

import logging

from condastore_core.periodic import Periodic
from condastore_core.service.context import Context
from condastore_core.service.runner import reap_lost_builds

logger = logging.getLogger(__name__)


class Reaper(Periodic):
    thread_name = "condastore-reaper"
    work = "reaping lost builds"  # the next round tries again; never kill the worker for this

    def __init__(self, ctx: Context, interval: float | None = None) -> None:
        super().__init__(interval or max(0.5, ctx.settings.build_lease_seconds / 3))
        self.ctx = ctx

    def run_once(self) -> list[int]:
        requeued = reap_lost_builds(self.ctx)
        for build_id in requeued:
            if self.ctx.jobs is not None:
                self.ctx.jobs.enqueue_build(build_id)
        if requeued:
            logger.warning("requeued builds whose worker was lost: %s", requeued)
        return requeued
