"""The same lock gives the same bytes on any machine: every artifact, layer and manifest.

Two builds from empty data directories, with different ``HOME``, ``TMPDIR``
and clock (libfaketime moves the second one years ahead), must print the same
digests for the lockfile, the pinned yaml, the explicit file, the conda-pack
tarball, every image layer (merged ones included), the config, the manifest
and the index.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.support.packages import PackageDef

CRAFTED = [
    PackageDef("cloba", "1.0", files={"share/clob.txt": "a\n"}, depends=["zstd"]),
    PackageDef("clobb", "1.0", files={"share/clob.txt": "b\n"}, has_prefix_file=True),
    PackageDef("placed", "1.0", has_prefix_file=True, depends=["xz"]),
]


def build_in(root: Path, channels: list[str], deps: list[str], clock: str | None) -> dict:
    (root / "home").mkdir(parents=True)
    # Short: child processes put their sockets in TMPDIR (AF_UNIX paths are short).
    tmp = tempfile.mkdtemp(prefix="r")
    env = {
        **os.environ,
        "HOME": str(root / "home"),
        "TMPDIR": tmp,
        "PYTHONPATH": os.pathsep.join([os.environ.get("PYTHONPATH", ""), str(REPO_ROOT)]),
    }
    command = [sys.executable, "-m", "tests.support.reproduce", str(root / "data")]
    command += [*channels, "--", *deps]
    if clock is not None:
        command = ["faketime", "-f", clock, *command]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=600
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.slow
def test_two_machines_make_the_same_bytes(sample_channel, make_test_channel, tmp_path):
    if shutil.which("faketime") is None:
        pytest.skip("libfaketime (the faketime command) is not installed")
    channels = [make_test_channel(CRAFTED), sample_channel]
    deps = ["cloba", "clobb", "placed", "zstd", "xz"]
    first = build_in(tmp_path / "one", channels, deps, None)
    second = build_in(tmp_path / "two-machine", channels, deps, "+1700d")
    assert set(first["artifacts"]) == {"lockfile", "yaml", "explicit", "tarball"}
    for key in ("artifacts", "layers", "config", "manifest", "index"):
        assert first[key] == second[key], key
