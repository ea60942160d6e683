"""``condastore lock`` and ``condastore build`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from condastore_web.cli import main


def write_spec(path, channel_placeholder="conda-forge", deps=("zstd", "openssl", "xz")):
    body = "".join(f"  - {d}\n" for d in deps)
    path.write_text(f"name: tools\nchannels:\n  - {channel_placeholder}\ndependencies:\n{body}")
    return path


@pytest.mark.slow
def test_build_json_on_the_sample_channel(sample_channel, tmp_path):
    spec = write_spec(tmp_path / "environment.yaml")
    # A real process, as a user runs it; --channel replaces the spec's conda-forge.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "condastore_web",
            "build",
            str(spec),
            "--json",
            "--channel",
            sample_channel,
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(proc.stdout)
    assert set(data) >= {"build_key", "spec_hash", "lock_hash", "prefix", "artifacts"}
    assert set(data["artifacts"]) == {"yaml", "lockfile", "explicit", "tarball", "log"}
    for info in data["artifacts"].values():
        assert info["digest"].startswith("sha256:")
        with open(info["path"], "rb") as f:
            assert len(f.read()) == info["size"]
    assert "==> installing" in proc.stderr  # progress on long steps
    zstd = subprocess.run([f"{data['prefix']}/bin/zstd", "-V"], capture_output=True, text=True)
    assert "v1.5.5" in zstd.stdout


def test_lock_prints_conda_lock_yaml(make_test_channel, tmp_path):
    from tests.support.packages import PackageDef

    url = make_test_channel(
        [
            PackageDef("hello", "1.0", subdir="linux-64"),
            PackageDef("hello", "1.0", subdir="osx-arm64"),
        ]
    )
    spec = write_spec(tmp_path / "env.yaml", url, deps=("hello",))
    out = tmp_path / "conda-lock.yml"
    result = CliRunner().invoke(
        main,
        [
            "lock",
            str(spec),
            "-p",
            "linux-64",
            "-p",
            "osx-arm64",
            "-o",
            str(out),
            "--data-dir",
            str(tmp_path / "d"),
        ],
    )
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(out.read_text())
    assert sorted(data["metadata"]["platforms"]) == ["linux-64", "osx-arm64"]
    assert {p["platform"] for p in data["package"]} == {"linux-64", "osx-arm64"}


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("name: x\ndependencies: [zstd\n", "line 3"),
        ("name: x\nfoo: 1\ndependencies: [zstd]\n", "unknown key 'foo'"),
        ("name: x\ndependencies: [python]\n", "no package named 'python'"),
    ],
)
def test_errors_are_one_clear_line_and_exit_1(make_test_channel, tmp_path, content, words):
    from tests.support.packages import PackageDef

    url = make_test_channel([PackageDef("zstd", "1.0")])
    spec = tmp_path / "env.yaml"
    spec.write_text(content)
    result = CliRunner().invoke(
        main, ["build", str(spec), "-c", url, "--data-dir", str(tmp_path / "d")]
    )
    assert result.exit_code == 1
    assert result.output.startswith("error: ") or "error: " in result.output
    assert words in result.output
    assert "Traceback" not in result.output
