"""An image is its environment, file by file: layers are pure functions of their packages.

Each image here is unpacked as a container runtime would (layers in order, a
later layer's path replacing an earlier one's, whiteouts removing) and compared
with the prefix the installer makes of the same lock at the same path.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from condastore_core.digests import Digest
from condastore_core.image.builder import BuiltImage, ImageBuilder
from condastore_core.install import install_lock
from condastore_core.lock import Lock, parse_conda_lock_yaml, to_conda_lock_yaml
from condastore_core.service.images import layer_groups
from condastore_core.solve import Solver
from condastore_core.spec import EnvironmentSpec
from condastore_core.store import read_all
from tests.core.test_image import make_builder
from tests.support.packages import PackageDef

PREFIX = "opt/conda"

#: Two packages shipping the same path, each ``share/clob.txt`` its own.
CLOBBERING = [
    PackageDef("cloba", "1.0", files={"share/clob.txt": "from a\n", "bin/cloba": "a\n"}),
    PackageDef("clobb", "1.0", files={"share/clob.txt": "from b\n", "bin/clobb": "b\n"}),
]

#: The sample channel's packages that need no python (39 of them, with their dependencies).
SAMPLE_TOOLS = [
    "bzip2",
    "c-ares",
    "ca-certificates",
    "fmt",
    "keyutils",
    "krb5",
    "ld_impl_linux-64",
    "libcurl",
    "libedit",
    "libev",
    "libffi",
    "libiconv",
    "libnghttp2",
    "libnsl",
    "libsolv",
    "libsqlite",
    "libssh2",
    "libuuid",
    "libxcrypt",
    "lz4-c",
    "lzo",
    "ncurses",
    "openssl",
    "pybind11-abi",
    "readline",
    "reproc-cpp",
    "tk",
    "tzdata",
    "xz",
    "yaml",
    "yaml-cpp",
    "zstd",
]


def solve(*channels: str, deps: list[str]) -> Lock:
    spec = EnvironmentSpec.from_dict(
        {"name": "f", "channels": list(channels), "dependencies": deps}
    )
    return Solver().solve(spec, ["linux-64"])


def image_tree(builder: ImageBuilder, image: BuiltImage) -> dict[str, tuple]:
    """What a runtime unpacking the image's layers in order leaves under the prefix."""
    tree: dict[str, tuple] = {}
    for layer in image.layers:
        data = gzip.decompress(read_all(builder.store, Digest.parse(layer.digest)))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar:
                assert "__clobbers__" not in member.name
                directory, _, base = member.name.rpartition("/")
                if base.startswith(".wh."):
                    gone = f"{directory}/{base[4:]}"
                    tree = {p: v for p, v in tree.items() if p != gone and not p.startswith(gone)}
                    continue
                if member.isdir():
                    continue
                # A path replaces whatever was there, and all below it.
                tree = {p: v for p, v in tree.items() if not p.startswith(member.name + "/")}
                if member.issym():
                    tree[member.name] = ("symlink", member.linkname)
                else:
                    f = tar.extractfile(member)
                    assert f is not None
                    content = hashlib.sha256(f.read()).hexdigest()
                    tree[member.name] = ("file", bool(member.mode & 0o111), content)
    root = PREFIX + "/"
    return {p[len(root) :]: v for p, v in tree.items() if p.startswith(root)}


def prefix_tree(prefix: Path) -> dict[str, tuple]:
    tree: dict[str, tuple] = {}
    for directory, dirs, files in os.walk(prefix):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(directory, d))]:
            path = Path(directory, name)
            rel = path.relative_to(prefix).as_posix()
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                tree[rel] = ("symlink", os.readlink(path))
            else:
                content = hashlib.sha256(path.read_bytes()).hexdigest()
                tree[rel] = ("file", bool(st.st_mode & 0o111), content)
    return tree


def comparable(tree: dict[str, tuple]) -> dict[str, tuple]:
    """Package files as they are; conda-meta records by name (a layer's lists its own files)."""
    return {
        p: ("record",) if p.startswith("conda-meta/") else v
        for p, v in tree.items()
        if not p.startswith(("__clobbers__/", ".condastore/")) and p != "conda-meta/history"
    }


def assert_image_is_prefix(builder: ImageBuilder, lock: Lock, tmp_path: Path) -> BuiltImage:
    image = builder.build(lock, "linux-64")
    prefix = install_lock(
        lock, "linux-64", tmp_path / "prefix", tmp_path / "pkgs", patched_prefix="/" + PREFIX
    )
    expected = comparable(prefix_tree(prefix))
    got = comparable(image_tree(builder, image))
    differing = sorted(p for p in expected.keys() | got.keys() if expected.get(p) != got.get(p))
    assert not differing, {p: (expected.get(p), got.get(p)) for p in differing[:10]}
    return image


