"""A shared environments directory: builds installed once, links on the current build."""

from __future__ import annotations

import grp
import os
import stat
import threading

import pytest

from condastore_core import envlinks, layout
from condastore_core.db.models import BuildStatus
from condastore_core.errors import ConfigError
from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.service import builds, environments, gc
from condastore_core.service.context import Context
from condastore_core.service.logs import read_log
from condastore_core.service.namespaces import create_namespace
from condastore_core.settings import load_settings
from condastore_core.spec import EnvironmentSpec
from tests.support.gate import gate_env
from tests.support.packages import PackageDef


def shared_ctx(database_url, tmp_path, **settings):
    values = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "tarball": False,
        "environments_dir": tmp_path / "shared",
        **settings,
    }
    context = Context.from_settings(load_settings(values, environ=gate_env()))
    context.jobs = InProcessQueue(context)
    create_namespace(context, "default")
    return context


@pytest.fixture
def sctx(database_url, tmp_path):
    context = shared_ctx(database_url, tmp_path)
    yield context
    context.jobs.shutdown(wait=True)
    context.engine.dispose()


def spec(channel, deps, name="app"):
    return EnvironmentSpec.from_dict({"name": name, "channels": [channel], "dependencies": deps})


def build_now(ctx, namespace, s):
    build = environments.submit(ctx, namespace, s)
    ctx.jobs.wait_idle(timeout=120)
    build = builds.get_build(ctx, build.id)
    assert build.status == BuildStatus.COMPLETED, build.error
    return build


def link_of(ctx, name, namespace="default"):
    return layout.environment_link(ctx.settings.environments_dir, namespace, name)


def shared_builds(ctx):
    root = layout.shared_builds_dir(ctx.settings.environments_dir)
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))


@pytest.mark.slow
def test_two_environments_of_one_lock_install_once_in_the_shared_directory(sctx, sample_channel):
    first = environments.submit(sctx, "default", spec(sample_channel, ["zstd"], "one"))
    second = environments.submit(sctx, "default", spec(sample_channel, ["zstd"], "two"))
    sctx.jobs.wait_idle(timeout=300)
    one, two = builds.get_build(sctx, first.id), builds.get_build(sctx, second.id)
    assert one.status == two.status == BuildStatus.COMPLETED
    assert one.build_key == two.build_key
    # One of them installed, the other reused it: one prefix, at the build key's path.
    assert {one.reused_build_id, two.reused_build_id} - {None} in ({one.id}, {two.id})
    assert shared_builds(sctx) == [one.build_key]
    prefix = layout.prefix_in(
        layout.shared_builds_dir(sctx.settings.environments_dir), one.build_key
    )
    assert not layout.prefix_dir(sctx.settings.data_dir, one.build_key).exists()
    for name in ("one", "two"):
        link = link_of(sctx, name)
        assert link.is_symlink() and link.resolve() == prefix.resolve()
        assert (link / "conda-meta").is_dir()
    installs = [read_log(sctx, b.id).text.count("installing ") for b in (one, two)]
    assert sorted(installs) == [0, 1]


