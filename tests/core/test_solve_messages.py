"""Solve failures whose first line names the real cause, then rattler's whole explanation."""

from __future__ import annotations

import pytest

from condastore_core.errors import SolveError
from condastore_core.solve import Solver
from condastore_core.spec import EnvironmentSpec
from tests.support.packages import PackageDef as P

PACKAGES = [
    P("liba", "1.0"),
    P("liba", "2.0"),
    P("liba", "2.5"),
    P("app", "1.0", depends=["liba >=2"]),
    P("old", "1.0", depends=["liba <2"]),
    P("mid", "1.0", depends=["liba >=3"]),
    P("top", "1.0", depends=["mid"]),
    P("gpu", "1.0", depends=["__cuda >=12"]),
    P("needsghost", "1.0", depends=["ghost"]),
    P("tool", "1.0"),
]

CASES = [
    (["nosuch"], "no package named 'nosuch' in channels "),
    (["liba >9"], "no version of 'liba' matches 'liba >9'; the channels have 2.5, 2.0, 1.0"),
    (["app", "liba <2"], "conflict between liba <2 and app 1.0 (requires liba >=2)"),
    (
        ["app", "old"],
        "conflict between old * (old 1.0 requires liba <2) and app * (app 1.0 requires liba >=2)",
    ),
    (
        ["top"],
        "no version of 'liba' matches 'liba >=3' (needed by top 1.0 -> mid 1.0); "
        "the channels have 2.5, 2.0, 1.0",
    ),
    (["gpu"], "__cuda >=12 is required (needed by gpu 1.0), but the platform has no __cuda"),
    (["liba >=2", "liba <2"], "conflict between liba >=2 and liba <2"),
    (["liba 1.0 nob*"], "no version of 'liba' matches 'liba ==1.0 nob*'"),
    (["needsghost"], "no package named 'ghost' in channels "),
    (["tool >=2"], "tool 2.0 is only in a lower-priority channel"),
    (["liba", "nosuch", "tool"], "no package named 'nosuch' in channels "),
]


@pytest.fixture(scope="module")
def channels(tmp_path_factory):
    from tests.support.packages import make_channel

    first = make_channel(tmp_path_factory.mktemp("first"), PACKAGES)
    second = make_channel(tmp_path_factory.mktemp("second"), [P("tool", "2.0")])
    return [first, second]


@pytest.mark.parametrize(("deps", "first_line"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_the_first_line_names_the_cause(channels, deps, first_line):
    spec = EnvironmentSpec.from_dict({"name": "t", "channels": channels, "dependencies": deps})
    with pytest.raises(SolveError) as info:
        Solver().solve(spec, ["linux-64"])
    lines = info.value.message.splitlines()
    assert lines[0].startswith("the environment cannot be solved for linux-64: ")
    assert first_line in lines[0]
    assert len(lines) > 1  # rattler's own explanation follows
    assert info.value.detail["solver"] in info.value.message


def test_explanations_have_no_branches_of_bare_names(channels):
    """Asking rattler for ``zstd`` beside ``zstd >9`` added a branch of its own."""
    spec = EnvironmentSpec.from_dict(
        {"name": "t", "channels": channels[:1], "dependencies": ["liba >9"]}
    )
    with pytest.raises(SolveError) as info:
        Solver().solve(spec, ["linux-64"])
    assert info.value.detail["solver"] == "No candidates were found for liba >9."
