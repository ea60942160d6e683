"""Environment images: deterministic per-package layers, shared between images, any platform."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import tarfile

import pytest

from condastore_core.digests import Digest
from condastore_core.image import manifest as oci
from condastore_core.image.builder import ImageBuilder, link_order
from condastore_core.image.cache import LayerRecord
from condastore_core.image.tarball import ZSTD
from condastore_core.lock import parse_conda_lock_yaml, to_conda_lock_yaml
from condastore_core.solve import Solver
from condastore_core.spec import EnvironmentSpec
from condastore_core.store import LocalBlobStore, read_all
from tests.support.packages import ARCHIVE_MTIME, PackageDef


class MemoryLayerCache:
    """The layer cache interface over a dict (the service's lives in the database)."""

    def __init__(self) -> None:
        self.entries: dict[str, LayerRecord] = {}

    def get(self, key: str) -> LayerRecord | None:
        return self.entries.get(key)

    def get_many(self, keys):  # type: ignore[no-untyped-def]
        return {k: self.entries[k] for k in keys if k in self.entries}

    def put(self, key: str, record: LayerRecord) -> None:
        self.entries[key] = record


def make_builder(root, **kw) -> ImageBuilder:
    store = LocalBlobStore(root / "blobs")
    return ImageBuilder(store, MemoryLayerCache(), root / "pkgs", root / "tmp", **kw)


def lock_of(channel, *deps, platform="linux-64"):
    spec = EnvironmentSpec.from_dict(
        {"name": "i", "channels": [channel], "dependencies": list(deps)}
    )
    return Solver().solve(spec, [platform])


def layer_members(builder, record) -> dict[str, tarfile.TarInfo]:
    data = read_all(builder.store, Digest.parse(record.digest))
    if record.media_type.endswith("gzip"):
        data = gzip.decompress(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name: m for m in tf.getmembers()}


def test_one_layer_per_package_plus_final(make_test_channel, tmp_path):
    url = make_test_channel(
        [PackageDef("hello", "1.0", depends=["libx"]), PackageDef("libx", "2.0")]
    )
    b = make_builder(tmp_path)
    image = b.build(lock_of(url, "hello"), "linux-64", labels={"k": "v"})
    assert image.layers_built == 2
    assert [r.packages for r in image.layers] == [("libx",), ("hello",), ()]  # deps first
    manifest = json.loads(image.manifest)
    config = json.loads(read_all(b.store, image.config_digest))
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert config["rootfs"]["diff_ids"] == [r.diff_id for r in image.layers]
    assert "CONDA_PREFIX=/opt/conda" in config["config"]["Env"]
    assert config["config"]["Labels"]["k"] == "v"
    assert [x["digest"] for x in manifest["layers"]] == [r.digest for r in image.layers]
    members = layer_members(b, image.layers[1])
    assert "opt/conda/bin/hello" in members
    assert members["opt/conda/bin/hello"].mode == 0o755
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members.values())
    meta_name = next(n for n in members if n.startswith("opt/conda/conda-meta/hello-"))
    assert members[meta_name].isfile()


def test_conda_meta_in_layers_is_normalised(make_test_channel, tmp_path):
    url = make_test_channel([PackageDef("hello", "1.0", has_prefix_file=True)])
    b = make_builder(tmp_path)
    image = b.build(lock_of(url, "hello"), "linux-64")
    data = gzip.decompress(read_all(b.store, Digest.parse(image.layers[0].digest)))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        meta_member = next(m for m in tf.getmembers() if m.name.endswith(".json"))
        meta = json.loads(tf.extractfile(meta_member).read())
        texts = [tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()]
    for field in ("extracted_package_dir", "package_tarball_full_path", "requested_specs", "link"):
        assert field not in meta
    assert str(tmp_path).encode() not in b"".join(texts)  # nothing of this machine leaks in
    assert any(b"/opt/conda" in t for t in texts)  # the placeholder became the image prefix


def test_second_image_reuses_shared_layers(make_test_channel, tmp_path):
    url = make_test_channel([PackageDef(n, "1.0") for n in ("a", "b", "c")])
    b = make_builder(tmp_path)
    first = b.build(lock_of(url, "a", "b"), "linux-64")
    second = b.build(lock_of(url, "a", "c"), "linux-64")
    assert first.layers_built == 2 and second.layers_built == 1
    shared = {r.digest for r in first.layers} & {r.digest for r in second.layers}
    assert {r.digest for r in first.layers if r.packages == ("a",)} <= shared


def test_rebuild_from_empty_cache_is_byte_identical(make_test_channel, tmp_path):
    url = make_test_channel(
        [
            PackageDef("hello", "1.0", has_prefix_file=True),
            PackageDef("other", "1.0", archive="tar.bz2"),
        ]
    )
    one = make_builder(tmp_path / "one").build(lock_of(url, "hello", "other"), "linux-64")
    two = make_builder(tmp_path / "two").build(lock_of(url, "hello", "other"), "linux-64")
    assert one.manifest_digest == two.manifest_digest
    assert one.manifest == two.manifest


