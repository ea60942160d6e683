"""Periodic maintenance (garbage collection) in the serving process or on workers.

With Redis, a short lock makes one worker of the cluster run each round;
without it, the serving processes of one machine (gunicorn's workers) share a
claim file in the data directory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from condastore_core.periodic import Periodic
from condastore_core.service.context import Context
from condastore_core.service.gc import GRACE_SECONDS, collect

logger = logging.getLogger(__name__)


class Scheduler(Periodic):
    thread_name = "condastore-gc"
    work = "scheduled garbage collection"

    def __init__(
        self,
        ctx: Context,
        claim: Callable[[str, float], bool] | None = None,
        grace_seconds: float = GRACE_SECONDS,
    ) -> None:
        super().__init__(ctx.settings.gc_interval_hours * 3600)
        self.ctx = ctx
        self.grace_seconds = grace_seconds
        self._claim = claim

    def run_once(self) -> None:
        if self._claim is not None and not self._claim("gc", self.interval):
            return  # another worker runs this round
        report = collect(self.ctx, grace_seconds=self.grace_seconds)
        logger.info("scheduled gc: %s", report.to_json())
