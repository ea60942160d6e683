"""Periodic maintenance (garbage collection) in the serving process or on workers.

With Redis, a short lock makes one worker of the cluster run each round;
without it, the serving processes of one machine (gunicorn's workers) share a
claim file in the data directory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from condastore_core.service.context import Context
from condastore_core.service.gc import GRACE_SECONDS, collect

logger = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        ctx: Context,
        claim: Callable[[str, float], bool] | None = None,
        grace_seconds: float = GRACE_SECONDS,
    ) -> None:
        self.ctx = ctx
        self.grace_seconds = grace_seconds
        self.interval = ctx.settings.gc_interval_hours * 3600
        self._claim = claim
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="condastore-gc", daemon=True)

    def start(self) -> Scheduler:
        if self.interval > 0:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def run_once(self) -> None:
        if self._claim is not None and not self._claim("gc", self.interval):
            return  # another worker runs this round
        report = collect(self.ctx, grace_seconds=self.grace_seconds)
        logger.info("scheduled gc: %s", report.to_json())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:  # the next round tries again
                logger.exception("scheduled garbage collection failed")
