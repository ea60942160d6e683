"""Hostile packages on real ``condastore worker`` processes: the build fails, the worker goes on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from condastore_core.db.models import BuildStatus
from condastore_core.service import builds, environments
from condastore_core.spec import EnvironmentSpec
from tests.jobs.test_rq_workers import wait_for
from tests.support.hostile_packages import make_hostile_channel, outside_state
from tests.support.http_channel import serve_channel
from tests.support.packages import PackageDef, make_channel

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def spec(channel: str, name: str, *deps: str) -> EnvironmentSpec:
    return EnvironmentSpec.from_dict({"name": name, "channels": [channel], "dependencies": deps})


def installation_processes(data_dir: Path) -> set[int]:
    """Every process running with this installation's data directory (workers and below)."""
    marker = f"CONDASTORE_DATA_DIR={data_dir}".encode()
    found = set()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                found.add(int(environ.parent.name))
        except OSError:
            continue
    return found


def test_a_package_that_would_crash_the_installer_fails_its_build_and_the_worker_goes_on(
    rq_ctx, workers, tmp_path
):
    channel = make_hostile_channel(tmp_path / "channel", tmp_path / "outside", ["evil-abspath"])
    before = outside_state(tmp_path / "outside")
    worker = workers.start()
    evil = environments.submit(rq_ctx, "default", spec(channel, "crash", "evil-abspath"))
    ordinary = environments.submit(rq_ctx, "default", spec(channel, "ordinary", "tool"))
    failed = wait_for(rq_ctx, evil.id, "finished")
    assert failed.status == BuildStatus.FAILED
    assert failed.error.startswith(
        "package evil-abspath-1.0-0 holds a path outside the prefix: /"
    ), failed.error
    assert failed.attempts == 1  # failed at once, not retried after a lost lease
    assert wait_for(rq_ctx, ordinary.id, "finished").status == BuildStatus.COMPLETED
    assert worker.poll() is None, workers.log(worker)
    assert outside_state(tmp_path / "outside") == before


def test_cancel_kills_the_install_of_a_worker_at_once(rq_ctx, workers, service_env, tmp_path):
    root = tmp_path / "endless"
    make_channel(root, [PackageDef("slowpkg", "1.0")])
    worker = workers.start()
    data_dir = Path(service_env["CONDASTORE_DATA_DIR"])
    with serve_channel(root, delay=3600) as url:
        build = environments.submit(rq_ctx, "default", spec(url, "endless", "slowpkg"))
        deadline = time.monotonic() + 60
        while not (builds.get_build(rq_ctx, build.id).step or "").startswith("installing"):
            assert time.monotonic() < deadline, "the build never started installing"
            time.sleep(0.05)
        asked = time.monotonic()
        builds.cancel_build(rq_ctx, build.id)
        done = wait_for(rq_ctx, build.id, "finished", timeout=30)
        took = time.monotonic() - asked
        assert done.status == BuildStatus.CANCELED
        assert took < 5, f"canceled after {took:.2f} s"
        print(f"cancel of a running install on an RQ worker: CANCELED after {took:.2f} s")
        # Nothing of the build keeps running: only the worker itself is left.
        deadline = time.monotonic() + 10
        while installation_processes(data_dir) != {worker.pid}:
            assert time.monotonic() < deadline, installation_processes(data_dir)
            time.sleep(0.1)
    assert worker.poll() is None, workers.log(worker)
