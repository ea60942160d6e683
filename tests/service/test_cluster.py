"""Several machines over one PostgreSQL database, each with its own data directory.

Each ``Context`` here stands for a server or a worker on a machine of its own:
nothing on disk is shared, only the database and (for these tests) one blob
store directory, as an object store would be.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from sqlalchemy import select, update

from condastore_core.db.models import Build, BuildStatus, utcnow
from condastore_core.digests import Digest
from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.service import builds, environments, images
from condastore_core.service import registry as reg
from condastore_core.service.context import Context
from condastore_core.service.logs import read_log
from condastore_core.service.namespaces import create_namespace
from condastore_core.service.runner import pack_build, settle_stopped
from condastore_core.settings import load_settings
from condastore_core.spec import EnvironmentSpec
from condastore_core.store import read_all
from tests.service.test_gc import push_image
from tests.support.databases import postgres_database
from tests.support.gate import gate_settings
from tests.support.packages import PackageDef

pytestmark = pytest.mark.integration


@pytest.fixture
def machines(tmp_path):
    """A factory of contexts, one data directory each, over one PostgreSQL database."""
    made: list[Context] = []
    with postgres_database() as url:

        def machine(*, tarball: bool = True, jobs: bool = True) -> Context:
            settings = load_settings(
                {
                    "data_dir": tmp_path / f"machine{len(made)}",
                    "database_url": url,
                    "store_url": str(tmp_path / "object-store"),
                    "tarball": tarball,
                    **gate_settings(),
                },
                environ={},
            )
            ctx = Context.from_settings(settings)
            if jobs:
                ctx.jobs = InProcessQueue(ctx, workers=4)
            create_namespace(ctx, "default", exist_ok=True)
            made.append(ctx)
            return ctx

        yield machine
        for ctx in made:
            if isinstance(ctx.jobs, InProcessQueue):
                ctx.jobs.shutdown(wait=True)
            ctx.engine.dispose()


def spec(channel: str, name: str) -> EnvironmentSpec:
    return EnvironmentSpec.from_dict(
        {"name": name, "channels": [channel], "dependencies": ["hello", "libx"]}
    )


def artifact(ctx: Context, build_id: int, kind: str) -> str | None:
    found = {a.kind: a.digest for a in builds.get_build(ctx, build_id).artifacts}
    return found.get(kind)


def test_concurrent_pushes_of_one_tag_all_succeed_with_one_result(machines):
    ctx = machines(jobs=False)
    start = threading.Barrier(8)

    def push(_: int) -> str:
        start.wait()
        stored, _layer = push_image(ctx, "team/app", "v1", b"the same layer")
        return stored.digest

    with ThreadPoolExecutor(8) as pool:
        digests = set(pool.map(push, range(8)))
    assert len(digests) == 1
    assert reg.find_manifest(ctx, "team/app", "v1").digest == digests.pop()


def test_one_install_and_one_tarball_per_lock_across_machines(machines, make_test_channel):
    channel = make_test_channel([PackageDef("hello", "1.0"), PackageDef("libx", "1.0")])
    cluster = [machines(), machines()]
    start = threading.Barrier(6)

    def submit(i: int) -> int:
        start.wait()
        return environments.submit(cluster[i % 2], "default", spec(channel, f"env{i}")).id

    with ThreadPoolExecutor(6) as pool:
        ids = list(pool.map(submit, range(6)))
    for ctx in cluster:
        assert isinstance(ctx.jobs, InProcessQueue)
        ctx.jobs.wait_idle(timeout=120)
    ctx = cluster[0]
    assert {builds.get_build(ctx, b).status for b in ids} == {BuildStatus.COMPLETED}
    logs = [read_log(ctx, b).text for b in ids]
    assert sum("installing 2 packages" in text for text in logs) == 1
    assert len({artifact(ctx, b, "tarball") for b in ids}) == 1
    assert None not in {artifact(ctx, b, "tarball") for b in ids}
    # Reused builds carry their own environment's name in their environment.yaml.
    for i, build_id in enumerate(ids):
        digest = artifact(ctx, build_id, "yaml")
        assert digest is not None
        assert yaml.safe_load(read_all(ctx.store, Digest.parse(digest)))["name"] == f"env{i}"


def test_a_tarball_asked_for_on_a_machine_without_the_prefix_is_made_there(
    machines, make_test_channel
):
    channel = make_test_channel([PackageDef("hello", "1.0"), PackageDef("libx", "1.0")])
    builder = machines(tarball=False)
    build = environments.submit(builder, "default", spec(channel, "web"))
    assert isinstance(builder.jobs, InProcessQueue)
    builder.jobs.wait_idle(timeout=120)
    assert artifact(builder, build.id, "tarball") is None
    other = machines(jobs=False)
    assert pack_build(other, build.id)
    assert artifact(other, build.id, "tarball") is not None
    assert not builds.get_build(other, build.id).artifact_errors


def test_two_servers_making_one_image_at_once_agree(machines, make_test_channel):
    channel = make_test_channel([PackageDef("hello", "1.0"), PackageDef("libx", "1.0")])
    builder = machines(tarball=False)
    environments.submit(builder, "default", spec(channel, "web"))
    assert isinstance(builder.jobs, InProcessQueue)
    builder.jobs.wait_idle(timeout=120)
    servers = [machines(jobs=False) for _ in range(4)]
    start = threading.Barrier(len(servers))

    def pull(ctx: Context) -> str:
        start.wait()
        images.prepare(ctx, "default/web", "latest")
        return reg.find_manifest(ctx, "default/web", "latest").digest

    with ThreadPoolExecutor(len(servers)) as pool:
        digests = set(pool.map(pull, servers))
    assert len(digests) == 1


def test_a_build_stopped_from_outside_keeps_its_log(machines, make_test_channel):
    channel = make_test_channel([PackageDef("hello", "1.0"), PackageDef("libx", "1.0")])
    ctx = machines(jobs=False)
    build = environments.submit(ctx, "default", spec(channel, "web"))
    with ctx.sessions.begin() as session:
        session.execute(
            update(Build)
            .where(Build.id == build.id)
            .values(status=BuildStatus.BUILDING, cancel_requested=True, heartbeat_at=utcnow())
        )
    settle_stopped(ctx, build.id)
    done = builds.get_build(ctx, build.id)
    assert done.status == BuildStatus.CANCELED
    digest = artifact(ctx, build.id, "log")
    assert digest is not None
    assert b"stopped" in read_all(ctx.store, Digest.parse(digest))
    with ctx.sessions() as session:
        assert session.scalar(select(Build.status).where(Build.id == build.id)) == (
            BuildStatus.CANCELED
        )


def test_a_worker_tidies_its_own_disk_after_gc_ran_elsewhere(machines, make_test_channel):
    import dataclasses

    from condastore_core.locks import shared_file_lock
    from condastore_core.service import gc, policies
    from condastore_core.service.machine import tidy

    channel = make_test_channel([PackageDef("hello", v) for v in ("1.0", "2.0")])
    worker = machines(tarball=False)
    ids = []
    for version in ("1.0", "2.0"):
        one = EnvironmentSpec.from_dict(
            {"name": "app", "channels": [channel], "dependencies": [f"hello =={version}"]}
        )
        ids.append(environments.submit(worker, "default", one).id)
        assert isinstance(worker.jobs, InProcessQueue)
        worker.jobs.wait_idle(timeout=120)
    old, new = (builds.get_build(worker, i).build_key for i in ids)
    envs = worker.settings.data_dir / "envs"
    assert (envs / old).is_dir() and (envs / new).is_dir()

    policies.set_policy(worker, "default", {"max_builds_kept": 1})
    report = gc.collect(machines(jobs=False), grace_seconds=0)  # on another machine
    assert report.builds_collected == [ids[0]] and report.prefixes_removed == []
    assert (envs / old).is_dir()  # gc cannot reach this machine's disk

    pkgs = worker.settings.data_dir / "pkgs"
    cached = {p.name for p in pkgs.iterdir() if not p.name.startswith(".")}
    assert cached
    worker.settings = dataclasses.replace(worker.settings, package_cache_max_bytes=1)
    with shared_file_lock(worker.settings.data_dir / "locks" / "package-cache.lock"):
        busy = tidy(worker)  # an install is running here: the cache is left alone
    assert busy.prefixes_removed == [old] and busy.packages_removed == []
    assert not (envs / old).exists() and (envs / new).is_dir()
    done = tidy(worker)
    assert set(done.packages_removed) == cached and done.package_bytes_freed > 0
    assert not [p for p in pkgs.iterdir() if not p.name.startswith(".")]
