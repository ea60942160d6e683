"""Policies: inheritance and rules that name themselves when broken."""

from __future__ import annotations

import pytest

from condastore_core.policy import Policy, PolicyViolation, apply, merge
from condastore_core.spec import EnvironmentSpec


def spec(**kw):
    return EnvironmentSpec.from_dict({"name": "e", "dependencies": ["zstd"], **kw})


def test_inheritance_global_namespace_environment():
    g = Policy(allowed_channels=("conda-forge",), default_packages=("ca-certificates",))
    ns = Policy(allowed_channels=("conda-forge", "bioconda"))
    env = Policy(max_builds_kept=3)
    p = merge(g, ns, None, env)
    assert p.allowed_channels == ("conda-forge", "bioconda")
    assert p.default_packages == ("ca-certificates",)
    assert p.max_builds_kept == 3


def test_channels_are_compared_as_urls():
    p = Policy(allowed_channels=("conda-forge",))
    apply(spec(channels=["https://conda.anaconda.org/conda-forge/"]), p)
    with pytest.raises(PolicyViolation, match=r"'allowed_channels'.*'defaults'") as info:
        apply(spec(channels=["defaults"]), p)
    assert info.value.rule == "allowed_channels"
    # A spec with no channels gets the server's defaults, which are checked too.
    with pytest.raises(PolicyViolation):
        apply(spec(), p, default_channels=("bioconda",))


def test_required_default_and_platform_rules():
    with pytest.raises(PolicyViolation, match="'required_packages': the spec must include"):
        apply(spec(), Policy(required_packages=("openssl >=3",)))
    assert apply(spec(dependencies=["zstd", "openssl"]), Policy(required_packages=("openssl",)))
    added = apply(spec(), Policy(default_packages=("ca-certificates", "zstd >=9")))
    assert added.dependencies == ("ca-certificates", "zstd")  # zstd already there: kept as is
    with pytest.raises(PolicyViolation, match="'allowed_platforms'"):
        apply(spec(platforms=["win-64"]), Policy(allowed_platforms=("linux-64",)))


def test_unknown_policy_fields_are_refused():
    with pytest.raises(ValueError, match="allowed_chanels"):
        Policy.model_validate({"allowed_chanels": []})
