"""Cluster locks on each backend: one holder at a time, across processes, and a dead
holder's lock is free again (connection gone, lease run out, flock dropped)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from redis import Redis
from sqlalchemy import create_engine

from condastore_core.clusterlock import FileLocks, PostgresLocks, RedisLocks, cluster_locks
from tests.support.databases import postgres_database

REDIS_URL = os.environ.get("CONDASTORE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
#: A child process that takes the lock, says so, and waits to be killed.
HOLDER = """
import sys, time
from pathlib import Path
from sqlalchemy import create_engine
from condastore_core.clusterlock import cluster_locks
kind, target = sys.argv[1], sys.argv[2]
if kind == "file":
    locks = cluster_locks(create_engine("sqlite://"), Path(target), None)
elif kind == "redis":
    locks = cluster_locks(create_engine("sqlite://"), Path("/nonexistent"), target, 1.0)
else:
    locks = cluster_locks(create_engine(target), Path("/nonexistent"), None)
with locks.hold("build:abc"):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture(params=["file", "redis", pytest.param("postgresql", marks=pytest.mark.integration)])
def backend(request, tmp_path):
    """(kind, what the child needs, a ClusterLocks of this process) for each backend."""
    if request.param == "file":
        yield "file", str(tmp_path), FileLocks(tmp_path)
    elif request.param == "redis":
        redis = Redis.from_url(REDIS_URL)
        try:
            redis.ping()
        except Exception as exc:
            pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
        redis.flushdb()
        yield "redis", REDIS_URL, RedisLocks(redis, lease_seconds=1.0)
        redis.flushdb()
    else:
        with postgres_database() as url:
            engine = create_engine(url)
            yield "postgresql", url, PostgresLocks(engine)
            engine.dispose()


def test_the_backend_follows_the_settings(tmp_path):
    with postgres_database() as url:
        engine = create_engine(url)
        assert isinstance(cluster_locks(engine, tmp_path, REDIS_URL), PostgresLocks)
        engine.dispose()
    sqlite = create_engine("sqlite://")
    assert isinstance(cluster_locks(sqlite, tmp_path, REDIS_URL), RedisLocks)
    assert isinstance(cluster_locks(sqlite, tmp_path, None), FileLocks)


def test_one_holder_at_a_time_and_waiters_take_turns(backend):
    _, _, locks = backend
    inside, overlaps = [0], []
    guard = threading.Lock()

    def work() -> None:
        with locks.hold("image:team/app:abc"):
            with guard:
                inside[0] += 1
                overlaps.append(inside[0])
            time.sleep(0.05)
            with guard:
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert overlaps == [1] * 6
    with locks.try_hold("image:team/app:abc") as held:
        assert held
        with locks.try_hold("image:team/app:abc") as again:
            assert not again
        with locks.try_hold("image:team/app:other") as other:
            assert other  # names do not share a lock


def test_a_waiter_can_give_up(backend):
    _, _, locks = backend

    class Canceled(Exception):
        pass

    def canceled() -> None:
        raise Canceled

    held_elsewhere = locks.hold("build:abc")
    with held_elsewhere, pytest.raises(Canceled), locks.hold("build:abc", waiting=canceled):
        pass
    with locks.try_hold("build:abc") as held:
        assert held  # giving up took nothing


def test_a_killed_holders_lock_is_free_again(backend):
    kind, target, locks = backend
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, kind, target], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with locks.try_hold("build:abc") as held:
            assert not held
        time.sleep(1.5)  # longer than a lease: a live holder keeps renewing it
        with locks.try_hold("build:abc") as held:
            assert not held
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 10
    while True:
        with locks.try_hold("build:abc") as held:
            if held:
                break
        assert time.monotonic() < deadline, "a dead holder's lock stayed taken"
        time.sleep(0.1)
