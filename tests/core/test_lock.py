"""Locks: hash contract, conda-lock.yml round trip through conda-lock itself, explicit lists."""

from __future__ import annotations

import hashlib
import json

import pytest
from conda_lock.lockfile import parse_conda_lock_file

from condastore_core.errors import LockError
from condastore_core.hashing import canonical_json
from condastore_core.lock import (
    Lock,
    LockedPackage,
    parse_conda_lock_yaml,
    to_conda_lock_yaml,
    to_explicit,
)
from condastore_core.pip.records import PipPackage

CH = "https://conda.anaconda.org/conda-forge"


def pkg(name: str, version: str = "1.0", subdir: str = "linux-64", **kw) -> LockedPackage:
    build = kw.pop("build", "h0_0")
    fn = f"{name}-{version}-{build}.conda"
    return LockedPackage(
        name=name,
        version=version,
        build=build,
        subdir=subdir,
        url=f"{CH}/{subdir}/{fn}",
        channel=CH,
        sha256=hashlib.sha256(fn.encode()).hexdigest(),
        md5=hashlib.md5(fn.encode()).hexdigest(),
        **kw,
    )


def sample_lock() -> Lock:
    return Lock.create(
        [CH],
        {
            "linux-64": [pkg("zstd", "1.5.5", depends=("libzlib >=1.2.13",)), pkg("libzlib")],
            "osx-arm64": [pkg("zstd", "1.5.5", "osx-arm64"), pkg("tzdata", "2024a", "noarch")],
        },
    )


def test_lock_hash_ignores_record_order_and_fields_conda_lock_cannot_carry():
    a = sample_lock()
    b = Lock.create(
        [CH],
        {
            "osx-arm64": [pkg("tzdata", "2024a", "noarch"), pkg("zstd", "1.5.5", "osx-arm64")],
            "linux-64": [
                pkg("libzlib", size=123),
                pkg("zstd", "1.5.5", depends=("libzlib >=1.2.13",)),
            ],
        },
    )
    assert a.lock_hash == b.lock_hash
    assert a.build_key == a.lock_hash[:16]


def test_lock_hash_changes_with_any_package_identity():
    a = sample_lock()
    other = Lock.create(
        [CH],
        {
            "linux-64": [pkg("zstd", "1.5.6"), pkg("libzlib")],
            "osx-arm64": list(a.packages["osx-arm64"]),
        },
    )
    assert other.lock_hash != a.lock_hash


def test_golden_lock_hash():
    lock = Lock.create([CH], {"linux-64": [pkg("zstd", "1.5.5")]})
    record = {
        "build": "h0_0",
        "depends": {},
        "md5": hashlib.md5(b"zstd-1.5.5-h0_0.conda").hexdigest(),
        "name": "zstd",
        "sha256": hashlib.sha256(b"zstd-1.5.5-h0_0.conda").hexdigest(),
        "subdir": "linux-64",
        "url": f"{CH}/linux-64/zstd-1.5.5-h0_0.conda",
        "version": "1.5.5",
    }
    expected = hashlib.sha256(
        canonical_json({"kind": "lock", "payload": {"linux-64": [record]}, "scheme": 1})
    ).hexdigest()
    assert lock.lock_hash == expected
    assert lock.lock_hash == "1716c55ab4b449b64a6c674b1769745542ea3a82e32a473ca3b7df72a756cc71"


def test_conda_lock_parses_what_we_write_and_we_read_it_back(tmp_path):
    lock = sample_lock()
    text = to_conda_lock_yaml(lock, spec_hash="ab" * 32)
    path = tmp_path / "conda-lock.yml"
    path.write_text(text)
    parsed = parse_conda_lock_file(path)  # conda-lock's own parser
    assert sorted(parsed.metadata.platforms) == ["linux-64", "osx-arm64"]
    by_key = {(p.platform, p.name): p for p in parsed.package}
    zstd = by_key[("linux-64", "zstd")]
    assert zstd.version == "1.5.5"
    assert zstd.hash.sha256 == lock.packages["linux-64"][1].sha256
    assert zstd.dependencies == {"libzlib": ">=1.2.13"}
    assert parsed.metadata.custom_metadata["condastore_lock_hash"] == lock.lock_hash

    again = parse_conda_lock_yaml(text)
    assert again.lock_hash == lock.lock_hash
    assert again.packages["osx-arm64"][0].subdir == "noarch"  # tzdata, from its URL


def varied_lock() -> Lock:
    """Channels, versions and constraints that YAML could quote, fold or escape."""
    local = "file:///srv/channels/my%20channel"
    return Lock.create(
        [CH, local, "https://example.org/label/dev/"],
        {
            "linux-64": [
                pkg("_libgcc_mutex", "0.1", build="conda_forge"),
                pkg(
                    "libgcc-ng",
                    "13.2.0",
                    depends=("_libgcc_mutex 0.1 conda_forge", "__glibc >=2.17"),
                ),
                pkg("python_abi", "3.10", build="4_cp310", depends=("python 3.10.*",)),
                pkg(
                    "yes",
                    "1e3",
                    depends=(
                        "no",
                        "on *",
                        "null >=1,<2|>=3",
                        "wide " + " ".join(["x >=1.0,<2.0a0"] * 9),
                    ),
                ),
                pkg("tzdata", "2024a", "noarch", depends=("a: b", "c #d")),
            ],
            "osx-arm64": [pkg("zstd", "1.5.5", "osx-arm64"), pkg("libzlib", "1.10", "osx-arm64")],
            "win-64": [],
        },
    )


