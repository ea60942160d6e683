"""Repodata of any age: md5-only records, null list fields, channel URLs written two ways."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from condastore_core.errors import InstallError, SolveError
from condastore_core.install import install_lock
from condastore_core.lock import parse_conda_lock_yaml, to_conda_lock_yaml
from condastore_core.solve import Solver
from condastore_core.spec import EnvironmentSpec
from tests.support.packages import PackageDef, make_channel


def old_channel(root: Path, edit) -> str:
    """A channel whose repodata.json (the only form old channels have) ``edit`` rewrites."""
    url = make_channel(
        root, [PackageDef("liba", "1.0"), PackageDef("app", "1.0", depends=["liba"])]
    )
    for subdir in ("linux-64", "noarch"):
        for name in ("repodata.json.zst", "repodata_shards.msgpack.zst"):
            (root / subdir / name).unlink(missing_ok=True)
        shutil.rmtree(root / subdir / "shards", ignore_errors=True)
    path = root / "linux-64" / "repodata.json"
    repodata = json.loads(path.read_text())
    for record in repodata["packages.conda"].values():
        edit(record)
    path.write_text(json.dumps(repodata))
    return url


def spec(url: str, *deps: str) -> EnvironmentSpec:
    return EnvironmentSpec.from_dict({"name": "t", "channels": [url], "dependencies": list(deps)})


def test_md5_only_records_lock_and_install_verifying_the_md5(tmp_path):
    url = old_channel(tmp_path / "channel", lambda r: r.pop("sha256"))
    lock = Solver().solve(spec(url, "app"), ["linux-64"])
    records = {r.name: r for r in lock.packages["linux-64"]}
    assert records["liba"].sha256 is None and len(records["liba"].md5 or "") == 32
    # conda-lock.yml keeps the md5 and reads back to the same lock.
    assert parse_conda_lock_yaml(to_conda_lock_yaml(lock)).lock_hash == lock.lock_hash
    install_lock(lock, "linux-64", tmp_path / "env", tmp_path / "pkgs")
    assert (tmp_path / "env" / "bin" / "app").is_file()
    # An archive that is not the one the lock names is refused by its md5.
    archive = tmp_path / "channel" / "linux-64" / records["liba"].file_name
    archive.write_bytes(archive.read_bytes() + b"tampered")
    with pytest.raises(InstallError, match="md5 mismatch"):
        install_lock(lock, "linux-64", tmp_path / "env2", tmp_path / "pkgs2")


def test_a_null_list_field_names_the_channel_subdir_and_record(tmp_path):
    def null_depends(record):
        if record["name"] == "liba":
            record["depends"] = None

    url = old_channel(tmp_path / "channel", null_depends)
    with pytest.raises(SolveError) as info:
        Solver().solve(spec(url, "app"), ["linux-64"])
    first = info.value.message.splitlines()[0]
    assert first.startswith(f"channel {url}, subdir linux-64: record liba-1.0-0.conda")
    assert '"depends": null' in first


@pytest.mark.parametrize(
    ("written", "normal"),
    [
        ("conda-forge/", "conda-forge"),
        ("https://conda.anaconda.org/conda-forge/", "https://conda.anaconda.org/conda-forge"),
        ("HTTPS://Conda.Anaconda.org/conda-forge", "https://conda.anaconda.org/conda-forge"),
        ("file:///srv/channel//", "file:///srv/channel"),
    ],
)
def test_a_channel_written_two_ways_is_one_spec_hash(written, normal):
    def hashed(channel):
        return EnvironmentSpec.from_dict(
            {"name": "t", "channels": [channel], "dependencies": ["zstd"]}
        ).spec_hash

    assert hashed(written) == hashed(normal)


def test_normal_channels_keep_their_spec_hashes():
    """Golden vectors computed before channels were normalised: hashes are a contract."""
    cases = {
        ("conda-forge",): "7b9818b3b18154742c5f0b3123240ef4eee751967ec88eff542557f04763dab5",
        (
            "https://conda.anaconda.org/conda-forge",
            "bioconda",
        ): "479a03efbd1ab31aa3b0d8f66019cbf69b2f7cba1b5fb26f570a6fe5325e3833",
        (
            "file:///srv/channel",
        ): "242e9a61292698a0d351c6417cd7641d9b5cf2b3ed48763230966cb60405743f",
        ("./local", "/abs/ch"): "d321f7ccaab74a18631e12e06b9b307a8878105108ffa3b29becb5d6910deba7",
    }
    for channels, expected in cases.items():
        spec = EnvironmentSpec.from_dict(
            {"name": "t", "channels": list(channels), "dependencies": ["zstd"]}
        )
        assert spec.spec_hash == expected
