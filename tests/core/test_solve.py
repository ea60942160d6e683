"""Solving with py-rattler: conda-forge data, several platforms, priorities, virtual packages."""

from __future__ import annotations

import pytest

from condastore_core.errors import SolveError
from condastore_core.solve import Solver, virtual_packages_for
from condastore_core.spec import EnvironmentSpec
from tests.support.packages import PackageDef


def spec(channels, *deps, **kw) -> EnvironmentSpec:
    return EnvironmentSpec.from_dict(
        {"name": "t", "channels": list(channels), "dependencies": list(deps), **kw}
    )


def names(lock, platform="linux-64"):
    return [r.name for r in lock.packages[platform]]


def test_solves_native_tools_from_conda_forge(sample_channel):
    lock = Solver().solve(spec([sample_channel], "zstd", "openssl", "xz"), ["linux-64"])
    assert {"zstd", "openssl", "xz", "libgcc-ng", "ca-certificates"} <= set(names(lock))
    zstd = next(r for r in lock.packages["linux-64"] if r.name == "zstd")
    assert len(zstd.sha256) == 64 and zstd.url.endswith(".conda")


def test_same_spec_same_channel_same_lock_hash(sample_channel):
    s = spec([sample_channel], "zstd", "openssl", "xz")
    assert Solver().solve(s, ["linux-64"]).lock_hash == Solver().solve(s, ["linux-64"]).lock_hash


def test_locking_needs_repodata_only(py39_repodata_channel):
    lock = Solver().solve(
        spec([py39_repodata_channel], "python=3.9", "pip", "six", "packaging"), ["linux-64"]
    )
    assert len(lock.packages["linux-64"]) == 25
    python = next(r for r in lock.packages["linux-64"] if r.name == "python")
    assert python.version.startswith("3.9.")


def test_missing_package_is_named_in_plain_words(sample_channel):
    with pytest.raises(SolveError) as info:
        Solver().solve(spec([sample_channel], "zstd", "python"), ["linux-64"])
    assert "no package named 'python'" in info.value.message


def test_missing_dependency_is_named_with_the_solver_explanation(sample_channel):
    with pytest.raises(SolveError) as info:
        Solver().solve(spec([sample_channel], "libxml2"), ["linux-64"])
    msg = info.value.message
    assert "'icu'" in msg  # libxml2 needs icu, which the channel lacks
    assert "libxml2 2.12.6 would require" in msg  # the solver's own words follow


def test_conflicting_constraints_are_explained(make_test_channel):
    url = make_test_channel(
        [
            PackageDef("liba", "1.0"),
            PackageDef("liba", "2.0"),
            PackageDef("app", "1.0", depends=["liba >=2"]),
        ]
    )
    with pytest.raises(SolveError) as info:
        Solver().solve(spec([url], "app", "liba <2"), ["linux-64"])
    assert "cannot be solved" in info.value.message
    assert "liba" in info.value.message


def test_unreadable_channel_is_a_clear_error(tmp_path):
    with pytest.raises(SolveError, match="cannot read the channels"):
        Solver().solve(spec([str(tmp_path / "nowhere")], "zstd"), ["linux-64"])


def test_several_platforms_in_one_lock(make_test_channel):
    url = make_test_channel(
        [
            PackageDef("tool", "1.0", subdir="linux-64"),
            PackageDef("tool", "1.0", subdir="osx-arm64"),
            PackageDef("tool", "1.0", subdir="linux-aarch64"),
            PackageDef("data", "1.0", subdir="noarch"),
        ]
    )
    s = spec([url], "tool", "data", platforms=["osx-arm64", "linux-aarch64", "linux-64"])
    lock = Solver().solve(s)
    assert lock.platforms == ["linux-64", "linux-aarch64", "osx-arm64"]
    for platform in lock.platforms:
        subdirs = {r.name: r.subdir for r in lock.packages[platform]}
        assert subdirs == {"tool": platform, "data": "noarch"}


def test_strict_channel_priority_takes_the_first_channel(make_test_channel):
    first = make_test_channel([PackageDef("tool", "1.0")])
    second = make_test_channel([PackageDef("tool", "2.0")])
    assert [
        r.version
        for r in Solver().solve(spec([first, second], "tool"), ["linux-64"]).packages["linux-64"]
    ] == ["1.0"]
    assert [
        r.version
        for r in Solver().solve(spec([second, first], "tool"), ["linux-64"]).packages["linux-64"]
    ] == ["2.0"]
    # Strict: a version only the lower-priority channel has is not taken from it.
    with pytest.raises(SolveError):
        Solver().solve(spec([first, second], "tool >=2"), ["linux-64"])


def test_virtual_packages_can_be_overridden(make_test_channel):
    url = make_test_channel(
        [
            PackageDef("gpu", "1.0", depends=["__cuda >=12"]),
            PackageDef("newlibc", "1.0", depends=["__glibc >=2.34"]),
        ]
    )
    with pytest.raises(SolveError, match="__cuda"):
        Solver().solve(spec([url], "gpu"), ["linux-64"])
    lock = Solver(virtual_package_overrides={"__cuda": "12.2"}).solve(
        spec([url], "gpu"), ["linux-64"]
    )
    assert names(lock) == ["gpu"]
    with pytest.raises(SolveError):
        Solver().solve(spec([url], "newlibc"), ["linux-64"])  # default glibc is 2.28
    Solver(virtual_package_overrides={"__glibc": "2.35"}).solve(
        spec([url], "newlibc"), ["linux-64"]
    )


def test_virtual_package_sets_follow_the_target_platform():
    linux = {str(v.name.normalized) for v in virtual_packages_for("linux-aarch64")}
    osx = {str(v.name.normalized) for v in virtual_packages_for("osx-arm64")}
    assert {"__linux", "__glibc", "__unix", "__archspec"} <= linux
    assert "__osx" in osx and "__glibc" not in osx
    removed = {str(v.name.normalized) for v in virtual_packages_for("linux-64", {"__glibc": None})}
    assert "__glibc" not in removed


def test_pip_requirements_without_python_name_the_requirement(sample_channel):
    with pytest.raises(SolveError, match=r"pip requirements \(requests\) need python"):
        Solver().solve(spec([sample_channel], "zstd", {"pip": ["requests"]}), ["linux-64"])
