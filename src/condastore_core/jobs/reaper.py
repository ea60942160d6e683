"""Periodically settle builds whose worker died, and queue their retries."""

from __future__ import annotations

import logging
import threading

from condastore_core.service.context import Context
from condastore_core.service.runner import reap_lost_builds

logger = logging.getLogger(__name__)


class Reaper:
    def __init__(self, ctx: Context, interval: float | None = None) -> None:
        self.ctx = ctx
        self.interval = interval or max(0.5, ctx.settings.build_lease_seconds / 3)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="condastore-reaper", daemon=True)

    def start(self) -> Reaper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def run_once(self) -> list[int]:
        requeued = reap_lost_builds(self.ctx)
        for build_id in requeued:
            if self.ctx.jobs is not None:
                self.ctx.jobs.enqueue_build(build_id)
        if requeued:
            logger.warning("requeued builds whose worker was lost: %s", requeued)
        return requeued

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:  # the next round tries again; never kill the worker for this
                logger.exception("reaping lost builds failed")
