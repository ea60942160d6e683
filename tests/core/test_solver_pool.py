"""Solver children: warm across calls, recycled, killed on limits, fresh with their channels."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from condastore_core.errors import BuildCanceled, BuildCrashed, PhaseTimeout, SolveError
from condastore_core.isolation import Limits
from condastore_core.progress import NullReporter
from condastore_core.settings import Settings
from condastore_core.solve import Solver, solver_for
from condastore_core.solver_pool import SolverPool
from condastore_core.spec import EnvironmentSpec
from tests.support.http_channel import channel_server
from tests.support.packages import PackageDef, make_channel

# -- what the children run (top-level, so they pickle) ------------------------------------


def child_pid(solver: Solver) -> int:
    return os.getpid()


def abort(solver: Solver) -> None:
    os.abort()


def sleep(solver: Solver, seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def hold(solver: Solver, mb: int) -> int:
    """Keep ``mb`` resident in the child (its memory after the call is what counts)."""
    global _held
    _held = bytearray(os.urandom(1024)) * (mb * 1024)
    return os.getpid()


_held: bytearray | None = None


# -- helpers ------------------------------------------------------------------------------


def spec(url: str, *deps: str) -> EnvironmentSpec:
    return EnvironmentSpec.from_dict({"name": "t", "channels": [url], "dependencies": list(deps)})


def settings(tmp_path: Path, **kw) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        allowed_networks=("127.0.0.0/8",),
        allowed_channel_dirs=(str(tmp_path),),
        **kw,
    )


@pytest.fixture
def channel(tmp_path):
    root = tmp_path / "channel"
    make_channel(root, [PackageDef("aaa", "1.0"), PackageDef("bbb", "1.0", depends=["aaa"])])
    return root.resolve().as_uri()


def pool_for(tmp_path: Path, limits: Limits | None = None, **kw) -> SolverPool:
    return SolverPool(solver_for(settings(tmp_path)), limits or Limits(solve_seconds=60), **kw)


def names(lock) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(r.name for r in lock.packages["linux-64"])


# -- tests ------------------------------------------------------------------------------


def test_solves_run_in_one_long_lived_child_recycled_after_n_calls(tmp_path, channel):
    pool = pool_for(tmp_path, max_solves=3)
    try:
        first = pool.run(child_pid)
        assert first != os.getpid()
        assert names(pool.solve(spec(channel, "bbb"), ["linux-64"])) == ["aaa", "bbb"]
        assert pool.pids() == [first]  # the same child answered both
        assert pool.run(child_pid) == first  # the third call, then it is recycled
        assert pool.pids() == []
        second = pool.run(child_pid)
        assert second != first
        with pytest.raises(ProcessLookupError):
            os.kill(first, 0)
    finally:
        pool.close()


def test_a_child_past_the_memory_cap_is_recycled(tmp_path):
    pool = pool_for(tmp_path, max_rss_mb=400)
    try:
        small = pool.run(hold, 1)
        assert pool.run(child_pid) == small  # under the cap: kept
        assert pool.run(hold, 500) == small
        assert pool.pids() == []  # measured past the cap after that call
        assert pool.run(child_pid) != small
    finally:
        pool.close()


def test_a_solve_error_keeps_the_child(tmp_path, channel):
    pool = pool_for(tmp_path)
    try:
        pid = pool.run(child_pid)
        with pytest.raises(SolveError, match="no package named 'zzz'"):
            pool.solve(spec(channel, "zzz"), ["linux-64"])
        assert pool.run(child_pid) == pid
    finally:
        pool.close()


def test_a_crash_fails_that_call_only(tmp_path, channel):
    pool = pool_for(tmp_path)
    try:
        pid = pool.run(child_pid)
        with pytest.raises(BuildCrashed, match="the solver crashed"):
            pool.run(abort)
        assert names(pool.solve(spec(channel, "aaa"), ["linux-64"])) == ["aaa"]
        assert pool.pids() != [pid]
    finally:
        pool.close()


def test_a_solve_past_its_time_limit_is_killed_and_the_child_restarted(tmp_path, channel):
    pool = pool_for(tmp_path, Limits(solve_seconds=1))
    try:
        pid = pool.run(child_pid)
        started = time.monotonic()
        with pytest.raises(PhaseTimeout, match="solve exceeded 1 s"):
            pool.run(sleep, 30)
        assert time.monotonic() - started < 10
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert names(pool.solve(spec(channel, "aaa"), ["linux-64"])) == ["aaa"]
    finally:
        pool.close()


class CancelAfter(NullReporter):
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def check_canceled(self) -> None:
        if time.monotonic() > self.at:
            raise BuildCanceled("canceled")


def test_cancel_kills_the_child_and_the_next_call_gets_another(tmp_path):
    pool = pool_for(tmp_path)
    try:
        pid = pool.run(child_pid)
        with pytest.raises(BuildCanceled):
            pool.run(sleep, 30, reporter=CancelAfter(0.5))
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert pool.run(child_pid) != pid
    finally:
        pool.close()


def test_concurrent_calls_wait_for_the_child(tmp_path):
    pool = pool_for(tmp_path)
    results: list[int] = []
    try:
        threads = [
            threading.Thread(target=lambda: results.append(pool.run(sleep, 0.2))) for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 4 and len(set(results)) == 1
    finally:
        pool.close()


_PARENT = """
import sys
from pathlib import Path
from condastore_core.isolation import Limits
from condastore_core.settings import Settings
from condastore_core.solve import solver_for
from condastore_core.solver_pool import SolverPool
from tests.core.test_solver_pool import child_pid

