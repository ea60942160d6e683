"""The serving process's own engine: what it settles when it starts and while it runs."""

from __future__ import annotations

import time

from condastore_core.db.models import BuildStatus
from condastore_core.service import builds, environments
from condastore_core.service.context import Context
from condastore_core.service.namespaces import create_namespace
from condastore_core.service.runner import claim
from condastore_core.settings import load_settings
from condastore_core.spec import EnvironmentSpec
from condastore_web.runtime import start_services
from tests.support.gate import gate_env
from tests.support.packages import PackageDef
from tests.support.queues import HeldQueue


def test_a_build_whose_process_goes_silent_is_retried_by_the_serving_process(
    tmp_path, database_url, make_test_channel
):
    settings = load_settings(
        {
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "tarball": False,
            "build_lease_seconds": 1.5,
        },
        environ=gate_env(),
    )
    other = Context.from_settings(settings)  # another server's process on this database
    other.jobs = HeldQueue()
    channel = make_test_channel([PackageDef("hello", "1.0")])
    spec = EnvironmentSpec.from_dict(
        {"name": "web", "channels": [channel], "dependencies": ["hello"]}
    )
    create_namespace(other, "default", exist_ok=True)
    build_id = environments.submit(other, "default", spec).id
    assert claim(other, build_id, "another-machine:4242")  # running there, lease fresh

    ctx = start_services(settings)
    try:
        # Left alone at start (its lease is fresh), settled once its lease runs out.
        assert builds.get_build(ctx, build_id).status == BuildStatus.BUILDING
        deadline = time.monotonic() + 60
        while (build := builds.get_build(ctx, build_id)).status != BuildStatus.COMPLETED:
            assert build.status in (BuildStatus.BUILDING, BuildStatus.QUEUED), build.error
            assert time.monotonic() < deadline, build.status
            time.sleep(0.2)
        assert build.attempts == 2
    finally:
        for service in ctx.background:
            service.stop()
        ctx.jobs.shutdown(wait=True)
        ctx.engine.dispose()
        other.engine.dispose()


def test_a_reserved_watch_namespace_stops_the_start_with_the_reason(tmp_path):
    import pytest

    from condastore_core.errors import InvalidRequest

    (tmp_path / "specs").mkdir()
    settings = load_settings(
        {
            "data_dir": tmp_path / "data",
            "tarball": False,
            "watch_dirs": str(tmp_path / "specs"),
            "watch_namespace": "conda",
        },
        environ={},
    )
    with pytest.raises(InvalidRequest, match="'conda' is reserved"):
        start_services(settings)
