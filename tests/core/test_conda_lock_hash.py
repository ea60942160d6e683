"""The native input hash equals conda-lock's own ``compute_content_hashes``, spec by spec.

conda-lock is imported here only, as the reference: ``conda-lock lock
--check-input-hash`` must find the lockfiles condastore writes fresh.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml

from condastore_core.conda_lock_hash import content_hashes
from condastore_core.lock import conda_lock_content_hash
from condastore_core.spec import KNOWN_PLATFORMS, EnvironmentSpec

PLATFORMS = sorted(KNOWN_PLATFORMS - {"noarch"})

DEPENDENCIES = [
    ["python"],
    ["numpy >=1.20,<2", "python=3.11", "zlib"],
    ["pkg=1.0=py_0", "foo 2023.1.0", "bar==1.2.3", "baz ==1.2.3 h123_0"],
    ["numpy 1.2.*", "numpy", "scipy !=1.2", "pandas ~=2.0", "x >=1.0|<0.5", "y *", "z * py*"],
    ["python 3.11.* *_cpython", "cuda-version >=12 *cuda*", "a 1.2.*,>=1.2.3", "b <=3"],
    ["conda-forge::numpy >=1", "bioconda::samtools", "c-lib >1.0.0a1", "d 1!2.0", "e 1.0+local"],
    ["libblas=*=*mkl", "python_abi 3.11.* *_cp311", "pkg[build_number=3]", "tzdata 2024a"],
    ["https://example.org/ch::foo", "pkg[version='>=1', build=py_0]", "q >=1.0.*"],
    ["mamba", "conda", "__glibc >=2.17", "numpy[license=BSD]", "v ==1.0.*"],
]
CHANNELS = [
    [],
    ["conda-forge"],
    ["conda-forge", "nodefaults"],
    ["nodefaults", "bioconda", "conda-forge"],
    ["https://conda.anaconda.org/conda-forge", "file:///srv/channel"],
    ["https://Example.ORG:8443/conda/", "conda-forge/label/rc", "/srv/local-channel"],
    ["https://user:secret@example.org/ch", "https://example.org/t/abc-123/ch"],
    ["https://example.org/${CHANNEL}/x", "ünïcode-channel"],
]
PLATFORM_SETS = [["linux-64"], ["osx-64", "osx-arm64"], PLATFORMS, ["win-arm64", "linux-s390x"]]


def conda_locks_own(environment_yaml: dict[str, Any], platforms: list[str], tmp: Path) -> dict:
    """What ``conda-lock lock -p ... -f environment.yaml`` computes as its input hash."""
    from conda_lock.content_hash import compute_content_hashes
    from conda_lock.lookup import DEFAULT_MAPPING_URL
    from conda_lock.src_parser import make_lock_spec
    from conda_lock.virtual_package import default_virtual_package_repodata

    path = tmp / "environment.yaml"
    path.write_text(yaml.safe_dump(environment_yaml, sort_keys=False))
    spec = make_lock_spec(
        src_files=[path], platform_overrides=platforms, mapping_url=DEFAULT_MAPPING_URL
    )
    virtual_packages = default_virtual_package_repodata()
    with virtual_packages:
        return dict(compute_content_hashes(spec, virtual_packages))


def specs() -> list[tuple[dict[str, Any], list[str]]]:
    out = []
    for i, (deps, channels) in enumerate(itertools.product(DEPENDENCIES, CHANNELS)):
        platforms = PLATFORM_SETS[i % len(PLATFORM_SETS)]
        spec = EnvironmentSpec.from_dict(
            {"name": f"env-{i}", "channels": channels, "dependencies": deps}
        )
        out.append((spec.to_environment_yaml(), platforms))
    return out


def test_the_native_hash_is_conda_locks_for_every_spec(tmp_path):
    native = 0
    for environment_yaml, platforms in specs():
        expected = conda_locks_own(environment_yaml, platforms, tmp_path)
        ours = content_hashes(environment_yaml, platforms)
        if ours is not None:
            native += 1
            assert ours == expected, environment_yaml
        assert conda_lock_content_hash(environment_yaml, platforms) == expected, environment_yaml
    # Six dependency lists without an unusual match spec, times five channel lists without
    # credentials, variables or a URL conda-lock rewrites: these never reach conda-lock.
    assert native == 6 * 5


@pytest.mark.parametrize(
    ("extra", "native"),
    [
        ({"variables": {"A": "1"}, "description": "with variables"}, True),
        ({"description": "a # [win] selector, which conda-lock reads in the text"}, False),
        ({"platforms": ["linux-64", "win-64"]}, True),
    ],
)
def test_the_other_fields_and_the_fallback_give_conda_locks_hash(extra, native, tmp_path):
    spec = EnvironmentSpec.from_dict(
        {"name": "x", "channels": ["conda-forge"], "dependencies": ["numpy >=1"], **extra}
    )
    environment_yaml = spec.to_environment_yaml()
    platforms = ["linux-64", "osx-64", "win-64"]
    expected = conda_locks_own(environment_yaml, platforms, tmp_path)
    assert (content_hashes(environment_yaml, platforms) is not None) is native
    assert conda_lock_content_hash(environment_yaml, platforms) == expected
