"""Installing a lock into a prefix, checking sha256, and conda-pack tarballs that relocate."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from condastore_core.errors import InstallError
from condastore_core.install import install_lock
from condastore_core.lock import Lock
from condastore_core.pack import pack_prefix
from condastore_core.progress import CollectingReporter
from condastore_core.solve import Solver
from condastore_core.spec import EnvironmentSpec
from tests.support.packages import PackageDef


def lock_for(channel: str, *deps: str) -> Lock:
    spec = EnvironmentSpec.from_dict(
        {"name": "t", "channels": [channel], "dependencies": list(deps)}
    )
    return Solver().solve(spec, ["linux-64"])


def run(*cmd) -> str:
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True).stdout


@pytest.mark.slow
def test_conda_forge_tools_install_and_run(sample_channel, tmp_path):
    lock = lock_for(sample_channel, "zstd", "openssl", "xz")
    log = CollectingReporter()
    prefix = install_lock(lock, "linux-64", tmp_path / "env", tmp_path / "pkgs", log)
    assert "v1.5.5" in run(prefix / "bin" / "zstd", "-V")
    assert run(prefix / "bin" / "openssl", "version").startswith("OpenSSL 3.")
    assert "xz (XZ Utils)" in run(prefix / "bin" / "xz", "--version")
    assert any("linking openssl" in line for line in log.lines)
    assert not list(tmp_path.glob(".staging-*"))


def test_test_packages_install_with_prefix_replaced(make_test_channel, tmp_path):
    url = make_test_channel([PackageDef("hello", "1.0", has_prefix_file=True)])
    prefix = install_lock(lock_for(url, "hello"), "linux-64", tmp_path / "env", tmp_path / "pkgs")
    assert run(prefix / "bin" / "hello").strip() == "hello 1.0"
    replaced = [
        p for p in prefix.rglob("*") if p.is_file() and str(prefix) in p.read_text(errors="ignore")
    ]
    assert replaced, "the prefix placeholder was not replaced with the final prefix"
    records = list((prefix / "conda-meta").glob("hello-1.0-*.json"))
    assert len(records) == 1


def test_sha256_mismatch_is_refused_and_leaves_nothing(make_test_channel, tmp_path):
    url = make_test_channel([PackageDef("hello", "1.0")])
    lock = lock_for(url, "hello")
    bad = lock.packages["linux-64"][0].model_copy(update={"sha256": "0" * 64})
    tampered = Lock.create(list(lock.channels), {"linux-64": [bad]})
    with pytest.raises(InstallError, match=r"sha256|hash|checksum"):
        install_lock(tampered, "linux-64", tmp_path / "env", tmp_path / "pkgs")
    assert not (tmp_path / "env").exists()
    assert not list(tmp_path.glob(".staging-*"))


def test_modified_archive_in_channel_is_refused(make_test_channel, tmp_path):
    url = make_test_channel([PackageDef("hello", "1.0", archive="tar.bz2")])
    lock = lock_for(url, "hello")
    archive = Path(lock.packages["linux-64"][0].url.removeprefix("file://"))
    original = hashlib.sha256(archive.read_bytes()).hexdigest()
    # Replace the archive by another valid package with the same file name.
    other = make_test_channel(
        [
            PackageDef(
                "hello", "1.0", archive="tar.bz2", files={"bin/hello": "#!/bin/sh\necho evil\n"}
            )
        ]
    )
    shutil.copy(Path(other.removeprefix("file://")) / "linux-64" / archive.name, archive)
    assert hashlib.sha256(archive.read_bytes()).hexdigest() != original
    with pytest.raises(InstallError):
        install_lock(lock, "linux-64", tmp_path / "env", tmp_path / "pkgs")


def test_existing_prefix_is_not_overwritten(make_test_channel, tmp_path):
    url = make_test_channel([PackageDef("hello", "1.0")])
    (tmp_path / "env").mkdir()
    with pytest.raises(InstallError, match="already exists"):
        install_lock(lock_for(url, "hello"), "linux-64", tmp_path / "env", tmp_path / "pkgs")


def test_concurrent_installs_share_one_package_cache(make_test_channel, tmp_path):
    url = make_test_channel([PackageDef(f"p{i}", "1.0") for i in range(6)])
    lock = lock_for(url, *[f"p{i}" for i in range(6)])
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            install_lock(lock, "linux-64", tmp_path / f"env{i}", tmp_path / "pkgs")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i in range(4):
        assert run(tmp_path / f"env{i}" / "bin" / "p3").strip() == "p3 1.0"
    cached = [p for p in (tmp_path / "pkgs").iterdir() if p.is_dir() and p.name.startswith("p")]
    assert len(cached) == 6  # one extracted copy per package, whatever the number of installs


@pytest.mark.slow
def test_conda_pack_tarball_relocates(sample_channel, tmp_path):
    prefix = install_lock(
        lock_for(sample_channel, "zstd", "openssl"), "linux-64", tmp_path / "env", tmp_path / "pkgs"
    )
    tarball = pack_prefix(prefix, tmp_path / "out" / "env.tar.gz")
    target = tmp_path / "elsewhere"
    target.mkdir()
    with tarfile.open(tarball) as tf:
        tf.extractall(target, filter="tar")
    shutil.rmtree(prefix)  # the original is gone: the copy must stand alone
    run(target / "bin" / "conda-unpack")
    assert run(target / "bin" / "openssl", "version").startswith("OpenSSL 3.")
    assert "v1.5.5" in run(target / "bin" / "zstd", "-V")
    meta = json.loads(next((target / "conda-meta").glob("zstd-*.json")).read_text())
    assert meta["name"] == "zstd"
