"""The embedded job engine: a small thread pool inside the serving process.

Requests never wait for a build: they enqueue and return. A build id that is
already queued or running here is not submitted twice.
"""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from condastore_core.lock import Lock
from condastore_core.service.context import Context
from condastore_core.service.images import build_layers
from condastore_core.service.runner import pack_build, run_build

logger = logging.getLogger(__name__)


class InProcessQueue:
    def __init__(self, ctx: Context, workers: int = 2) -> None:
        self._ctx = ctx
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="condastore-build")
        self._pending: dict[int, Future[None]] = {}
        self._lock = threading.Lock()
        # Image layers have a pool of their own: a pull never waits behind a long build.
        self._layer_pool = ThreadPoolExecutor(
            max_workers=max(1, ctx.settings.image_layer_jobs), thread_name_prefix="condastore-image"
        )
        self._layer_jobs: dict[str, Future[object]] = {}
        self._layer_errors: dict[str, str] = {}

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

    def enqueue_layers(
        self, job_id: str, lock_json: str, platform: str, names: list[str], image: dict[str, str]
    ) -> None:
        with self._lock:
            if job_id in self._layer_jobs:
                return
            self._layer_errors.pop(job_id, None)
            self._layer_jobs[job_id] = self._layer_pool.submit(
                self._layers, job_id, lock_json, platform, names, image
            )

    def _layers(
        self, job_id: str, lock_json: str, platform: str, names: list[str], image: dict[str, str]
    ) -> None:
        try:
            build_layers(self._ctx, Lock.model_validate_json(lock_json), platform, names, **image)
        except Exception as exc:
            logger.exception("image layer job %s failed", job_id)
            with self._lock:
                self._layer_errors[job_id] = str(exc) or type(exc).__name__
        finally:
            with self._lock:
                self._layer_jobs.pop(job_id, None)

    def layers_failure(self, job_id: str) -> str | None:
        with self._lock:
            return self._layer_errors.get(job_id)

    def wait_layers(self, job_ids: list[str], timeout: float) -> bool:
        with self._lock:
            running = [self._layer_jobs[j] for j in job_ids if j in self._layer_jobs]
        return not futures.wait(running, timeout=timeout).not_done

    def stop_build(self, build_id: int, worker: str | None) -> None:
        """Nothing to do: the thread running the build polls its cancel flag while a child
        process does the package work, and kills that child as soon as it is set."""

    def queue_depths(self) -> dict[str, int]:
        with self._lock:
            return {"in-process": len(self._pending), "in-process-image": len(self._layer_jobs)}

    def wait_idle(self, timeout: float | None = None) -> None:
        """Block until every submitted job (image layer jobs too), and any job those
        queued, has finished."""
        while True:
            with self._lock:
                futures: list[Future[Any]] = [*self._pending.values(), *self._layer_jobs.values()]
            if not futures:
                return
            for future in futures:
                future.result(timeout=timeout)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
        self._layer_pool.shutdown(wait=wait, cancel_futures=not wait)
