"""Packages with paths outside the prefix are refused before linking, naming package and path.

install, image layers and the tarball's second link all read each archive
first; nothing is written outside the prefix and the scratch directories.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from condastore_core.image.builder import ImageBuilder
from condastore_core.install import install_lock
from condastore_core.lock import Lock
from condastore_core.pack import pack_prefix
from condastore_core.package_paths import UnsafePackage, escapes, link_escapes
from condastore_core.solve import Solver
from condastore_core.spec import EnvironmentSpec
from condastore_core.store import LocalBlobStore
from tests.core.test_image import MemoryLayerCache
from tests.support.hostile_packages import make_hostile_channel, outside_state

ESCAPING = {
    "evil-abspath": "abs-written",
    "evil-dotdot": "../../../../dotdot-written",
    "evil-symlink": "share/out -> ",
    "evil-hardlink": "share/secret => ",
}


def lock_for(channel: str, *deps: str) -> Lock:
    spec = EnvironmentSpec.from_dict({"name": "t", "channels": [channel], "dependencies": deps})
    return Solver().solve(spec, ["linux-64"])


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    outside = root / "outside"
    url = make_hostile_channel(root / "channel", outside, list(ESCAPING))
    return url, outside


def test_paths_are_judged_as_rattler_would_link_them():
    for path in ("/etc/x", "../x", "a/../../x", "a/..", "C:/x", "\\x", "a\\..\\..\\x", ""):
        assert escapes(path), path
    for path in ("bin/x", "share/..x/y", "lib/a..b"):
        assert not escapes(path), path
    assert link_escapes("share/a", "/etc/passwd")
    assert link_escapes("share/a", "../../x")
    assert not link_escapes("lib/libz.so", "libz.so.1")
    assert not link_escapes("share/a/b", "../../bin/x")


@pytest.mark.parametrize("name", list(ESCAPING))
def test_install_refuses_a_package_with_a_path_outside_the_prefix(hostile, tmp_path, name):
    url, outside = hostile
    before = outside_state(outside)
    lock = lock_for(url, name)
    with pytest.raises(UnsafePackage) as refused:
        install_lock(lock, "linux-64", tmp_path / "env", tmp_path / "pkgs")
    message = str(refused.value)
    assert message.startswith(f"package {name}-1.0-0 holds a path outside the prefix: ")
    assert ESCAPING[name] in message
    assert not (tmp_path / "env").exists() and not list(tmp_path.glob(".staging-*"))
    assert outside_state(outside) == before


@pytest.mark.parametrize("name", ["evil-dotdot", "evil-symlink"])
def test_image_layers_refuse_a_package_with_a_path_outside_the_prefix(hostile, tmp_path, name):
    url, outside = hostile
    before = outside_state(outside)
    lock = lock_for(url, name)
    store = LocalBlobStore(tmp_path / "blobs")
    builder = ImageBuilder(store, MemoryLayerCache(), tmp_path / "pkgs", tmp_path / "scratch")
    with pytest.raises(UnsafePackage, match=f"package {name}-1.0-0 holds a path outside"):
        builder.build_layers(lock, "linux-64", [name])
    assert list(store.iterate()) == []
    assert outside_state(outside) == before


def test_pack_refuses_a_package_whose_cache_entry_was_replaced(
    hostile, make_test_channel, tmp_path
):
    """The tarball links the prefix's packages again: a package record pointing at a hostile
    archive (a prefix edited by hand, a cache swapped under it) is read before it is linked."""
    url, outside = hostile
    before = outside_state(outside)
    lock = lock_for(url, "tool")
    prefix = install_lock(lock, "linux-64", tmp_path / "env", tmp_path / "pkgs")
    evil = lock_for(url, "evil-dotdot").records("linux-64")[0]
    meta = next((prefix / "conda-meta").glob("tool-*.json"))
    record = json.loads(meta.read_text())
    record.update(
        name=evil.name, version=evil.version, build=evil.build, url=evil.url, sha256=evil.sha256
    )
    record["fn"] = evil.file_name
    meta.write_text(json.dumps(record))
    with pytest.raises(UnsafePackage, match=r"package evil-dotdot-1\.0-0 holds a path outside"):
        pack_prefix(prefix, tmp_path / "out" / "env.tar.gz")
    assert not (tmp_path / "out" / "env.tar.gz").exists()
    assert outside_state(outside) == before
    assert not Path("/dotdot-written").exists()
