"""Builds on real ``condastore worker`` processes over Redis: shared work, lost workers, cancel."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from condastore_core.db.models import BuildStatus
from condastore_core.service import builds, environments
from condastore_core.service.logs import read_log
from condastore_core.spec import EnvironmentSpec
from tests.jobs.conftest import LEASE_SECONDS
from tests.support.http_channel import serve_channel
from tests.support.packages import PackageDef, make_channel

pytestmark = pytest.mark.integration


def spec(channel: str, name: str, *deps: str) -> EnvironmentSpec:
    return EnvironmentSpec.from_dict({"name": name, "channels": [channel], "dependencies": deps})


def wait_for(ctx, build_id, statuses, timeout=90.0):
    deadline = time.monotonic() + timeout
    while True:
        build = builds.get_build(ctx, build_id)
        if build.status in statuses or (statuses == "finished" and build.status.finished):
            return build
        if time.monotonic() > deadline:
            pytest.fail(f"build {build_id} still {build.status} (step {build.step!r})")
        time.sleep(0.2)


def installs(ctx, build_ids) -> int:
    return sum("installing" in read_log(ctx, b).text for b in build_ids)


@pytest.fixture
def slow_channel(tmp_path):
    root = tmp_path / "slow-channel"
    make_channel(root, [PackageDef(f"pkg{i}", "1.0") for i in range(6)])
    with serve_channel(root, delay=6.0) as url:  # downloads run in parallel: ~6 s a build
        yield url


@pytest.mark.slow
def test_concurrent_submissions_share_builds(rq_ctx, workers, sample_channel):
    workers.start()
    workers.start()
    specs = [
        spec(sample_channel, "zstd-env", "zstd"),
        spec(sample_channel, "xz-env", "xz"),
        spec(sample_channel, "ssl-env", "openssl"),
    ]
    with ThreadPoolExecutor(10) as pool:
        answered = list(
            pool.map(lambda i: environments.submit(rq_ctx, "default", specs[i % 3]).id, range(10))
        )
    assert len(set(answered)) == 3
    for build_id in set(answered):
        assert wait_for(rq_ctx, build_id, "finished").status == BuildStatus.COMPLETED
    assert installs(rq_ctx, set(answered)) == 3
    # The same lock under another name is reused, not installed again.
    again = environments.submit(rq_ctx, "default", spec(sample_channel, "zstd-again", "zstd"))
    done = wait_for(rq_ctx, again.id, "finished")
    assert done.reused_build_id in answered and installs(rq_ctx, [again.id]) == 0


@pytest.mark.slow
def test_a_lost_worker_is_detected_and_its_build_retried(rq_ctx, workers, slow_channel):
    first = workers.start()
    build = environments.submit(
        rq_ctx,
        "default",
        spec(slow_channel, "slow", "pkg0", "pkg1", "pkg2", "pkg3", "pkg4", "pkg5"),
    )
    running = wait_for(rq_ctx, build.id, {BuildStatus.BUILDING})
    time.sleep(1.5)  # into the downloads
    workers.kill(first, work_process=int(running.worker.split(":")[1]))
    killed_at = time.monotonic()
    workers.start()
    # Detected within the lease plus a reaper round: the build starts its second attempt.
    while builds.get_build(rq_ctx, build.id).attempts < 2:
        assert time.monotonic() - killed_at < LEASE_SECONDS * 2 + 30, "the lost worker went unseen"
        time.sleep(0.2)
    done = wait_for(rq_ctx, build.id, "finished", timeout=180)  # six slow downloads again
    assert done.status == BuildStatus.COMPLETED, done.error
    assert done.attempts == 2
    log = read_log(rq_ctx, build.id).text
    assert "no heartbeat" in log


@pytest.mark.slow
def test_cancel_a_running_build(rq_ctx, workers, slow_channel, service_env):
    workers.start()
    build = environments.submit(
        rq_ctx,
        "default",
        spec(slow_channel, "slow", "pkg0", "pkg1", "pkg2", "pkg3", "pkg4", "pkg5"),
    )
    running = wait_for(rq_ctx, build.id, {BuildStatus.BUILDING})
    time.sleep(1.5)
    lines_before_end = read_log(rq_ctx, build.id).text
    assert "solving" in lines_before_end  # the log streams while the build runs
    asked = time.monotonic()
    builds.cancel_build(rq_ctx, running.id)
    done = wait_for(rq_ctx, build.id, "finished", timeout=30)
    assert done.status == BuildStatus.CANCELED
    assert time.monotonic() - asked < 10
    assert {a.kind for a in done.artifacts} == {"log"}  # every build ends with its log
    envs = Path(service_env["CONDASTORE_DATA_DIR"]) / "envs"
    assert not list(envs.glob(f"*{done.build_key}*")) if envs.exists() else True


def test_queued_builds_wait_for_a_worker_of_their_kind(rq_ctx, workers, make_test_channel):
    channel = make_test_channel([PackageDef("hello", "1.0"), PackageDef("libx", "1.0")])
    queued = [
        environments.submit(rq_ctx, "default", spec(channel, n, n.removesuffix("-env")))
        for n in ("hello-env", "libx-env")
    ]
    artifacts_only = workers.start("--queue", "artifacts")
    time.sleep(2)
    assert {builds.get_build(rq_ctx, b.id).status for b in queued} == {BuildStatus.QUEUED}
    assert "build" not in workers.log(artifacts_only).split("serving", 1)[1].split("\n", 1)[0]
    workers.start("--queue", "build")
    for b in queued:
        assert wait_for(rq_ctx, b.id, "finished").status == BuildStatus.COMPLETED
    # The tarballs are made by the build's own job, where the prefix is.
    deadline = time.monotonic() + 60
    while not all(
        "tarball" in {a.kind for a in builds.get_build(rq_ctx, b.id).artifacts} for b in queued
    ):
        assert time.monotonic() < deadline, "the artifacts worker made no tarball"
        time.sleep(0.2)


def test_servers_in_redis_mode_requeue_lost_builds(rq_ctx, service_env, make_test_channel):
    import datetime as dt

    from sqlalchemy import update

    from condastore_core.db.models import Build, utcnow
    from condastore_core.settings import load_settings
    from condastore_web.runtime import start_services

    channel = make_test_channel([PackageDef("hello", "1.0")])
    build = environments.submit(rq_ctx, "default", spec(channel, "web", "hello"))
    long_ago = utcnow() - dt.timedelta(seconds=LEASE_SECONDS * 10)
    with rq_ctx.sessions.begin() as session:  # its worker died: no worker runs at all
        session.execute(
            update(Build)
            .where(Build.id == build.id)
            .values(status=BuildStatus.BUILDING, heartbeat_at=long_ago, attempts=1)
        )
    server = start_services(load_settings(environ=service_env))
    try:
        requeued = wait_for(rq_ctx, build.id, {BuildStatus.QUEUED}, timeout=LEASE_SECONDS * 5)
        assert "no heartbeat" in read_log(rq_ctx, requeued.id).text
    finally:
        for service in server.background:
            service.stop()
        server.engine.dispose()


def test_a_worker_short_of_disk_leaves_the_work_to_one_with_room(
    rq_ctx, service_env, tmp_path, make_test_channel
):
    from tests.jobs.conftest import Workers

    (tmp_path / "full-logs").mkdir()
    full = Workers(
        {
            **service_env,
            "CONDASTORE_DATA_DIR": str(tmp_path / "full"),
            "CONDASTORE_MIN_FREE_BYTES": str(1 << 60),  # more than any disk has
        },
        tmp_path / "full-logs",
    )
    (tmp_path / "room-logs").mkdir()
    room = Workers(
        {**service_env, "CONDASTORE_DATA_DIR": str(tmp_path / "room")}, tmp_path / "room-logs"
    )
    try:
        short = full.start()
        channel = make_test_channel([PackageDef("hello", "1.0")])
        build = environments.submit(rq_ctx, "default", spec(channel, "web", "hello"))
        time.sleep(3)
        assert builds.get_build(rq_ctx, build.id).status == BuildStatus.QUEUED
        assert "taking no work" in full.log(short)
        room.start()
        done = wait_for(rq_ctx, build.id, "finished")
        assert done.status == BuildStatus.COMPLETED
        assert (tmp_path / "room" / "envs" / done.build_key).is_dir()
        assert not (tmp_path / "full" / "envs").exists()
    finally:
        full.stop_all()
        room.stop_all()
