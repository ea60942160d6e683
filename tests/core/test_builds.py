"""The local pipeline: spec -> lock -> prefix -> artifacts, idempotent by lock hash."""

from __future__ import annotations

import subprocess
import threading

import pytest
from conda_lock.lockfile import parse_conda_lock_file

from condastore_core.artifacts import ArtifactKind
from condastore_core.builds import LocalBuilder
from condastore_core.digests import Digest
from condastore_core.lock import parse_conda_lock_yaml
from condastore_core.solve import Solver
from condastore_core.spec import EnvironmentSpec
from condastore_core.store import LocalBlobStore, read_all
from tests.support.packages import PackageDef


@pytest.fixture
def builder(tmp_path):
    return LocalBuilder(tmp_path / "data", LocalBlobStore(tmp_path / "data" / "blobs"), Solver())


def spec(channel, *deps, name="t", **kw):
    return EnvironmentSpec.from_dict(
        {"name": name, "channels": [channel], "dependencies": list(deps), **kw}
    )


def test_build_writes_every_artifact_into_the_store(builder, make_test_channel, tmp_path):
    url = make_test_channel([PackageDef("hello", "1.0")])
    result = builder.build(spec(url, "hello"))
    assert set(result.artifacts) == set(ArtifactKind) - {ArtifactKind.REQUIREMENTS}  # no pip
    for info in result.artifacts.values():
        data = read_all(builder.store, info.digest)
        assert len(data) == info.size
        assert Digest.parse(str(info.digest)) == info.digest
    lockfile = tmp_path / "conda-lock.yml"
    lockfile.write_bytes(read_all(builder.store, result.artifacts[ArtifactKind.LOCKFILE].digest))
    assert [p.name for p in parse_conda_lock_file(lockfile).package] == ["hello"]
    explicit = read_all(builder.store, result.artifacts[ArtifactKind.EXPLICIT].digest).decode()
    assert "@EXPLICIT" in explicit and "hello-1.0-0.conda#" in explicit  # url#md5
    pinned = read_all(builder.store, result.artifacts[ArtifactKind.YAML].digest).decode()
    assert "hello=1.0=" in pinned
    log = read_all(builder.store, result.artifacts[ArtifactKind.LOG].digest).decode()
    assert "linking hello" in log and "complete" in log
    assert result.build_key == result.lock_hash[:16]
    out = subprocess.run([result.prefix / "bin" / "hello"], capture_output=True, text=True)
    assert out.stdout.strip() == "hello 1.0"


def test_same_lock_is_built_once(builder, make_test_channel):
    url = make_test_channel([PackageDef("hello", "1.0")])
    first = builder.build(spec(url, "hello"))
    marker = first.prefix / "marker"
    marker.write_text("still the same prefix")
    # A different spec (other name, other formatting) that locks to the same packages.
    second = builder.build(spec(url, "hello >=1", name="other"))
    assert second.reused and not first.reused
    assert second.build_key == first.build_key
    assert second.artifacts == first.artifacts
    assert second.spec_hash != first.spec_hash
    assert marker.read_text() == "still the same prefix"


def test_build_from_a_lockfile_reuses_the_build_of_that_lock(builder, make_test_channel):
    url = make_test_channel([PackageDef("hello", "1.0"), PackageDef("dep", "2.0")])
    first = builder.build(spec(url, "hello", "dep"))
    text = read_all(builder.store, first.artifacts[ArtifactKind.LOCKFILE].digest).decode()
    again = builder.build(lock=parse_conda_lock_yaml(text))
    assert again.reused and again.build_key == first.build_key


def test_lockfile_input_builds_exactly_that_lock_without_solving(tmp_path, make_test_channel):
    url = make_test_channel([PackageDef("hello", "1.0"), PackageDef("hello", "2.0")])
    a = LocalBuilder(tmp_path / "a", LocalBlobStore(tmp_path / "a" / "blobs"), Solver())
    first = a.build(spec(url, "hello 1.0"))
    text = read_all(a.store, first.artifacts[ArtifactKind.LOCKFILE].digest).decode()
    # A fresh data dir whose solver has no channel at all: the lock alone must suffice.
    b = LocalBuilder(
        tmp_path / "b", LocalBlobStore(tmp_path / "b" / "blobs"), Solver(default_channels=[])
    )
    result = b.build(lock=parse_conda_lock_yaml(text))
    assert not result.reused and result.lock_hash == first.lock_hash
    out = subprocess.run([result.prefix / "bin" / "hello"], capture_output=True, text=True)
    assert out.stdout.strip() == "hello 1.0"


def test_damaged_build_is_rebuilt(builder, make_test_channel):
    url = make_test_channel([PackageDef("hello", "1.0")])
    first = builder.build(spec(url, "hello"))
    builder.store.delete(first.artifacts[ArtifactKind.YAML].digest)
    again = builder.build(spec(url, "hello"))
    assert not again.reused
    assert builder.store.exists(again.artifacts[ArtifactKind.YAML].digest)


def test_cross_platform_lock_writes_lockfiles_only(builder, make_test_channel):
    url = make_test_channel([PackageDef("tool", "1.0", subdir="osx-arm64")])
    result = builder.build(spec(url, "tool", platforms=["osx-arm64"]))
    assert result.prefix is None
    assert set(result.artifacts) == {
        ArtifactKind.YAML,
        ArtifactKind.LOCKFILE,
        ArtifactKind.EXPLICIT,
        ArtifactKind.LOG,
    }
    assert result.platform == "osx-arm64"


def test_concurrent_builds_of_one_lock_install_once(builder, make_test_channel):
    url = make_test_channel([PackageDef("hello", "1.0")])
    results = []

    def work() -> None:
        results.append(builder.build(spec(url, "hello")))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert sum(not r.reused for r in results) == 1
    assert len({r.build_key for r in results}) == 1
    envs = [p for p in (builder.data_dir / "envs").iterdir()]
    assert [p.name for p in envs] == [results[0].build_key]
