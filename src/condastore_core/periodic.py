"""A round of background work repeated at an interval, in a daemon thread of its own.

Garbage collection, the reaper of lost builds and a worker's tidying of its
own disk run this way:
a failed round is logged and the next one tries again; ``stop`` ends the
thread between rounds.
"""

from __future__ import annotations

import logging
import threading
from typing import Self

logger = logging.getLogger(__name__)


class Periodic:
    """Calls :meth:`run_once` every ``interval`` seconds after :meth:`start` (never when 0)."""

    #: The thread's name, and what a failed round's log line calls the work.
    thread_name = "condastore-periodic"
    work = "periodic work"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)

    def start(self) -> Self:
        if self.interval > 0:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def run_once(self) -> object:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:  # the next round tries again
                logger.exception("%s failed", self.work)
