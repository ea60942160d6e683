"""Real Redis, real PostgreSQL and real ``condastore worker`` processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest
from redis import Redis

from condastore_core.jobs.rq_engine import RQQueue
from condastore_core.service.context import Context
from condastore_core.service.namespaces import create_namespace
from condastore_core.settings import load_settings
from tests.support.databases import postgres_database
from tests.support.gate import gate_env

REDIS_URL = os.environ.get("CONDASTORE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
LEASE_SECONDS = 3


@pytest.fixture
def redis_url():
    redis = Redis.from_url(REDIS_URL)
    try:
        redis.ping()
    except Exception as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
    redis.flushdb()
    yield REDIS_URL
    redis.flushdb()
    redis.close()


@pytest.fixture
def service_env(tmp_path, redis_url):
    """The settings every process of one installation shares, as CONDASTORE_* variables."""
    with postgres_database() as database_url:
        yield {
            "CONDASTORE_DATA_DIR": str(tmp_path / "data"),
            "CONDASTORE_DATABASE_URL": database_url,
            "CONDASTORE_REDIS_URL": redis_url,
            "CONDASTORE_TARBALL": "true",
            "CONDASTORE_BUILD_LEASE_SECONDS": str(LEASE_SECONDS),
            "CONDASTORE_BUILD_MAX_ATTEMPTS": "2",
            **gate_env(),
        }


@pytest.fixture
def rq_ctx(service_env):
    ctx = Context.from_settings(load_settings(environ=service_env))
    ctx.jobs = RQQueue(ctx.settings)
    create_namespace(ctx, "default")
    yield ctx
    ctx.engine.dispose()


class Workers:
    """Starts ``condastore worker`` processes, each in its own process group."""

    def __init__(self, env: dict[str, str], logs) -> None:  # type: ignore[no-untyped-def]
        self.env = {**os.environ, **env}
        self.logs = logs
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str) -> subprocess.Popen:
        log = open(self.logs / f"worker{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "condastore_web", "worker", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        while b"serving" not in (self.logs / f"worker{len(self.procs) - 1}.log").read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("condastore worker did not start:\n" + self.log(proc))
            time.sleep(0.1)
        return proc

    def log(self, proc: subprocess.Popen) -> str:
        return (self.logs / f"worker{self.procs.index(proc)}.log").read_text(errors="replace")

    def kill(self, proc: subprocess.Popen, work_process: int | None = None) -> None:
        """Like a machine lost: the worker and its work process, without any cleanup.

        RQ starts each work process in a session of its own, so it is killed by pid.
        """
        os.killpg(proc.pid, signal.SIGKILL)
        if work_process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(work_process, signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def workers(service_env, tmp_path):
    (tmp_path / "logs").mkdir()
    pool = Workers(service_env, tmp_path / "logs")
    yield pool
    pool.stop_all()
