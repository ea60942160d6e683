"""Package work in a child process: errors, crashes, limits, cancel and reports."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import pytest

from condastore_core.channels import ChannelRefused, gate_for
from condastore_core.errors import (
    BuildCanceled,
    BuildCrashed,
    BuildOutOfMemory,
    ConfigError,
    PhaseTimeout,
    SpecError,
)
from condastore_core.isolation import Limits, run_isolated, run_phase
from condastore_core.progress import CollectingReporter
from condastore_core.settings import Settings, load_settings
from condastore_core.solve import Solver

# -- what the children run (top-level, so they pickle) ------------------------------------


def refuse(rule: str) -> None:
    raise ChannelRefused(rule, "not this one")


def bad_field() -> None:
    raise SpecError("must be a list", field="dependencies", line=3)


def abort() -> None:
    os.abort()


def allocate(mb: int) -> int:
    return len(bytearray(mb * 1024 * 1024))


def sleep_forever(pid_file: Path) -> None:
    pid_file.write_text(str(os.getpid()))
    time.sleep(3600)


def chatty(count: int, reporter) -> str:  # type: ignore[no-untyped-def]
    for i in range(count):
        reporter.log(f"line {i}")
        reporter.step("working", i + 1, count)
    return "done"


def whose_pid(reporter) -> int:  # type: ignore[no-untyped-def]
    reporter.log("here")
    return os.getpid()


def missing_file(path: Path) -> bytes:
    return path.read_bytes()


# -- tests ------------------------------------------------------------------------------


def test_a_result_and_the_reports_come_back():
    log = CollectingReporter()
    assert run_isolated("install", Limits(), chatty, 50, reporter=log) == "done"
    assert [line.split("] ", 1)[1] for line in log.lines] == [f"line {i}" for i in range(50)]


def test_errors_raised_in_the_child_are_raised_again_with_their_type_and_fields():
    with pytest.raises(ChannelRefused) as refused:
        run_isolated("solve", Limits(), refuse, "allowed_channels")
    assert refused.value.rule == "allowed_channels"
    assert refused.value.message == "policy 'allowed_channels': not this one"
    with pytest.raises(SpecError) as spec:
        run_isolated("solve", Limits(), bad_field)
    assert (spec.value.field, spec.value.line) == ("dependencies", 3)
    with pytest.raises(FileNotFoundError):
        run_isolated("pack", Limits(), missing_file, Path("/nonexistent/file"))


def test_a_child_that_aborts_fails_with_a_crash_naming_the_phase():
    with pytest.raises(BuildCrashed) as crash:
        run_isolated("solve", Limits(), abort)
    assert crash.value.message == "the solver crashed: killed by SIGABRT"
    assert crash.value.code == "BUILD_CRASHED"


def test_memory_past_the_limit_fails_as_out_of_memory():
    assert run_isolated("pack", Limits(memory_mb=1024), allocate, 16) == 16 * 1024 * 1024
    with pytest.raises(BuildOutOfMemory) as oom:
        run_isolated("pack", Limits(memory_mb=1024), allocate, 4096)
    assert oom.value.message == (
        "conda-pack ran out of memory (limit 1024 MB, setting build_memory_limit_mb)"
    )


def test_a_phase_past_its_time_limit_is_killed(tmp_path):
    started = time.monotonic()
    with pytest.raises(PhaseTimeout) as timeout:
        run_isolated("solve", Limits(solve_seconds=3), sleep_forever, tmp_path / "pid")
    assert time.monotonic() - started < 8
    assert timeout.value.message == "solve exceeded 3 s (setting solve_limit_seconds)"
    assert not _alive(int((tmp_path / "pid").read_text()))


class CancelAfter(CollectingReporter):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.at = time.monotonic() + seconds

    def check_canceled(self) -> None:
        if time.monotonic() > self.at:
            raise BuildCanceled("canceled")


def test_cancel_kills_the_child_at_once(tmp_path):
    reporter = CancelAfter(2)
    started = time.monotonic()
    with pytest.raises(BuildCanceled):
        run_isolated(
            "install", Limits(), sleep_forever, tmp_path / "pid", reporter=reporter
        )  # sleep_forever takes no reporter: cancel is polled all the same
    assert time.monotonic() - started < 4
    assert not _alive(int((tmp_path / "pid").read_text()))


def test_a_solver_crosses_to_a_child_as_its_settings():
    gate = gate_for(Settings(allowed_networks=("10.0.0.0/8",)))
    solver = Solver(default_channels=("one", "two"), gate=gate)
    copy = pickle.loads(pickle.dumps(solver))
    assert copy.gate == gate and copy.default_channels == ["one", "two"]
    assert copy.client is not None and copy.client is not solver.client  # its own, built anew


def test_inline_runs_in_this_process_and_child_in_another():
    inline, child = CollectingReporter(), CollectingReporter()
    assert run_phase("inline", "solve", Limits(), whose_pid, reporter=inline) == os.getpid()
    assert run_phase("child", "solve", Limits(), whose_pid, reporter=child) != os.getpid()
    assert [line.split("] ", 1)[1] for line in inline.lines + child.lines] == ["here", "here"]
    with pytest.raises(ValueError):
        run_phase("thread", "solve", Limits(), whose_pid)  # type: ignore[arg-type]


def test_the_server_cannot_be_configured_to_run_package_work_inline(tmp_path):
    """Only the local command line passes "inline"; no setting, variable or file reaches it."""
    from condastore_core.service.context import Context
    from tests.support.gate import gate_env

    for name in ("CONDASTORE_ISOLATION", "CONDASTORE_BUILD_ISOLATION"):
        with pytest.raises(ConfigError):
            load_settings(environ={**gate_env(), name: "inline"})
    settings = load_settings(
        {"data_dir": tmp_path / "data", "database_url": f"sqlite:///{tmp_path / 'db'}"},
        environ=gate_env(),
    )
    context = Context.from_settings(settings)
    try:
        assert context.builder().isolation == "child"
    finally:
        context.engine.dispose()
    config = tmp_path / "config.toml"
    for key in ("isolation", "build_isolation"):
        config.write_text(f'{key} = "inline"\n')
        with pytest.raises(ConfigError):
            load_settings(environ={}, config_file=config)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"