pool = SolverPool(solver_for(Settings(data_dir=Path(sys.argv[1]))), Limits())
print(pool.run(child_pid), flush=True)
sys.stdin.read()
"""


def test_the_child_dies_with_its_process(tmp_path):
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, str(tmp_path / "data")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    os.kill(pid, 0)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail("the solver child outlived its process")


def test_freshness_holds_in_the_child(tmp_path):
    """A package published in an HTTP channel is seen by the warm child once max-age is over."""
    root = tmp_path / "channel"
    make_channel(root, [PackageDef("aaa", "1.0")])
    with channel_server(root, max_age=2) as served:
        pool = pool_for(tmp_path)
        try:
            pid = pool.run(child_pid)
            pool.solve(spec(served.url, "aaa"), ["linux-64"])
            make_channel(root, [PackageDef("aaa", "1.0"), PackageDef("bbb", "1.0")])
            with pytest.raises(SolveError, match="no package named 'bbb'"):
                pool.solve(spec(served.url, "bbb"), ["linux-64"])
            time.sleep(2.5)
            assert names(pool.solve(spec(served.url, "bbb"), ["linux-64"])) == ["bbb"]
            assert pool.pids() == [pid]  # the same warm child all along
        finally:
            pool.close()


_REFRESH = """
import sys
from pathlib import Path
from condastore_core.settings import Settings
from condastore_core.solve import solver_for

settings = Settings(data_dir=Path(sys.argv[1]), allowed_networks=("127.0.0.0/8",))
solver_for(settings).refresh([sys.argv[2]])
"""


def test_a_refresh_by_another_process_reaches_the_child(tmp_path):
    root = tmp_path / "channel"
    make_channel(root, [PackageDef("aaa", "1.0")])
    with channel_server(root, max_age=3600) as served:
        pool = SolverPool(
            solver_for(settings(tmp_path, local_repodata_ttl=3600)), Limits(solve_seconds=60)
        )
        try:
            pool.solve(spec(served.url, "aaa"), ["linux-64"])
            make_channel(root, [PackageDef("aaa", "1.0"), PackageDef("ccc", "1.0")])
            with pytest.raises(SolveError, match="no package named 'ccc'"):
                pool.solve(spec(served.url, "ccc"), ["linux-64"])
            subprocess.run(
                [sys.executable, "-c", _REFRESH, str(tmp_path / "data"), served.url], check=True
            )
            assert names(pool.solve(spec(served.url, "ccc"), ["linux-64"])) == ["ccc"]
        finally:
            pool.close()


def test_package_search_runs_in_the_child(tmp_path, channel):
    pool = pool_for(tmp_path)
    try:
        found = pool.search("bb", [channel], ["linux-64"])
        assert [p.name for p in found] == ["bbb"]
        assert len(pool.pids()) == 1  # answered by the child, which stays
    finally:
        pool.close()
