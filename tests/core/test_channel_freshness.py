"""Channels stay fresh: a running solver follows an HTTP channel as packages are published."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from condastore_core.errors import SolveError
from condastore_core.settings import Settings
from condastore_core.solve import solver_for
from condastore_core.spec import EnvironmentSpec
from tests.support.http_channel import channel_server
from tests.support.packages import PackageDef, make_channel


def spec(url: str, *deps: str) -> EnvironmentSpec:
    return EnvironmentSpec.from_dict({"name": "t", "channels": [url], "dependencies": list(deps)})


def settings(tmp_path: Path, **kw) -> Settings:
    return Settings(data_dir=tmp_path / "data", allowed_networks=("127.0.0.0/8",), **kw)


def publish(root: Path, *packages: PackageDef) -> None:
    """Add ``packages`` to the served channel and index it again, as a channel server does."""
    make_channel(root, list(packages))


def test_a_running_solver_sees_a_new_package_once_max_age_is_over(tmp_path):
    root = tmp_path / "channel"
    publish(root, PackageDef("aaa", "1.0"))
    with channel_server(root, max_age=2) as channel:
        solver = solver_for(settings(tmp_path))
        solver.solve(spec(channel.url, "aaa"), ["linux-64"])
        fetched = channel.repodata_requests()
        assert fetched > 0
        publish(root, PackageDef("bbb", "1.0"))
        # Within max-age: nothing is asked of the server, the copy is served.
        with pytest.raises(SolveError, match="no package named 'bbb'"):
            solver.solve(spec(channel.url, "bbb"), ["linux-64"])
        assert channel.repodata_requests() == fetched
        time.sleep(2.5)
        lock = solver.solve(spec(channel.url, "bbb"), ["linux-64"])
        assert [r.name for r in lock.packages["linux-64"]] == ["bbb"]
        assert channel.repodata_requests() > fetched
        again = channel.repodata_requests()
        solver.solve(spec(channel.url, "aaa", "bbb"), ["linux-64"])
        assert channel.repodata_requests() == again  # fresh again for another max-age


def test_without_max_age_every_solve_revalidates_and_304s_keep_the_copy(tmp_path):
    root = tmp_path / "channel"
    publish(root, PackageDef("aaa", "1.0"))
    with channel_server(root, max_age=None) as channel:
        solver = solver_for(settings(tmp_path))
        for _ in range(3):
            solver.solve(spec(channel.url, "aaa"), ["linux-64"])
        full = channel.repodata_requests(200)
        assert channel.repodata_requests(304) >= 4  # two subdirs, two later solves
        solver.solve(spec(channel.url, "aaa"), ["linux-64"])
        assert channel.repodata_requests(200) == full  # nothing downloaded again


def test_a_local_ttl_keeps_a_channel_that_long_then_reads_it_again(tmp_path):
    root = tmp_path / "channel"
    publish(root, PackageDef("aaa", "1.0"))
    with channel_server(root, max_age=None) as channel:
        solver = solver_for(settings(tmp_path, local_repodata_ttl=3))
        solver.solve(spec(channel.url, "aaa"), ["linux-64"])
        fetched = channel.repodata_requests()
        publish(root, PackageDef("bbb", "1.0"))
        with pytest.raises(SolveError):
            solver.solve(spec(channel.url, "bbb"), ["linux-64"])
        assert channel.repodata_requests() == fetched
        time.sleep(3.2)
        solver.solve(spec(channel.url, "bbb"), ["linux-64"])
        assert channel.repodata_requests() > fetched


def test_file_channels_are_read_again_when_their_repodata_changes(tmp_path):
    root = tmp_path / "channel"
    publish(root, PackageDef("aaa", "1.0"))
    solver = solver_for(settings(tmp_path, allowed_channel_dirs=(str(tmp_path),)))
    url = root.resolve().as_uri()
    solver.solve(spec(url, "aaa"), ["linux-64"])
    publish(root, PackageDef("bbb", "1.0"))
    assert [r.name for r in solver.solve(spec(url, "bbb"), ["linux-64"]).packages["linux-64"]] == [
        "bbb"
    ]


_OTHER_PROCESS = """
import sys, time
from pathlib import Path
from condastore_core.settings import Settings
from condastore_core.solve import solver_for
from condastore_core.spec import EnvironmentSpec
from condastore_core.errors import SolveError

data, url, redis = sys.argv[1], sys.argv[2], sys.argv[3] or None
solver = solver_for(Settings(data_dir=Path(data), allowed_networks=("127.0.0.0/8",),
                             local_repodata_ttl=3600, redis_url=redis))
def names(dep):
    spec = EnvironmentSpec.from_dict({"name": "t", "channels": [url], "dependencies": [dep]})
    try:
        return ",".join(r.name for r in solver.solve(spec, ["linux-64"]).packages["linux-64"])
    except SolveError as exc:
        return "error: " + exc.message.splitlines()[0]
for line in sys.stdin:
    print(names(line.strip()), flush=True)
"""


@pytest.mark.parametrize("shared", ["data-dir", "redis"])
def test_a_refresh_reaches_every_process_of_the_installation(tmp_path, shared):
    """A server process and a worker process: one refresh, both see the new package."""
    redis_url = os.environ.get("CONDASTORE_TEST_REDIS_URL", "") if shared == "redis" else ""
    if shared == "redis":
        if not redis_url:
            pytest.skip("CONDASTORE_TEST_REDIS_URL is not set")
        from redis import Redis

        Redis.from_url(redis_url).flushdb()
    root = tmp_path / "channel"
    publish(root, PackageDef("aaa", "1.0"))
    with channel_server(root, max_age=3600) as channel:
        # The two processes need not share a data directory when Redis holds the record.
        worker_dir = tmp_path / ("data" if shared == "data-dir" else "worker-data")
        worker = subprocess.Popen(
            [sys.executable, "-c", _OTHER_PROCESS, str(worker_dir), channel.url, redis_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert worker.stdin is not None and worker.stdout is not None
        try:

            def ask(dep: str) -> str:
                worker.stdin.write(dep + "\n")  # type: ignore[union-attr]
                worker.stdin.flush()  # type: ignore[union-attr]
                return worker.stdout.readline().strip()  # type: ignore[union-attr]

            server = solver_for(
                settings(tmp_path, local_repodata_ttl=3600, redis_url=redis_url or None)
            )
            server.solve(spec(channel.url, "aaa"), ["linux-64"])
            assert ask("aaa") == "aaa"
            publish(root, PackageDef("bbb", "1.0"))
            assert ask("bbb").startswith("error: ")  # max-age and the TTL: still the old copy
            server.refresh([channel.url])
            assert ask("bbb") == "bbb"
            assert [
                r.name
                for r in server.solve(spec(channel.url, "bbb"), ["linux-64"]).packages["linux-64"]
            ] == ["bbb"]
        finally:
            worker.stdin.close()
            worker.wait(timeout=30)
