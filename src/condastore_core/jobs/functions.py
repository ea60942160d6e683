"""Job functions, importable by dotted path, so any RQ worker with our settings can run them.

Each call builds its own context from settings inside the work process (RQ
forks one per job), so no database connection crosses a fork.
"""

from __future__ import annotations

from condastore_core.service.context import Context
from condastore_core.settings import load_settings


def worker_context() -> Context:
    from condastore_core.jobs.rq_engine import RQQueue

    settings = load_settings()
    ctx = Context.from_settings(settings, migrate=False)
    if settings.redis_url:
        ctx.jobs = RQQueue(settings)
    return ctx


def build_job(build_id: int) -> str | None:
    """Run one build; returns its final status (or None if another worker took it)."""
    from rq import get_current_job

    from condastore_core.service.runner import run_build, worker_identity

    job = get_current_job()
    worker = f"{worker_identity()}:{job.id}" if job is not None else None
    status = run_build(worker_context(), build_id, worker=worker)
    return status.value if status is not None else None


def build_stopped(job, connection, *args) -> None:  # type: ignore[no-untyped-def]
    """RQ calls this in the worker once a build's work process was stopped (a cancel)."""
    from condastore_core.service.runner import settle_stopped

    build_id = int(job.args[0])
    settle_stopped(worker_context(), build_id)


def pack_job(build_id: int) -> bool:
    """Add the conda-pack tarball to a completed build (the artifacts queue)."""
    from condastore_core.service.runner import pack_build

    return pack_build(worker_context(), build_id)


def layers_job(lock_json: str, platform: str, names: list[str], image: dict[str, str]) -> int:
    """Build some missing layers of an image (the image queue); returns how many."""
    from condastore_core.lock import Lock
    from condastore_core.service.images import build_layers

    lock = Lock.model_validate_json(lock_json)
    return build_layers(worker_context(), lock, platform, names, **image)