@pytest.mark.slow
def test_link_follows_new_builds_and_rollback_without_ever_missing(sctx, make_test_channel):
    channel = make_test_channel(
        [PackageDef("hello", v, has_prefix_file=True) for v in ("1.0", "2.0")]
    )
    old = build_now(sctx, "default", spec(channel, ["hello ==1.0"]))
    link = link_of(sctx, "app")
    # Installed at its final path: a prefix embeds it, so it never moves afterwards.
    prefix = layout.prefix_in(
        layout.shared_builds_dir(sctx.settings.environments_dir), old.build_key
    )
    assert (link / "share/hello/prefix.txt").read_text() == f"installed in {prefix}\n"
    assert envlinks.current_key(sctx.settings.environments_dir, "default", "app") == old.build_key

    seen: set[str] = set()
    missing: list[int] = []
    stop = threading.Event()

    def read_link() -> None:  # a reader (a kernel starting, a cron job) all along
        while not stop.is_set():
            try:
                seen.add(os.readlink(link))
            except FileNotFoundError:
                missing.append(1)

    reader = threading.Thread(target=read_link)
    reader.start()
    try:
        new = build_now(sctx, "default", spec(channel, ["hello ==2.0"]))
        assert (link / "bin" / "hello").read_text().endswith("hello 2.0\n")
        for _ in range(20):  # switch back and forth while the reader reads
            environments.set_current_build(sctx, "default", "app", old.id)
            environments.set_current_build(sctx, "default", "app", new.id)
        environments.set_current_build(sctx, "default", "app", old.id)
    finally:
        stop.set()
        reader.join()
    assert missing == []
    assert seen == {f"../.builds/{old.build_key}", f"../.builds/{new.build_key}"}
    assert (link / "bin" / "hello").read_text().endswith("hello 1.0\n")
    assert os.readlink(link) == f"../.builds/{old.build_key}"  # relative: any mount point works
    assert not [p for p in link.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_deleting_an_environment_removes_its_link_and_gc_its_build(sctx, make_test_channel):
    channel = make_test_channel([PackageDef("hello", "1.0"), PackageDef("other", "1.0")])
    kept = build_now(sctx, "default", spec(channel, ["other"], "kept"))
    gone = build_now(sctx, "default", spec(channel, ["hello"], "gone"))
    assert sorted(shared_builds(sctx)) == sorted([kept.build_key, gone.build_key])

    environments.delete_environment(sctx, "default", "gone")
    assert not link_of(sctx, "gone").is_symlink() and not link_of(sctx, "gone").exists()
    assert link_of(sctx, "kept").is_symlink()

    dry = gc.collect(sctx, dry_run=True, grace_seconds=0)
    assert dry.shared_builds_removed == [gone.build_key]
    assert gone.build_key in shared_builds(sctx)  # a dry run removes nothing

    report = gc.collect(sctx, grace_seconds=0)
    assert report.shared_builds_removed == [gone.build_key]
    assert shared_builds(sctx) == [kept.build_key]
    assert (link_of(sctx, "kept") / "conda-meta").is_dir()
    assert gc.collect(sctx, dry_run=True, grace_seconds=0).shared_builds_removed == []


def test_gc_keeps_a_build_an_environment_links_to_even_without_its_rows(sctx, make_test_channel):
    channel = make_test_channel([PackageDef("hello", "1.0")])
    build = build_now(sctx, "default", spec(channel, ["hello"]))
    # Rows say nothing needs it (deleted by hand, say), but a link on disk still does.
    builds_root = layout.shared_builds_dir(sctx.settings.environments_dir)
    stray = builds_root / "0123456789abcdef"
    (stray / "conda-meta").mkdir(parents=True)
    report = gc.collect(sctx, grace_seconds=0)
    assert report.shared_builds_removed == ["0123456789abcdef"]
    assert build.build_key in shared_builds(sctx)


def test_namespace_directories_follow_the_group_mapping(database_url, tmp_path, make_test_channel):
    group = grp.getgrgid(os.getgid()).gr_name
    ctx = shared_ctx(database_url, tmp_path, environments_groups={"team": group})
    try:
        create_namespace(ctx, "team")
        channel = make_test_channel([PackageDef("hello", "1.0")])
        build_now(ctx, "team", spec(channel, ["hello"]))
        build_now(ctx, "default", spec(channel, ["hello"]))
        shared = ctx.settings.environments_dir
        team = layout.namespace_link_dir(shared, "team").stat()
        assert stat.S_IMODE(team.st_mode) == 0o2750
        assert team.st_gid == os.getgid()
        open_ns = layout.namespace_link_dir(shared, "default").stat()
        assert stat.S_IMODE(open_ns.st_mode) == 0o755
        builds_root = layout.shared_builds_dir(shared).stat()
        assert stat.S_IMODE(builds_root.st_mode) == 0o711
    finally:
        ctx.jobs.shutdown(wait=True)
        ctx.engine.dispose()


def test_a_mapping_to_a_missing_group_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no-such-group-here"):
        envlinks.ensure_namespace_dir(tmp_path, "team", "no-such-group-here")


@pytest.mark.parametrize("hostile", ["..", "../etc", "a/b", ".hidden", ""])
def test_link_paths_never_leave_the_directory(tmp_path, hostile):
    with pytest.raises(ValueError):
        layout.environment_link(tmp_path, hostile, "env")
    with pytest.raises(ValueError):
        layout.environment_link(tmp_path, "ns", hostile)
    with pytest.raises(ValueError):
        layout.environment_link_target(hostile)


def test_without_the_setting_nothing_is_linked(ctx, make_test_channel):
    channel = make_test_channel([PackageDef("hello", "1.0")])
    build = build_now(ctx, "default", spec(channel, ["hello"]))
    assert layout.prefix_dir(ctx.settings.data_dir, build.build_key).is_dir()


def test_gc_removes_half_installs_in_the_shared_directory_of_builds_not_running(
    sctx, make_test_channel
):
    channel = make_test_channel([PackageDef("hello", "1.0")])
    build = build_now(sctx, "default", spec(channel, ["hello"]))
    builds_root = layout.shared_builds_dir(sctx.settings.environments_dir)
    dead = builds_root / ".staging-0123456789abcdef-1a2b3c4d"
    (dead / "conda-meta").mkdir(parents=True)
    records = layout.shared_records_dir(sctx.settings.environments_dir)
    assert gc.collect(sctx, dry_run=True, grace_seconds=0).shared_builds_removed == [dead.name]
    assert dead.is_dir()
    assert gc.collect(sctx, grace_seconds=0).shared_builds_removed == [dead.name]
    assert not dead.exists() and records.is_dir()
    assert shared_builds(sctx) == [build.build_key]
