"""Watched spec directories: environments follow their files, through real inotify events."""

from __future__ import annotations

import threading
import time

import yaml
from sqlalchemy import func, select

from condastore_core.db.models import Build, BuildStatus
from condastore_core.errors import NotFound
from condastore_core.service import builds, environments
from condastore_core.service.context import Context
from condastore_core.service.watch import DirectoryWatcher, SyncReport, sync_directory
from tests.support.packages import PackageDef
from tests.support.queues import HeldQueue


def write(path, channel, name, *deps):
    path.write_text(
        yaml.safe_dump({"name": name, "channels": [channel], "dependencies": list(deps)})
    )


def eventually(check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except NotFound:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the watched directory was not followed in time")
        time.sleep(0.2)


def test_sync_follows_files_and_never_rebuilds_unchanged_specs(ctx, make_test_channel, tmp_path):
    channel = make_test_channel([PackageDef("hello", "1.0"), PackageDef("hello", "2.0")])
    specs = tmp_path / "specs"
    specs.mkdir()
    write(specs / "a.yml", channel, "alpha", "hello 1.0")
    write(specs / "b.yaml", channel, "beta", "hello")
    first = sync_directory(ctx, specs, "filesystem")
    assert sorted(first.submitted) == ["alpha", "beta"] and first.errors == {}
    ctx.jobs.wait_idle(timeout=60)
    again = sync_directory(ctx, specs, "filesystem")
    assert again.submitted == [] and sorted(again.unchanged) == ["alpha", "beta"]
    (specs / "broken.yml").write_text("name: gamma\ndependencies: [\n")
    write(specs / "a.yml", channel, "alpha", "hello 2.0")
    (specs / "b.yaml").unlink()
    changed = sync_directory(ctx, specs, "filesystem")
    assert changed.submitted == ["alpha"] and changed.archived == ["beta"]
    assert list(changed.errors) == [str(specs / "broken.yml")]
    ctx.jobs.wait_idle(timeout=60)
    env = environments.get_environment(ctx, "filesystem", "alpha")
    assert builds.build_packages(ctx, env.current_build_id)[0].version == "2.0"


def test_the_watcher_reacts_to_inotify_events(ctx, make_test_channel, tmp_path):
    channel = make_test_channel([PackageDef("hello", "1.0"), PackageDef("hello", "2.0")])
    specs = tmp_path / "watched"
    specs.mkdir()
    watcher = DirectoryWatcher(ctx, specs, "filesystem").start()
    try:
        assert watcher.synced.wait(10)
        write(specs / "env.yml", channel, "live", "hello 1.0")

        def built(version):
            ctx.jobs.wait_idle(timeout=60)
            env = environments.get_environment(ctx, "filesystem", "live")
            current = builds.get_build(ctx, env.current_build_id) if env.current_build_id else None
            return (
                current is not None
                and current.status == BuildStatus.COMPLETED
                and builds.build_packages(ctx, current.id)[0].version == version
            )

        eventually(lambda: built("1.0"))
        write(specs / "env.yml", channel, "live", "hello 2.0")
        eventually(lambda: built("2.0"))
        (specs / "env.yml").unlink()

        def archived():
            try:
                environments.get_environment(ctx, "filesystem", "live")
            except NotFound:
                return True
            return False

        eventually(archived)
    finally:
        watcher.stop()


def test_the_api_lists_watched_directories_and_their_broken_files(ctx, make_test_channel, tmp_path):
    from falcon import testing

    from condastore_core.service.users import create_user, issue_token
    from condastore_web.app import create_app

    channel = make_test_channel([PackageDef("hello", "1.0")])
    specs = tmp_path / "specs"
    specs.mkdir()
    write(specs / "ok.yml", channel, "fine", "hello")
    (specs / "bad.yml").write_text("name: [\n")
    watcher = DirectoryWatcher(ctx, specs, "filesystem")
    watcher.sync()
    ctx.watchers.append(watcher)
    create_user(ctx, "root", "a long password", admin=True)
    client = testing.TestClient(
        create_app(ctx), headers={"Authorization": f"Bearer {issue_token(ctx, 'root').token}"}
    )
    [item] = client.simulate_get("/api/v1/watched").json["items"]
    assert item["environments"] == ["fine"]
    assert list(item["errors"]) == [str(specs / "bad.yml")]


def test_the_admin_page_shows_broken_watched_files(ctx, make_test_channel, tmp_path):
    from falcon import testing

    from condastore_core.service.users import create_user, issue_token
    from condastore_web.app import create_app

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "bad.yml").write_text("name: [\n")
    watcher = DirectoryWatcher(ctx, specs, "filesystem")
    watcher.sync()
    ctx.watchers.append(watcher)
    create_user(ctx, "root", "a long password", admin=True)
    client = testing.TestClient(
        create_app(ctx), headers={"Authorization": f"Bearer {issue_token(ctx, 'root').token}"}
    )
    page = client.simulate_get("/ui/admin").text
    assert "bad.yml" in page and "Watched spec directories" in page


def test_server_processes_watching_one_directory_take_turns(ctx, make_test_channel, tmp_path):
    """Each process of ``condastore serve`` watches: a change is synced once, never raced."""
    channel = make_test_channel([PackageDef("hello", "1.0")])
    specs = tmp_path / "specs"
    specs.mkdir()
    names = [f"env{i}" for i in range(8)]
    for name in names:
        write(specs / f"{name}.yml", channel, name, "hello")
    ctx.jobs = HeldQueue()
    other = Context.from_settings(ctx.settings)  # a second server process on this machine
    other.jobs = HeldQueue()
    watchers = [DirectoryWatcher(c, specs, "filesystem") for c in (ctx, other)]
    reports: list[SyncReport] = []
    failures: list[BaseException] = []

    def sync_together() -> None:
        barrier = threading.Barrier(len(watchers))

        def one(watcher: DirectoryWatcher) -> None:
            barrier.wait()
            try:
                reports.append(watcher.sync())
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=one, args=(w,)) for w in watchers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    try:
        sync_together()
        for name in names[:4]:
            (specs / f"{name}.yml").unlink()
        sync_together()
    finally:
        other.engine.dispose()
    assert failures == []
    assert sorted(n for r in reports for n in r.submitted) == sorted(names)
    assert sorted(n for r in reports for n in r.archived) == sorted(names[:4])
    with ctx.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Build)) == len(names)


def test_a_yaml_bomb_in_a_watched_directory_is_reported_not_expanded(ctx, tmp_path):
    from tests.core.test_bounded import yaml_bomb

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "bomb.yml").write_text(yaml_bomb(4 << 10))
    (specs / "huge.yml").write_bytes(b"#" * (10 << 20))
    report = sync_directory(ctx, specs, "filesystem")
    assert report.submitted == []
    assert "aliases" in report.errors[str(specs / "bomb.yml")]
    assert "256 KiB" in report.errors[str(specs / "huge.yml")]
