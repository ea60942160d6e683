"""The explicit file and conda-lock.yml are read by the real tools as their own.

conda's explicit-file parser is conda-forge's conda 24.5 from the sample
channel, imported as a library (with tqdm and boltons from the same channel);
conda-lock is the installed package, run as its command line.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
import zstandard

from condastore_core.lock import to_explicit
from condastore_core.render import conda_lock_yml
from condastore_core.solve import Solver
from condastore_core.spec import EnvironmentSpec

#: Reads an explicit file as ``conda create --file`` does (``specs_from_url``), then
#: hands it to conda's own ``explicit`` in dry-run mode: it parses every line into
#: a MatchSpec and stops before fetching anything.
CONDA_PARSE = """
import argparse, pathlib, sys
from conda.base.context import reset_context
reset_context(argparse_args=argparse.Namespace(dry_run=True))
from conda.cli.common import specs_from_url
from conda.exceptions import DryRunExit, ParseError
from conda.misc import explicit
try:
    explicit(specs_from_url(pathlib.Path(sys.argv[1]).as_uri()), sys.argv[2])
except DryRunExit:
    print("parsed")
except ParseError as exc:
    print("refused:", exc)
"""


def _site_packages(archive: Path, dest: Path) -> None:
    """Extract the python files of a conda package (``.conda`` or ``.tar.bz2``) into ``dest``."""

    def extract(tar: tarfile.TarFile) -> None:
        for member in tar:
            for head in ("site-packages/", "lib/python3.10/site-packages/"):
                if member.name.startswith(head) and (member.isfile() or member.isdir()):
                    member.name = member.name[len(head) :]
                    tar.extract(member, dest, filter="data")

    if archive.suffix == ".conda":
        with zipfile.ZipFile(archive) as z:
            name = next(n for n in z.namelist() if n.startswith("pkg-"))
            stream = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(z.read(name)))
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                extract(tar)
    else:
        with tarfile.open(archive) as tar:
            extract(tar)


@pytest.fixture(scope="module")
def conda_library(sample_channel, tmp_path_factory) -> Path:
    root = Path(urlparse(sample_channel).path)
    wanted = [
        *root.glob("linux-64/conda-24.5.0-*.conda"),
        *root.glob("noarch/tqdm-[0-9]*"),
        *root.glob("noarch/boltons-[0-9]*"),
    ]
    if len(wanted) < 3:
        pytest.skip("the sample channel lacks conda 24.5, tqdm or boltons")
    dest = tmp_path_factory.mktemp("conda-library")
    for archive in wanted:
        _site_packages(archive, dest)
    return dest


def sample_lock(sample_channel: str, *deps: str):  # type: ignore[no-untyped-def]
    spec = EnvironmentSpec.from_dict(
        {"name": "interop", "channels": [sample_channel], "dependencies": list(deps)}
    )
    return spec, Solver().solve(spec, ["linux-64"])


def conda_parse(library: Path, text: str, tmp_path: Path) -> str:
    path = tmp_path / "explicit.txt"
    path.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(library), "CONDA_PKGS_DIRS": str(tmp_path / "pkgs")}
    result = subprocess.run(
        [sys.executable, "-c", CONDA_PARSE, str(path), str(tmp_path / "env")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_conda_reads_the_explicit_file(sample_channel, conda_library, tmp_path):
    _, lock = sample_lock(sample_channel, "zstd", "xz")
    text = to_explicit(lock, "linux-64")
    assert conda_parse(conda_library, text, tmp_path) == "parsed"
    # The parser is strict: the sha256 form condastore wrote before is refused.
    old = "".join(f"{r.url}#sha256:{r.sha256}\n" for r in lock.records("linux-64"))
    assert conda_parse(conda_library, "@EXPLICIT\n" + old, tmp_path).startswith("refused:")


def test_conda_lock_finds_the_lockfile_fresh(sample_channel, tmp_path):
    spec, lock = sample_lock(sample_channel, "zstd")
    (tmp_path / "environment.yaml").write_text(yaml.safe_dump(spec.to_environment_yaml()))
    (tmp_path / "conda-lock.yml").write_text(conda_lock_yml(spec, lock))
    conda_lock = Path(sys.executable).with_name("conda-lock")
    solver = tmp_path / "no-solver"  # conda-lock wants one named; a fresh lock never runs it
    solver.write_text(
        '#!/bin/sh\n[ "$1" = --version ] && echo "conda 24.5.0" && exit 0\n'
        "echo a stale lock would be solved again >&2\nexit 3\n"
    )
    solver.chmod(0o755)
    command = ["lock", "-f", "environment.yaml", "--lockfile", "conda-lock.yml"]
    result = subprocess.run(
        [conda_lock, *command, "--check-input-hash", "-p", "linux-64", "--conda", solver],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Fresh: conda-lock skips the solve (it has no solver here; a stale hash fails).
    assert result.returncode == 0, result.stderr
    assert "already locked for ['linux-64']" in result.stderr
