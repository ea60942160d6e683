"""Environment lifecycle through the service layer, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from condastore_core.db.models import BuildStatus
from condastore_core.digests import Digest
from condastore_core.errors import Conflict, InvalidRequest, NotFound
from condastore_core.lock import parse_conda_lock_yaml
from condastore_core.service import builds, environments, namespaces
from condastore_core.service.logs import read_log
from condastore_core.spec import EnvironmentSpec
from condastore_core.store import read_all
from tests.support.gate import gate_env
from tests.support.packages import PackageDef


def spec(channel: str, *deps: str, name: str = "web") -> EnvironmentSpec:
    return EnvironmentSpec.from_dict({"name": name, "channels": [channel], "dependencies": deps})


def build_and_wait(ctx, ns, s, **kw):
    build = environments.submit(ctx, ns, s, **kw)
    ctx.jobs.wait_idle(timeout=120)
    return builds.get_build(ctx, build.id)


@pytest.fixture
def channel(make_test_channel):
    return make_test_channel(
        [
            PackageDef("hello", "1.0"),
            PackageDef("hello", "2.0"),
            PackageDef("libx", "1.0"),
            PackageDef("broken", "1.0", depends=["missing-dependency"]),
        ]
    )


def test_first_completed_build_becomes_current_with_artifacts(ctx, channel):
    build = build_and_wait(ctx, "default", spec(channel, "hello 1.0", "libx"))
    assert build.status == BuildStatus.COMPLETED, build.error
    assert {a.kind for a in build.artifacts} == {"yaml", "lockfile", "explicit", "log"}
    env = environments.get_environment(ctx, "default", "web")
    assert env.current_build_id == build.id
    lockfile = next(a for a in build.artifacts if a.kind == "lockfile")
    lock = parse_conda_lock_yaml(read_all(ctx.store, Digest.parse(lockfile.digest)))
    assert lock.lock_hash == build.lock_hash
    names = {(p.name, p.version) for p in builds.build_packages(ctx, build.id)}
    assert names == {("hello", "1.0"), ("libx", "1.0")}
    text = read_log(ctx, build.id).text
    assert "build completed" in text and "linking hello" in text


def test_failure_never_replaces_the_current_build(ctx, channel):
    good = build_and_wait(ctx, "default", spec(channel, "hello 1.0"))
    bad = build_and_wait(ctx, "default", spec(channel, "broken"))
    assert bad.status == BuildStatus.FAILED
    assert "missing-dependency" in bad.error
    assert environments.get_environment(ctx, "default", "web").current_build_id == good.id
    assert "missing-dependency" in read_log(ctx, bad.id).text
    assert [a.kind for a in bad.artifacts] == ["log"]


def test_later_build_becomes_current_and_rollback_returns(ctx, channel):
    first = build_and_wait(ctx, "default", spec(channel, "hello 1.0"))
    second = build_and_wait(ctx, "default", spec(channel, "hello 2.0"))
    assert environments.get_environment(ctx, "default", "web").current_build_id == second.id
    env = environments.set_current_build(ctx, "default", "web", first.id)
    assert env.current_build_id == first.id
    changes = environments.diff_builds(ctx, "default", "web", first.id, second.id)
    assert [(c.name, c.old, c.new) for c in changes] == [("hello", "1.0 0", "2.0 0")]


def test_rollback_to_a_failed_build_is_refused_and_changes_nothing(ctx, channel):
    good = build_and_wait(ctx, "default", spec(channel, "hello 1.0"))
    bad = build_and_wait(ctx, "default", spec(channel, "broken"))
    with pytest.raises(Conflict, match="FAILED"):
        environments.set_current_build(ctx, "default", "web", bad.id)
    assert environments.get_environment(ctx, "default", "web").current_build_id == good.id


def test_same_lock_reuses_the_completed_builds_artifacts(ctx, channel):
    first = build_and_wait(ctx, "default", spec(channel, "hello 1.0", name="one"))
    second = build_and_wait(ctx, "default", spec(channel, "hello ==1.0", name="two"))
    assert second.status == BuildStatus.COMPLETED
    assert second.reused_build_id == first.id
    digests = lambda b: {a.kind: a.digest for a in b.artifacts if a.kind != "log"}  # noqa: E731
    assert digests(first).keys() == digests(second).keys()
    assert digests(first)["explicit"] == digests(second)["explicit"]  # the same packages
    # ... described as each build's own spec: its name, its spec hash.
    yaml_two = read_all(ctx.store, Digest.parse(digests(second)["yaml"])).decode()
    assert "name: two" in yaml_two and "name: one" not in yaml_two


def test_duplicate_submission_shares_the_queued_build(ctx, channel):
    ctx.jobs, queue = None, ctx.jobs  # hold builds in the queue
    a = environments.submit(ctx, "default", spec(channel, "hello"))
    b = environments.submit(ctx, "default", spec(channel, "hello"))
    assert a.id == b.id
    ctx.jobs = queue


def test_cancel_a_queued_build(ctx, channel):
    ctx.jobs, queue = None, ctx.jobs
    build = environments.submit(ctx, "default", spec(channel, "hello"))
    canceled = builds.cancel_build(ctx, build.id)
    assert canceled.status == BuildStatus.CANCELED
    queue.enqueue_build(build.id)  # a late job must not resurrect it
    queue.wait_idle(timeout=60)
    assert builds.get_build(ctx, build.id).status == BuildStatus.CANCELED
    with pytest.raises(Conflict):
        builds.cancel_build(ctx, build.id)
    ctx.jobs = queue


def test_delete_hides_the_environment_and_its_builds(ctx, channel):
    build = build_and_wait(ctx, "default", spec(channel, "hello"))
    environments.delete_environment(ctx, "default", "web")
    with pytest.raises(NotFound):
        environments.get_environment(ctx, "default", "web")
    assert environments.list_environments(ctx).items == []
    assert builds.list_builds(ctx).items == []
    with pytest.raises(NotFound):
        builds.get_build(ctx, build.id)


def test_lists_filter_search_and_paginate(ctx, channel):
    namespaces.create_namespace(ctx, "team")
    for i in range(3):
        build_and_wait(ctx, "team", spec(channel, "hello 1.0", name=f"env{i}"))
    build_and_wait(ctx, "default", spec(channel, "libx", name="other"))
    page = environments.list_environments(ctx, namespace="team", limit=2)
    assert [e.name for e in page.items] == ["env2", "env1"]
    rest = environments.list_environments(ctx, namespace="team", limit=2, cursor=page.next_cursor)
    assert [e.name for e in rest.items] == ["env0"] and rest.next_cursor is None
    assert [e.name for e in environments.list_environments(ctx, search="OTH").items] == ["other"]
    assert len(builds.list_builds(ctx, package="hello").items) == 3
    assert len(builds.list_builds(ctx, package="libx", status="completed").items) == 1
    with pytest.raises(InvalidRequest):
        builds.list_builds(ctx, status="sleeping")


def test_unknown_namespace_and_bad_names(ctx, channel):
    with pytest.raises(NotFound, match="nowhere"):
        environments.submit(ctx, "nowhere", spec(channel, "hello"))
    with pytest.raises(InvalidRequest):
        namespaces.create_namespace(ctx, "Bad Name")
    with pytest.raises(Conflict):
        namespaces.create_namespace(ctx, "default")


def test_tarball_is_made_by_a_job_of_its_own(database_url, tmp_path, channel):
    import tarfile

    from condastore_core.jobs.inprocess import InProcessQueue
    from condastore_core.service.context import Context
    from condastore_core.settings import load_settings

    settings = load_settings(
        {"data_dir": tmp_path / "packing", "database_url": database_url, "tarball": True},
        environ=gate_env(),
    )
    context = Context.from_settings(settings)
    context.jobs = InProcessQueue(context)
    namespaces.create_namespace(context, "default")
    build = build_and_wait(context, "default", spec(channel, "hello 1.0"))
    kinds = {a.kind: a for a in build.artifacts}
    assert "tarball" in kinds, read_log(context, build.id).text
    path = context.store.local_path(Digest.parse(kinds["tarball"].digest))
    with tarfile.open(path) as tf:
        names = tf.getnames()
    assert "bin/hello" in names and any(n.startswith("conda-meta/hello-1.0") for n in names)
    assert "tarball:" in read_log(context, build.id).text
    log = read_all(context.store, Digest.parse(kinds["log"].digest)).decode()
    assert "tarball:" in log  # the stored log tells of the packing too
    context.jobs.shutdown()


def test_a_finished_build_that_is_not_current_can_be_deleted(ctx, channel):
    old = build_and_wait(ctx, "default", spec(channel, "hello 1.0"))
    new = build_and_wait(ctx, "default", spec(channel, "hello 2.0"))
    with pytest.raises(Conflict, match="current build"):
        builds.delete_build(ctx, new.id)
    builds.delete_build(ctx, old.id)
    with pytest.raises(NotFound):
        builds.get_build(ctx, old.id)
    assert [b.id for b in builds.list_builds(ctx).items] == [new.id]
    assert environments.get_environment(ctx, "default", "web").current_build_id == new.id


def test_a_description_changes_without_a_build(ctx, channel):
    build_and_wait(ctx, "default", spec(channel, "hello 1.0"))
    env = environments.set_description(ctx, "default", "web", "the team's web stack")
    assert env.description == "the team's web stack"
    assert len(builds.list_builds(ctx).items) == 1
    with pytest.raises(InvalidRequest):
        environments.set_description(ctx, "default", "web", "x" * 5000)
    with pytest.raises(NotFound):
        environments.set_description(ctx, "default", "nope", "")


def test_the_description_is_the_current_builds_after_a_rollback(ctx, channel):
    def described(text, *deps):
        data = {"name": "web", "channels": [channel], "dependencies": deps, "description": text}
        return EnvironmentSpec.from_dict(data)

    first = build_and_wait(ctx, "default", described("hello one", "hello 1.0"))
    assert environments.get_environment(ctx, "default", "web").description == "hello one"
    broken = environments.submit(ctx, "default", described("broken", "broken"))
    ctx.jobs.wait_idle(timeout=120)
    assert builds.get_build(ctx, broken.id).status == BuildStatus.FAILED
    # A failed build never became current: the page still describes what is there.
    assert environments.get_environment(ctx, "default", "web").description == "hello one"
    second = build_and_wait(ctx, "default", described("hello two", "hello 2.0"))
    assert second.status == BuildStatus.COMPLETED
    assert environments.get_environment(ctx, "default", "web").description == "hello two"
    environments.set_current_build(ctx, "default", "web", first.id)
    assert environments.get_environment(ctx, "default", "web").description == "hello one"


def test_the_package_filter_looks_at_current_builds_across_pages(ctx, channel):
    for i in range(3):
        build_and_wait(ctx, "default", spec(channel, "libx", name=f"with{i}"))
    build_and_wait(ctx, "default", spec(channel, "hello", name="without"))
    # "moved" held libx once; its current build no longer does.
    build_and_wait(ctx, "default", spec(channel, "libx", name="moved"))
    build_and_wait(ctx, "default", spec(channel, "hello", name="moved"))

    def names(**kw):
        return {e.name for e in environments.list_environments(ctx, **kw).items}

    assert names(package="libx") == {"with0", "with1", "with2"}
    first = environments.list_environments(ctx, package="libx", limit=2)
    assert len(first.items) == 2 and first.next_cursor
    rest = environments.list_environments(ctx, package="libx", limit=2, cursor=first.next_cursor)
    assert {e.name for e in first.items + rest.items} == {"with0", "with1", "with2"}
    assert rest.next_cursor is None


def test_a_policy_for_a_namespace_that_does_not_exist_is_refused(ctx):
    from condastore_core.service import policies

    with pytest.raises(NotFound, match="'nowhere'"):
        policies.set_policy(ctx, "nowhere", {"allowed_channels": ["conda-forge"]})
    with pytest.raises(NotFound):
        policies.set_policy(ctx, "nowhere/env", {"required_packages": ["zlib"]})
    policies.set_policy(ctx, "default/env", {"required_packages": ["zlib"]})
    assert [scope for scope, _ in policies.list_policies(ctx)] == ["default/env"]