@pytest.mark.parametrize("lock", [sample_lock(), varied_lock()], ids=["sample", "varied"])
@pytest.mark.parametrize("spec_hash", [None, "ab" * 32])
def test_conda_lock_yml_is_byte_for_byte_what_conda_locks_writer_writes(lock, spec_hash):
    from condastore_core.lock import _conda_lock_writer

    hashes = {p: spec_hash or lock.lock_hash for p in lock.platforms}
    assert to_conda_lock_yaml(lock, spec_hash=spec_hash) == _conda_lock_writer(
        lock, spec_hash, hashes
    )


def test_channel_credentials_become_variables_as_conda_lock_writes_them(monkeypatch):
    monkeypatch.setenv("PRIVATE_CHANNEL_USERNAME", "alice")
    monkeypatch.setenv("PRIVATE_CHANNEL_PASSWORD", "s3cret")
    channel = "https://alice:s3cret@private.example.org/channel"
    lock = Lock.create([channel], {"linux-64": [pkg("zstd")]})
    text = to_conda_lock_yaml(lock)
    assert "s3cret" not in text.split("package:")[0]
    assert "url: https://${PRIVATE_CHANNEL_USERNAME}:${PRIVATE_CHANNEL_PASSWORD}@" in text
    assert "- PRIVATE_CHANNEL_PASSWORD" in text


def test_explicit_list_pins_each_url_by_md5_as_conda_lock_renders_it():
    lock = sample_lock()
    text = to_explicit(lock, "linux-64")
    lines = text.splitlines()
    assert "# platform: linux-64" in lines
    urls = lines[lines.index("@EXPLICIT") + 1 :]
    assert urls == [f"{r.url}#{r.md5}" for r in lock.packages["linux-64"]]
    with pytest.raises(LockError, match="no packages for win-64"):
        to_explicit(lock, "win-64")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("version: 1\nmetadata: {}\npackage: []\n", "invalid conda-lock.yml"),
        ("package: []\n", "invalid conda-lock.yml"),
        ("version: 9\nmetadata: {}\npackage: []\n", "invalid conda-lock.yml"),
        (": : :\n", "invalid conda-lock.yml"),
    ],
)
def test_bad_lockfiles_are_refused(text, words):
    with pytest.raises(LockError, match=words):
        parse_conda_lock_yaml(text)


def wheel(name: str, version: str = "1.0", *depends: str) -> PipPackage:
    fn = f"{name}-{version}-py3-none-any.whl"
    return PipPackage(
        name=name,
        version=version,
        url=f"https://files.example.org/{fn}",
        sha256=hashlib.sha256(fn.encode()).hexdigest(),
        depends=depends,
    )


def pip_lock() -> Lock:
    return Lock.create(
        [CH],
        {"linux-64": [pkg("python", "3.11.7"), pkg("zstd")]},
        pip={"linux-64": [wheel("six", "1.17.0"), wheel("requests", "2.32.0", "idna", "six")]},
    )


def test_pip_packages_round_trip_through_conda_lock_with_their_hash():
    lock = pip_lock()
    text = to_conda_lock_yaml(lock, spec_hash="s" * 64)
    back = parse_conda_lock_yaml(text)
    assert back.pip == lock.pip
    assert back.lock_hash == lock.lock_hash


def test_pip_packages_are_written_as_conda_lock_writes_them(tmp_path):
    from condastore_core.lock import _conda_lock_writer

    lock = pip_lock()
    hashes = {"linux-64": "s" * 64}
    assert to_conda_lock_yaml(lock, spec_hash="s" * 64) == _conda_lock_writer(
        lock, "s" * 64, hashes
    )
    path = tmp_path / "conda-lock.yml"
    path.write_text(to_conda_lock_yaml(lock))
    parsed = {d.name: d for d in parse_conda_lock_file(path).package if d.manager == "pip"}
    assert parsed["requests"].hash.sha256 == lock.pip_records("linux-64")[0].sha256
    assert parsed["requests"].dependencies == {"idna": "*", "six": "*"}
    assert parsed["six"].categories == {"main"}
    assert parsed["six"].url == "https://files.example.org/six-1.17.0-py3-none-any.whl"


def test_pip_packages_change_the_lock_hash_and_conda_only_locks_keep_theirs():
    conda_only = Lock.create([CH], {"linux-64": [pkg("python", "3.11.7"), pkg("zstd")]})
    assert conda_only.with_pip({}).lock_hash == conda_only.lock_hash
    assert pip_lock().lock_hash != conda_only.lock_hash
    other = Lock.create(
        [CH],
        {"linux-64": [pkg("python", "3.11.7"), pkg("zstd")]},
        pip={"linux-64": [wheel("six", "1.16.0"), wheel("requests", "2.32.0", "idna", "six")]},
    )
    assert other.lock_hash != pip_lock().lock_hash


def test_a_pip_package_without_sha256_in_a_lockfile_is_refused():
    text = to_conda_lock_yaml(pip_lock())
    head, _, tail = text.partition("manager: pip")
    tail = tail.replace("    sha256:", "    md5:", 1)
    with pytest.raises(LockError, match=r"pip package 'requests' in conda-lock.yml has no sha256"):
        parse_conda_lock_yaml(head + "manager: pip" + tail)


def test_canonical_json_is_compact_and_sorted():
    assert canonical_json({"b": [1, {"d": 1, "c": 2}], "a": "é"}) == (
        '{"a":"é","b":[1,{"c":2,"d":1}]}'.encode()
    )
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})
    assert json.loads(canonical_json({"k": 1})) == {"k": 1}