def test_zstd_layers(make_test_channel, tmp_path):
    url = make_test_channel([PackageDef("hello", "1.0")])
    image = make_builder(tmp_path, compression=ZSTD).build(lock_of(url, "hello"), "linux-64")
    assert all(r.media_type.endswith("+zstd") for r in image.layers)


def test_aarch64_image_on_any_machine(make_test_channel, tmp_path):
    url = make_test_channel([PackageDef("tool", "1.0", subdir="linux-aarch64")])
    b = make_builder(tmp_path)
    image = b.build(lock_of(url, "tool", platform="linux-aarch64"), "linux-aarch64")
    config = json.loads(read_all(b.store, image.config_digest))
    assert (config["architecture"], config.get("variant")) == ("arm64", "v8")
    assert "opt/conda/bin/tool" in layer_members(b, image.layers[0])


def test_an_image_on_a_base_layout_gets_its_layers_and_an_entrypoint(make_test_channel, tmp_path):
    from condastore_core.image.base import resolve_base
    from tests.support.oci_layout import write_layout

    url = make_test_channel([PackageDef("hello", "1.0")])
    write_layout(tmp_path / "base", {"bin/sh": b"#!a shell"}, env=["PATH=/usr/bin:/bin", "LANG=C"])
    b = make_builder(tmp_path)
    base = resolve_base(str(tmp_path / "base"), "linux-64", b.store)
    image = b.build(lock_of(url, "hello"), "linux-64", base=base)
    config = json.loads(read_all(b.store, image.config_digest))
    assert image.layers[0] == base.layers[0]  # the base's layer, as it is
    assert "bin/sh" in layer_members(b, image.layers[0])
    assert config["rootfs"]["diff_ids"][0] == base.layers[0].diff_id
    assert config["config"]["Entrypoint"] == ["/opt/conda/.condastore/entrypoint.sh"]
    assert "PATH=/opt/conda/bin:/usr/bin:/bin" in config["config"]["Env"]
    assert "LANG=C" in config["config"]["Env"]
    assert "opt/conda/.condastore/entrypoint.sh" in layer_members(b, image.layers[-1])


