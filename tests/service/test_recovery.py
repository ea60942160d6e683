"""Recovery when an in-process engine starts beside others (gunicorn workers on one database)."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys

import pytest
from sqlalchemy import update

from condastore_core.db.models import Build, BuildStatus, utcnow
from condastore_core.service import builds, environments
from condastore_core.service.runner import claim, recover_interrupted
from condastore_core.spec import EnvironmentSpec
from tests.support.packages import PackageDef
from tests.support.queues import HeldQueue


@pytest.fixture
def held(ctx, make_test_channel):
    ctx.jobs.shutdown(wait=True)
    ctx.jobs = HeldQueue()
    channel = make_test_channel([PackageDef("hello", "1.0")])

    def submit(name: str) -> int:
        spec = {"name": name, "channels": [channel], "dependencies": ["hello"]}
        return environments.submit(ctx, "default", EnvironmentSpec.from_dict(spec)).id

    return submit


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_builds_of_gone_processes_are_failed(ctx, held, live_pid):
    host = socket.gethostname()
    sibling, gone, elsewhere, silent, waiting = (held(n) for n in "abcde")
    assert claim(ctx, sibling, f"{host}:{live_pid}")
    assert claim(ctx, gone, f"{host}:{dead_pid()}")
    assert claim(ctx, elsewhere, "another-machine:4242")
    assert claim(ctx, silent, "another-machine:4343")
    with ctx.sessions.begin() as session:  # the last one stopped renewing its lease
        stale = utcnow() - dt.timedelta(seconds=ctx.settings.build_lease_seconds + 5)
        session.execute(update(Build).where(Build.id == silent).values(heartbeat_at=stale))

    assert recover_interrupted(ctx) == [waiting]

    status = {b: builds.get_build(ctx, b).status for b in (sibling, gone, elsewhere, silent)}
    assert status == {
        sibling: BuildStatus.BUILDING,
        gone: BuildStatus.FAILED,
        elsewhere: BuildStatus.BUILDING,
        silent: BuildStatus.FAILED,
    }
    assert "server stopped" in builds.get_build(ctx, gone).error
