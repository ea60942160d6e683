"""The distributed job engine: RQ queues on Redis, served by ``condastore worker`` processes.

Queues are named by kind of work (``condastore-build``...), so a worker can
serve some kinds only. RQ forks a work process per job, and that process runs
the package work in children of its own (:mod:`condastore_core.isolation`), so
a crash fails the build with its reason instead of losing the work process. A
running build is stopped by its work process, which sees the cancel and kills
its child, or by killing the work process (RQ's stop command; the child dies
with it); its lease then settles it as CANCELED.
"""

from __future__ import annotations

import logging
import time

from redis import Redis
from rq import Callback, Queue
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from condastore_core.settings import Settings

logger = logging.getLogger(__name__)

QUEUE_KINDS = ("build", "solve", "artifacts", "image")


def queue_name(kind: str) -> str:
    return f"condastore-{kind}"


class RQQueue:
    def __init__(self, settings: Settings, redis: Redis | None = None) -> None:
        if not settings.redis_url and redis is None:
            raise ValueError("the RQ engine needs redis_url")
        self.settings = settings
        self.redis = redis or Redis.from_url(settings.redis_url)  # type: ignore[arg-type]

    def queue(self, kind: str) -> Queue:
        return Queue(queue_name(kind), connection=self.redis)

    def enqueue_build(self, build_id: int) -> None:
        # Duplicates are harmless: a build runs only for the worker that claims it.
        self.queue("build").enqueue_call(
            "condastore_core.jobs.functions.build_job",
            args=(build_id,),
            timeout=int(self.settings.build_timeout_seconds),
            result_ttl=24 * 3600,
            failure_ttl=7 * 24 * 3600,
            description=f"build {build_id}",
            on_stopped=Callback("condastore_core.jobs.functions.build_stopped"),
        )

    def enqueue_pack(self, build_id: int) -> None:
        self.queue("artifacts").enqueue_call(
            "condastore_core.jobs.functions.pack_job",
            args=(build_id,),
            timeout=int(self.settings.build_timeout_seconds),
            result_ttl=24 * 3600,
            description=f"tarball of build {build_id}",
        )

    def enqueue_layers(
        self, job_id: str, lock_json: str, platform: str, names: list[str], image: dict[str, str]
    ) -> None:
        try:
            status = Job.fetch(job_id, connection=self.redis).get_status()
        except NoSuchJobError:
            status = None
        if status in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED):
            return  # another request's job: share it
        # Two servers may both get here; running a layer job twice is harmless.
        self.queue("image").enqueue_call(
            "condastore_core.jobs.functions.layers_job",
            args=(lock_json, platform, names, image),
            job_id=job_id,
            timeout=int(self.settings.build_timeout_seconds),
            result_ttl=3600,
            failure_ttl=24 * 3600,
            description=f"{len(names)} image layers for {platform}",
        )

    def layers_failure(self, job_id: str) -> str | None:
        try:
            job = Job.fetch(job_id, connection=self.redis)
        except NoSuchJobError:
            return None
        if job.get_status() not in (JobStatus.FAILED, JobStatus.STOPPED):
            return None
        result = job.latest_result()
        text = (result.exc_string if result is not None else None) or "the layer job failed"
        return text.strip().splitlines()[-1]

    def wait_layers(self, job_ids: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        ended = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)
        while True:
            statuses = [
                job.get_status(refresh=False) if job is not None else None
                for job in Job.fetch_many(job_ids, connection=self.redis)
            ]
            if all(status is None or status in ended for status in statuses):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def stop_build(self, build_id: int, worker: str | None) -> None:
        """Kill the work process running the build (``worker`` ends with its RQ job id)."""
        parts = (worker or "").split(":")
        if len(parts) != 3:
            return
        job_id = parts[2]
        try:
            send_stop_job_command(self.redis, job_id)
        except (InvalidJobOperation, NoSuchJobError) as exc:
            logger.info("job %s was not running: %s", job_id, exc)

    def claim(self, name: str, seconds: float) -> bool:
        """True for exactly one caller per ``seconds`` across the cluster."""
        return bool(
            self.redis.set(f"condastore:claim:{name}", "1", nx=True, ex=max(1, int(seconds * 0.9)))
        )

    def queue_depths(self) -> dict[str, int]:
        return {kind: self.queue(kind).count for kind in QUEUE_KINDS}

    def ping(self) -> None:
        self.redis.ping()

    def shutdown(self, wait: bool = True) -> None:
        self.redis.close()
