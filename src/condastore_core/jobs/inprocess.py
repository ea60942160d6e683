"""The embedded job engine: a small thread pool inside the serving process.

Requests never wait for a build: they enqueue and return. A build id that is
already queued or running here is not submitted twice.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from condastore_core.service.context import Context
from condastore_core.service.runner import pack_build, run_build

logger = logging.getLogger(__name__)


class InProcessQueue:
    def __init__(self, ctx: Context, workers: int = 2) -> None:
        self._ctx = ctx
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="condastore-build")
        self._pending: dict[int, Future[object]] = {}
        self._lock = threading.Lock()

    def enqueue_build(self, build_id: int) -> None:
        with self._lock:
            if build_id in self._pending:
                return
            future = self._pool.submit(self._run, build_id)
            self._pending[build_id] = future

    def enqueue_pack(self, build_id: int) -> None:
        with self._lock:
            key = -build_id  # packs and builds of one id are different jobs
            if key not in self._pending:
                self._pending[key] = self._pool.submit(self._pack, build_id)

    def _pack(self, build_id: int) -> None:
        try:
            pack_build(self._ctx, build_id)
        except Exception:
            logger.exception("packing build %s crashed its job", build_id)
        finally:
            with self._lock:
                self._pending.pop(-build_id, None)

    def _run(self, build_id: int) -> None:
        try:
            run_build(self._ctx, build_id)
        except Exception:  # run_build records failures itself; this is a last resort
            logger.exception("build %s crashed its job", build_id)
        finally:
            with self._lock:
                self._pending.pop(build_id, None)

    def stop_build(self, build_id: int, worker: str | None) -> None:
        """Threads cannot be killed: the build sees its cancel flag at its next step."""

    def queue_depths(self) -> dict[str, int]:
        with self._lock:
            return {"in-process": len(self._pending)}

    def wait_idle(self, timeout: float | None = None) -> None:
        """Block until every submitted job, and any job those queued, has finished."""
        while True:
            with self._lock:
                futures = list(self._pending.values())
            if not futures:
                return
            for future in futures:
                future.result(timeout=timeout)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