def test_a_clobbering_package_alone_keeps_its_file(make_test_channel, tmp_path):
    url = make_test_channel(CLOBBERING)
    builder = make_builder(tmp_path)
    builder.build(solve(url, deps=["cloba", "clobb"]), "linux-64")  # both layers built first
    for name, text in (("cloba", "from a\n"), ("clobb", "from b\n")):
        image = builder.build(solve(url, deps=[name]), "linux-64")
        tree = image_tree(builder, image)
        assert tree["share/clob.txt"][2] == hashlib.sha256(text.encode()).hexdigest(), name


@pytest.mark.parametrize(
    "depends",
    [
        {},  # no order between them but rattler's own
        {"clobb": ["cloba"]},  # clobb is linked last: its file stays
        {"cloba": ["clobb"]},  # cloba is linked last
    ],
)
def test_an_image_of_clobbering_packages_is_its_prefix(make_test_channel, tmp_path, depends):
    url = make_test_channel(
        [
            PackageDef(p.name, p.version, files=p.files, depends=depends.get(p.name, []))
            for p in CLOBBERING
        ]
    )
    assert_image_is_prefix(make_builder(tmp_path), solve(url, deps=["cloba", "clobb"]), tmp_path)


def test_merged_layers_keep_link_order(make_test_channel, tmp_path):
    """Past the budget, the small packages merge; the later-linked clobb still wins."""
    big = "#!/bin/sh\n" + "".join(f"echo {i}\n" for i in range(20000))
    url = make_test_channel(
        [
            PackageDef("cloba", "1.0", files={"share/clob.txt": "from a\n"}),
            PackageDef(
                "clobb",
                "1.0",
                depends=["cloba"],
                files={"share/clob.txt": "from b\n", "bin/big": big},
            ),
            PackageDef("s1", "1.0", depends=["clobb"]),
        ]
    )
    image = assert_image_is_prefix(
        make_builder(tmp_path, max_layers=3), solve(url, deps=["s1"]), tmp_path
    )
    assert len(image.layers) == 3 and any(len(r.packages) == 2 for r in image.layers)


def test_a_layer_is_the_same_for_a_lock_read_back_without_sizes(make_test_channel, tmp_path):
    url = make_test_channel(CLOBBERING)
    solved = solve(url, deps=["cloba", "clobb"])
    reread = parse_conda_lock_yaml(to_conda_lock_yaml(solved))
    assert all(p.size is None for p in reread.records("linux-64"))
    first = make_builder(tmp_path / "a").build(reread, "linux-64")
    second = make_builder(tmp_path / "b").build(solved, "linux-64")
    assert [r.digest for r in first.layers] == [r.digest for r in second.layers]


def test_a_lock_without_sizes_spreads_over_the_layer_jobs(make_test_channel):
    url = make_test_channel([PackageDef(f"p{i}", "1.0") for i in range(4)])
    reread = parse_conda_lock_yaml(to_conda_lock_yaml(solve(url, deps=["p0", "p1", "p2", "p3"])))
    groups = layer_groups(list(reread.records("linux-64")), 4)
    assert sorted(len(g) for g in groups) == [1, 1, 1, 1]


@pytest.mark.slow
def test_a_hundred_package_image_is_its_prefix(sample_channel, make_test_channel, tmp_path):
    """The sample's tools, 70 small packages and clobbering ones: past the 100 layer budget."""
    crafted = [PackageDef(f"fill{i:03d}", "1.0") for i in range(70)]
    crafted += [
        PackageDef("cloba", "1.0", files={"share/clob.txt": "a\n"}, depends=["zstd"]),
        PackageDef("clobb", "1.0", files={"share/clob.txt": "b\n"}, depends=["cloba"]),
        # a file where xz ships a symlink, linked after xz
        PackageDef("shadow", "1.0", files={"bin/xzcat": "#!/bin/sh\n"}, depends=["xz"]),
    ]
    url = make_test_channel(crafted)
    lock = solve(url, sample_channel, deps=[*SAMPLE_TOOLS, *(p.name for p in crafted)])
    assert len(lock.records("linux-64")) > 100
    image = assert_image_is_prefix(make_builder(tmp_path), lock, tmp_path)
    assert len(image.layers) == 100
