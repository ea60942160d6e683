"""Specs: parsing, validation errors that name the line and field, canonical form and hash."""

from __future__ import annotations

import hashlib

import pytest

from condastore_core.errors import SpecError
from condastore_core.spec import EnvironmentSpec, parse_spec

BASE = """\
name: tools
channels:
  - conda-forge
  - bioconda
dependencies:
  - zstd
  - openssl>=3
  - xz  1.2.*
  - pip:
    - requests >=2
variables:
  OMP_NUM_THREADS: 4
  DEBUG: true
description: some tools
platforms: [linux-64, osx-arm64]
"""


def test_parses_conda_layout_with_pip_block_and_variables():
    spec = parse_spec(BASE)
    assert spec.name == "tools"
    assert spec.channels == ("conda-forge", "bioconda")
    assert spec.dependencies == ("openssl >=3", "xz 1.2.*", "zstd")
    assert spec.pip == ("requests>=2",)
    assert spec.variables == {"OMP_NUM_THREADS": "4", "DEBUG": "true"}
    assert spec.platforms == ("linux-64", "osx-arm64")


def test_dependency_order_and_formatting_do_not_change_the_hash():
    reordered = BASE.replace(
        "  - zstd\n  - openssl>=3\n  - xz  1.2.*\n", "  - xz 1.2.*\n  - zstd\n  - openssl >=3\n"
    )
    assert reordered != BASE
    assert parse_spec(reordered).spec_hash == parse_spec(BASE).spec_hash


def test_channel_order_changes_the_hash():
    swapped = BASE.replace("  - conda-forge\n  - bioconda\n", "  - bioconda\n  - conda-forge\n")
    assert parse_spec(swapped).spec_hash != parse_spec(BASE).spec_hash


def test_variables_are_part_of_the_spec_and_its_hash():
    changed = BASE.replace("OMP_NUM_THREADS: 4", "OMP_NUM_THREADS: 8")
    assert parse_spec(changed).spec_hash != parse_spec(BASE).spec_hash
    assert parse_spec(BASE).to_environment_yaml()["variables"]["OMP_NUM_THREADS"] == "4"


def test_duplicate_dependencies_collapse():
    a = EnvironmentSpec.from_dict({"name": "a", "dependencies": ["zstd", "zstd"]})
    b = EnvironmentSpec.from_dict({"name": "a", "dependencies": ["zstd"]})
    assert a.spec_hash == b.spec_hash


def test_golden_spec_hash():
    """Pins the hash contract: changing it silently would split identical environments."""
    spec = EnvironmentSpec.from_dict(
        {"name": "golden", "channels": ["conda-forge"], "dependencies": ["zstd", "xz >=5"]}
    )
    assert spec.canonical() == {
        "name": "golden",
        "channels": ["conda-forge"],
        "dependencies": ["xz >=5", "zstd"],
        "pip": [],
        "variables": {},
        "platforms": [],
        "description": None,
    }
    # The hashed payload, written out by hand: kind, scheme version, sorted keys, no spaces.
    payload = (
        b'{"kind":"spec","payload":{"channels":["conda-forge"],"dependencies":["xz >=5","zstd"],'
        b'"description":null,"name":"golden","pip":[],"platforms":[],"variables":{}},"scheme":1}'
    )
    assert spec.spec_hash == hashlib.sha256(payload).hexdigest()
    assert spec.spec_hash == "652ae2d5d333112c19f430da851e1c3d12bc001eb9a89ab6df9c899eb666a32d"


def test_golden_spec_hash_with_pip_requirements():
    """The pip section is hashed (normalised, sorted), whichever layout the spec uses."""
    conda_layout = parse_spec(
        "name: golden\nchannels: [conda-forge]\ndependencies:\n  - python\n  - pip\n"
        "  - pip:\n    - six\n    - packaging>=23\n"
    )
    own_layout = EnvironmentSpec.from_dict(
        {
            "name": "golden",
            "channels": ["conda-forge"],
            "dependencies": ["pip", "python"],
            "pip": ["packaging >= 23", "six"],
        }
    )
    payload = (
        b'{"kind":"spec","payload":{"channels":["conda-forge"],"dependencies":["pip","python"],'
        b'"description":null,"name":"golden","pip":["packaging>=23","six"],"platforms":[],'
        b'"variables":{}},"scheme":1}'
    )
    assert conda_layout.spec_hash == own_layout.spec_hash == hashlib.sha256(payload).hexdigest()
    golden = "ad9d84173063a126f745b5c28ad2a00b66901aa09347cea2c5e6ea6428dda269"
    assert conda_layout.spec_hash == golden
    without_pip = EnvironmentSpec.from_dict(
        {"name": "golden", "channels": ["conda-forge"], "dependencies": ["pip", "python"]}
    )
    assert without_pip.spec_hash != conda_layout.spec_hash


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        ("name: x\ndependencies: [zstd\n", 3, None, "invalid YAML"),
        ("name: x\nfoo: 1\ndependencies: [zstd]\n", 2, "foo", "unknown key 'foo'"),
        (
            "name: x\ndependencies:\n  - zstd\n  - numpy >=>1\n",
            4,
            "dependencies.1",
            "malformed match spec",
        ),
        ("name: x\ndependencies: []\n", 2, "dependencies", "at least one conda dependency"),
        ("name: x\n", None, "dependencies", "is required"),
        ("name: my env/../x\ndependencies: [zstd]\n", 1, "name", "invalid environment name"),
        (
            "name: x\ndependencies: [zstd]\nplatforms: [linux-128]\n",
            3,
            "platforms",
            "unknown platform",
        ),
        (
            "name: x\ndependencies:\n  - zstd\n  - pip:\n    - ok\n    - 'req[['\n",
            6,
            "pip.1",
            "malformed pip requirement",
        ),
        ("name: x\ndependencies:\n  - zstd\n  - 3\n", 4, "dependencies.1", "valid string"),
        (
            "name: x\ndependencies: [zstd]\nvariables: {1X: a}\n",
            3,
            "variables",
            "invalid variable name",
        ),
        ("- just\n- a list\n", None, None, "must be a mapping"),
    ],
)
def test_bad_input_names_line_and_field(text, line, field, words):
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    err = info.value
    assert words in err.message
    assert err.line == line
    assert err.field == field
    if line is not None:
        assert f"line {line}" in err.message


def test_spec_error_from_api_dict_has_no_line():
    with pytest.raises(SpecError) as info:
        EnvironmentSpec.from_dict({"name": "x", "dependencies": ["zstd"], "extra": 1})
    assert info.value.line is None
    assert info.value.field == "extra"


def test_non_utf8_bytes_are_refused():
    with pytest.raises(SpecError, match="not UTF-8"):
        parse_spec(b"name: \xff\n")