def test_created_is_the_date_of_the_newest_package_not_1970(make_test_channel, tmp_path):
    url = make_test_channel(
        [PackageDef("hello", "1.0", depends=["libx"]), PackageDef("libx", "2.0")]
    )
    lock = lock_of(url, "hello")
    image = make_builder(tmp_path).build(lock, "linux-64")
    config = json.loads(read_all(make_builder(tmp_path).store, image.config_digest))
    when = dt.datetime.fromtimestamp(ARCHIVE_MTIME, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert config["created"] == when  # the test packages' build time, from their repodata
    assert json.loads(image.manifest)["annotations"][oci.CREATED] == when
    # The lock re-read from its conda-lock.yml (managed environments) has the same date.
    again = parse_conda_lock_yaml(to_conda_lock_yaml(lock))
    assert again.lock_hash == lock.lock_hash
    other = make_builder(tmp_path / "other")
    rebuilt = other.build(again, "linux-64")
    assert json.loads(read_all(other.store, rebuilt.config_digest))["created"] == when


def test_images_carry_oci_annotations_and_labels(make_test_channel, tmp_path):
    url = make_test_channel([PackageDef("hello", "1.0")])
    lock = lock_of(url, "hello")
    info = oci.ImageInfo(
        title="default/web",
        description="a web tool",
        source=url,
        version="hello=1.0",
        revision=lock.build_key,
    )
    b = make_builder(tmp_path)
    image = b.build(lock, "linux-64", info=info, labels={"org.condastore.build-key": "x"})
    annotations = json.loads(image.manifest)["annotations"]
    assert annotations == {
        oci.CREATED: oci.created_at(lock.source_date_epoch),
        oci.TITLE: "default/web",
        oci.DESCRIPTION: "a web tool",
        oci.SOURCE: url,
        oci.VERSION: "hello=1.0",
        oci.REVISION: lock.build_key,
    }
    labels = json.loads(read_all(b.store, image.config_digest))["config"]["Labels"]
    assert labels == {**annotations, "org.condastore.build-key": "x"}


def test_history_has_one_entry_per_layer_naming_its_packages(make_test_channel, tmp_path):
    from condastore_core.image.base import resolve_base
    from tests.support.oci_layout import write_layout

    url = make_test_channel(
        [PackageDef("hello", "1.0", depends=["libx"]), PackageDef("libx", "2.0")]
    )
    write_layout(tmp_path / "base", {"bin/sh": b"#!a shell"})
    b = make_builder(tmp_path)
    base = resolve_base(str(tmp_path / "base"), "linux-64", b.store)
    image = b.build(lock_of(url, "hello"), "linux-64", base=base)
    config = json.loads(read_all(b.store, image.config_digest))
    history = config["history"]
    assert len([h for h in history if not h.get("empty_layer")]) == len(
        config["rootfs"]["diff_ids"]
    )
    assert history[0]["created_by"] == f"base image {tmp_path / 'base'}"
    assert history[1]["created_by"] == "condastore: conda package libx-2.0-0"
    assert history[2]["created_by"] == "condastore: conda package hello-1.0-0"
    assert "conda-meta/history" in history[3]["created_by"]
    assert all(h["created"] == config["created"] for h in history[1:])


def test_a_base_keeps_its_own_history(make_test_channel, tmp_path):
    from condastore_core.image.base import resolve_base
    from tests.support.oci_layout import write_layout

    url = make_test_channel([PackageDef("hello", "1.0")])
    own = [
        {
            "created": "2024-01-02T00:00:00Z",
            "created_by": "/bin/sh -c #(nop) ENV X=1",
            "empty_layer": True,
        },
        {"created": "2024-01-02T00:00:01Z", "created_by": "ADD rootfs.tar /"},
    ]
    write_layout(tmp_path / "base", {"bin/sh": b"#!a shell"}, history=own)
    b = make_builder(tmp_path)
    base = resolve_base(str(tmp_path / "base"), "linux-64", b.store)
    image = b.build(lock_of(url, "hello"), "linux-64", base=base)
    history = json.loads(read_all(b.store, image.config_digest))["history"]
    assert history[:2] == own
    assert history[2]["created_by"] == "condastore: conda package hello-1.0-0"


def test_non_linux_platforms_are_refused(make_test_channel, tmp_path):
    url = make_test_channel([PackageDef("tool", "1.0", subdir="osx-arm64")])
    with pytest.raises(ValueError, match="linux platforms only"):
        make_builder(tmp_path).build(lock_of(url, "tool", platform="osx-arm64"), "osx-arm64")


def test_link_order_puts_dependencies_first_as_rattler_links():
    from tests.core.test_lock import pkg

    ordered = link_order(
        (
            pkg("app", depends=("libb", "liba >=1")),
            pkg("libb", depends=("liba",)),
            pkg("liba"),
            pkg("zzz"),
        )
    )
    # rattler's own topological order, which decides which of two clobbering files stays.
    assert [p.name for p in ordered] == ["zzz", "liba", "libb", "app"]


def test_past_the_layer_budget_the_smallest_neighbours_merge(make_test_channel, tmp_path):
    url = make_test_channel(
        [
            PackageDef("big", "1.0", files={"bin/big": "#!/bin/sh\n" + "echo big\n" * 2000}),
            PackageDef("s1", "1.0"),
            PackageDef("s2", "1.0"),
            PackageDef("s3", "1.0"),
        ]
    )
    lock = lock_of(url, "big", "s1", "s2", "s3")
    b = make_builder(tmp_path, max_layers=3)
    image = b.build(lock, "linux-64")
    assert len(image.layers) == 3  # budget: two package layers and the final one
    # rattler links them s3, s2, s1, big: the merged neighbours keep that order.
    merged = image.layers[0]
    assert merged.packages == ("s3", "s2", "s1")
    assert image.layers[1].packages == ("big",)
    members = layer_members(b, merged)
    assert {"opt/conda/bin/s1", "opt/conda/bin/s2", "opt/conda/bin/s3"} <= set(members)
    again = make_builder(tmp_path / "fresh", max_layers=3).build(lock, "linux-64")
    assert [r.digest for r in again.layers] == [r.digest for r in image.layers]


def test_past_the_layer_budget_the_least_shared_layers_merge_first(make_test_channel, tmp_path):
    url = make_test_channel(
        [
            PackageDef("big", "1.0", files={"bin/big": "#!/bin/sh\n" + "echo big\n" * 2000}),
            PackageDef("s1", "1.0"),
            PackageDef("s2", "1.0"),
            PackageDef("s3", "1.0"),
        ]
    )
    lock = lock_of(url, "big", "s1", "s2", "s3")
    b = make_builder(tmp_path, max_layers=3)
    b.build(lock, "linux-64")
    by_package = {name: r.digest for name, r in b.plan(lock, "linux-64").layers.items()}
    asked: list[list[str]] = []

    def popularity(digests):
        asked.append(list(digests))
        return {by_package["s1"]: 7, by_package["big"]: 3}  # s2, s3: used by no other image

    b = make_builder(tmp_path, max_layers=3, popularity=popularity)
    image = b.build(lock, "linux-64")
    assert asked and set(asked[0]) == {by_package[n] for n in ("big", "s1", "s2", "s3")}
    # Only neighbours in link order (s3, s2, s1, big) merge: the unshared s3 and s2
    # first, then, both remaining pairs holding s1, the smaller one.
    assert [r.packages for r in image.layers[:-1]] == [("s3", "s2", "s1"), ("big",)]
