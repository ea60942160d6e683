"""Locks: the exact package records of an environment, per platform.

A :class:`Lock` is what the solver produced (or what a ``conda-lock.yml``
said). Its **lock hash** is the identity of the environment: the same hash
means the same files on any machine. The hash covers only what a
``conda-lock.yml`` can carry (name, version, build, subdir, url, sha256, md5,
depends), so a lock written out and read back keeps its hash and its build.

``conda-lock.yml`` is written as conda-lock's own writer writes it (a test
compares them byte for byte) and read with conda-lock's parser, so either tool
reads what the other wrote. pip packages (``manager: pip``) ride along per
platform (:mod:`condastore_core.pip.records`); a lock without them hashes as
it always did.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from condastore_core.bounded import MAX_LOCK_BYTES, check_size, check_yaml
from condastore_core.conda_lock_hash import content_hashes
from condastore_core.errors import LockError
from condastore_core.hashing import content_hash
from condastore_core.pip.records import PipPackage

#: Length (hex characters) of a build key: 64 bits of the lock hash.
BUILD_KEY_LENGTH = 16


class LockedPackage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    build: str
    build_number: int = 0
    subdir: str
    url: str
    channel: str = ""
    #: Old channels (before ~2019) and many private ones give only md5: conda-lock accepts
    #: those records, and so does the lock; the install then verifies the md5.
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    depends: tuple[str, ...] = ()
    constrains: tuple[str, ...] = ()
    noarch: str | None = None
    #: When the package was built (seconds since the epoch, from repodata); not hashed.
    timestamp: int | None = None

    @model_validator(mode="after")
    def _has_a_digest(self) -> LockedPackage:
        if not self.sha256 and not self.md5:
            raise ValueError(f"package {self.name} {self.version} has neither sha256 nor md5")
        return self

    @property
    def content_id(self) -> str:
        """What names the archive's bytes: its sha256, else ``md5:<hex>``."""
        return self.sha256 or f"md5:{self.md5}"

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def dependency_map(self) -> dict[str, str]:
        """``depends`` as conda-lock stores them: name -> constraint."""
        return dict(sorted(_split_dependency(d) for d in self.depends))

    def hashed_fields(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "subdir": self.subdir,
            "url": self.url,
            "sha256": self.sha256,
            "md5": self.md5,
            "depends": self.dependency_map(),
        }


class Lock(BaseModel):
    """Package records per platform, each list sorted by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: tuple[str, ...]
    packages: dict[str, tuple[LockedPackage, ...]]
    #: The newest package's build time (seconds): the date of everything made from the
    #: lock (image ``created``), so it never comes from a clock. Not hashed.
    source_date_epoch: int | None = None
    #: pip packages per platform, installed after the conda ones; only platforms that have any.
    pip: dict[str, tuple[PipPackage, ...]] = {}

    @classmethod
    def create(
        cls,
        channels: list[str],
        packages: dict[str, list[LockedPackage]],
        source_date_epoch: int | None = None,
        pip: dict[str, list[PipPackage]] | None = None,
    ) -> Lock:
        """A lock of ``packages``; its date is the newest package's unless one is given."""
        stamps = [r.timestamp for rs in packages.values() for r in rs if r.timestamp is not None]
        return cls(
            channels=tuple(channels),
            packages={
                platform: tuple(sorted(records, key=lambda r: r.name))
                for platform, records in sorted(packages.items())
            },
            source_date_epoch=source_date_epoch
            if source_date_epoch is not None
            else max(stamps, default=None),
            pip={
                platform: tuple(sorted(records, key=lambda r: r.name))
                for platform, records in sorted((pip or {}).items())
                if records
            },
        )

    def with_pip(self, pip: dict[str, list[PipPackage]]) -> Lock:
        """This lock with ``pip`` packages added (the conda records unchanged)."""
        return Lock.create(
            list(self.channels),
            {p: list(r) for p, r in self.packages.items()},
            self.source_date_epoch,
            pip=pip,
        )

    @property
    def platforms(self) -> list[str]:
        return sorted(self.packages)

    def canonical(self) -> dict[str, Any]:
        # pip records follow the conda ones of their platform, tagged ``manager: pip``;
        # without them the payload is what it always was (lock hashes are a contract).
        return {
            platform: [
                *(r.hashed_fields() for r in records),
                *(p.hashed_fields() for p in self.pip.get(platform, ())),
            ]
            for platform, records in sorted(self.packages.items())
        }

    @property
    def lock_hash(self) -> str:
        return content_hash("lock", self.canonical())

    @property
    def build_key(self) -> str:
        return build_key_for(self.lock_hash)

    def pip_records(self, platform: str) -> tuple[PipPackage, ...]:
        """The platform's pip packages (none for most locks)."""
        return self.pip.get(platform, ())

    def records(self, platform: str) -> tuple[LockedPackage, ...]:
        try:
            return self.packages[platform]
        except KeyError:
            raise LockError(
                f"the lock has no packages for {platform}; it covers {', '.join(self.platforms)}"
            ) from None


def build_key_for(lock_hash: str) -> str:
    """The short, human-safe name of a build: a prefix of its lock hash, never a clock."""
    return lock_hash[:BUILD_KEY_LENGTH]


# ---------------------------------------------------------------- conda-lock.yml


#: What conda-lock's writer puts above the YAML of a lock of one ``main`` category,
#: read from ``environment.yaml`` and written as ``conda-lock.yml``.
CONDA_LOCK_HEADER = """\
# This lock file was generated by conda-lock (https://github.com/conda/conda-lock). DO NOT EDIT!
#
# A "lock file" contains a concrete list of package versions (with checksums) to be installed. Unlike
# e.g. `conda env create`, the resulting environment will not change as new package versions become
# available, unless you explicitly update the lock file.
#
# Install this environment as "YOURENV" with:
#     conda-lock install -n YOURENV conda-lock.yml
# To update a single package to the latest version compatible with the version constraints in the source:
#     conda-lock lock  --lockfile conda-lock.yml --update PACKAGE
# To re-solve the entire environment, e.g. after changing a version constraint in the source file:
#     conda-lock -f environment.yaml --lockfile conda-lock.yml
"""  # noqa: E501


def to_conda_lock_yaml(
    lock: Lock, *, spec_hash: str | None = None, content_hash: Mapping[str, str] | None = None
) -> str:
    """Render ``conda-lock.yml`` (format version 1): the very text conda-lock's writer gives.

    Importing conda-lock costs 0.4-0.7 s (its package loads its whole command
    line), more than a small build takes; so the common case is rendered here,
    and a test holds it to conda-lock's own writer byte for byte. What conda-lock
    would rewrite or refuse (credentials in a channel URL, a package without
    md5) goes to conda-lock itself.

    ``content_hash`` is what conda-lock computes for the spec per platform
    (:func:`conda_lock_content_hash`), so ``conda-lock lock --check-input-hash``
    finds the lockfile fresh; without it each platform carries the spec hash (or
    the lock hash), which conda-lock will never match.
    """
    hashes = {p: (content_hash or {}).get(p) or spec_hash or lock.lock_hash for p in lock.platforms}
    if not all(_plain_channel(c) for c in lock.channels) or any(
        r.md5 is None or r.sha256 is None for records in lock.packages.values() for r in records
    ):
        return _conda_lock_writer(lock, spec_hash, hashes)
    packages = sorted(
        (
            (r.name, platform, r)
            for platform, records in lock.packages.items()
            for r in records
            if not r.name.startswith("__")
        ),
        key=lambda entry: entry[:2],
    )
    document = {
        "version": 1,
        "metadata": {
            "content_hash": hashes,
            "channels": [{"url": c, "used_env_vars": []} for c in lock.channels],
            "platforms": lock.platforms,
            "sources": ["environment.yaml"],
            "custom_metadata": _custom_metadata(lock, spec_hash),
        },
        "package": [
            {
                "name": r.name,
                "version": r.version,
                "manager": "conda",
                "platform": platform,
                "dependencies": r.dependency_map(),
                "url": r.url,
                "hash": {"md5": r.md5, "sha256": r.sha256},
                "build": r.build,
                "category": "main",
                "optional": False,
            }
            for _, platform, r in packages
        ]
        + [
            {
                "name": p.name,
                "version": p.version,
                "manager": "pip",
                "platform": platform,
                "dependencies": p.dependency_map(),
                "url": p.url,
                "hash": {"sha256": p.sha256},
                "category": "main",
                "optional": False,
            }
            for p, platform in sorted(
                ((p, platform) for platform, pips in lock.pip.items() for p in pips),
                key=lambda entry: (entry[0].name, entry[1]),
            )
        ],
    }
    # libyaml's emitter writes the same text as conda-lock's pure-Python one, 10x faster.
    dumper = getattr(yaml, "CDumper", yaml.Dumper)
    return CONDA_LOCK_HEADER + yaml.dump(document, Dumper=dumper, sort_keys=False)


def _plain_channel(url: str) -> bool:
    """A channel conda-lock writes as it is: no credentials, token or variable to replace."""
    if "://" not in url:
        return "$" not in url
    parts = urlparse(url)
    return (
        not parts.username
        and not parts.password
        and "$" not in url
        and "/t/" not in parts.path
        and urlunparse(parts) == url
    )


def _custom_metadata(lock: Lock, spec_hash: str | None) -> dict[str, str]:
    custom = {"condastore_lock_hash": lock.lock_hash, "condastore_build_key": lock.build_key}
    if lock.source_date_epoch is not None:
        custom["condastore_source_date_epoch"] = str(lock.source_date_epoch)
    if spec_hash:
        custom["condastore_spec_hash"] = spec_hash
    return custom


def _conda_lock_writer(lock: Lock, spec_hash: str | None, hashes: dict[str, str]) -> str:
    """``conda-lock.yml`` through conda-lock's own models and writer (slow to import)."""
    # Deferred: conda-lock's import is most of a small build's time (see to_conda_lock_yaml).
    from conda_lock.lockfile import write_conda_lock_file
    from conda_lock.lockfile.v2prelim.models import (
        HashModel,
        LockedDependency,
        Lockfile,
        LockMeta,
    )
    from conda_lock.models.channel import Channel

    deps = [
        LockedDependency(
            name=r.name,
            version=r.version,
            manager="conda",
            platform=platform,
            dependencies=r.dependency_map(),
            url=r.url,
            hash=HashModel(md5=r.md5, sha256=r.sha256),
            build=r.build,
            categories={"main"},
        )
        for platform, records in lock.packages.items()
        for r in records
    ] + [
        LockedDependency(
            name=p.name,
            version=p.version,
            manager="pip",
            platform=platform,
            dependencies=p.dependency_map(),
            url=p.url,
            hash=HashModel(sha256=p.sha256),
            categories={"main"},
        )
        for platform, pips in lock.pip.items()
        for p in pips
    ]
    meta = LockMeta(
        content_hash=hashes,
        channels=[Channel.from_string(c) for c in lock.channels],
        platforms=lock.platforms,
        sources=["environment.yaml"],
        custom_metadata=_custom_metadata(lock, spec_hash),
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conda-lock.yml"
        write_conda_lock_file(Lockfile(package=deps, metadata=meta), path, metadata_choices=None)
        return path.read_text()


def conda_lock_content_hash(
    environment_yaml: Mapping[str, Any], platforms: list[str]
) -> dict[str, str]:
    """The input hash conda-lock itself computes for ``environment_yaml``, per platform.

    Computed natively for the common case (:mod:`condastore_core.conda_lock_hash`,
    held to conda-lock by a golden test); otherwise the spec is read by conda-lock's
    own parser and hashed by its own function with its default virtual packages,
    as ``conda-lock lock -p <platform>`` does.
    """
    native = content_hashes(environment_yaml, platforms)
    if native is not None:
        return native
    # Deferred: conda-lock's import is most of a small build's time.
    from conda_lock.content_hash import compute_content_hashes
    from conda_lock.lookup import DEFAULT_MAPPING_URL
    from conda_lock.src_parser import make_lock_spec
    from conda_lock.virtual_package import default_virtual_package_repodata

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "environment.yaml"
        path.write_text(yaml.safe_dump(dict(environment_yaml), sort_keys=False))
        spec = make_lock_spec(
            src_files=[path], platform_overrides=platforms, mapping_url=DEFAULT_MAPPING_URL
        )
    virtual_packages = default_virtual_package_repodata()
    with virtual_packages:  # its context gives None, not the repository
        hashes = compute_content_hashes(spec, virtual_packages)
    return {p: hashes[p] for p in platforms}


def parse_conda_lock_yaml(text: str | bytes) -> Lock:
    """Read a ``conda-lock.yml`` into a :class:`Lock` (conda and pip packages).

    The text is bounded before conda-lock parses it: larger than
    ``MAX_LOCK_BYTES`` raises ``DocumentTooLarge``, anchors or too deep nesting
    ``DocumentRefused``.
    """
    # Deferred: conda-lock's import is most of a small build's time; only lockfile input needs it.
    from conda_lock.lockfile import parse_conda_lock_file

    check_size(text, MAX_LOCK_BYTES, "conda-lock.yml")
    try:
        check_yaml(text.decode() if isinstance(text, bytes) else text, "conda-lock.yml")
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise LockError(f"invalid conda-lock.yml: {exc}") from None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conda-lock.yml"
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        try:
            parsed = parse_conda_lock_file(path)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise LockError(f"invalid conda-lock.yml at {where}: {err['msg']}") from None
        except Exception as exc:  # yaml errors, missing/unknown version
            raise LockError(f"invalid conda-lock.yml: {exc}") from None
    packages: dict[str, list[LockedPackage]] = {p: [] for p in parsed.metadata.platforms}
    pip: dict[str, list[PipPackage]] = {}
    for dep in parsed.package:
        if dep.manager == "pip":
            pip.setdefault(dep.platform, []).append(_pip_package(dep))
            continue
        if not dep.hash.sha256 and not dep.hash.md5:
            raise LockError(f"package {dep.name!r} in conda-lock.yml has neither sha256 nor md5")
        build = dep.build or _build_from_filename(dep.url, dep.name, dep.version)
        packages.setdefault(dep.platform, []).append(
            LockedPackage(
                name=dep.name,
                version=dep.version,
                build=build,
                build_number=_build_number(build),
                subdir=_subdir_from_url(dep.url),
                url=dep.url,
                channel=_channel_from_url(dep.url),
                sha256=dep.hash.sha256 or None,
                md5=dep.hash.md5 or None,
                depends=tuple(f"{n} {s}".strip() for n, s in dep.dependencies.items()),
            )
        )
    channels = [c.url for c in parsed.metadata.channels]
    epoch = (parsed.metadata.custom_metadata or {}).get("condastore_source_date_epoch", "")
    return Lock.create(channels, packages, int(epoch) if epoch.isdigit() else None, pip=pip)


def _pip_package(dep: Any) -> PipPackage:
    """A ``manager: pip`` entry of conda-lock's model as a :class:`PipPackage`."""
    if not dep.hash.sha256:
        raise LockError(f"pip package {dep.name!r} in conda-lock.yml has no sha256")
    try:
        return PipPackage(
            name=dep.name,
            version=dep.version,
            url=dep.url,
            sha256=dep.hash.sha256,
            depends=tuple(sorted(dep.dependencies)),
        )
    except ValidationError as exc:
        raise LockError(
            f"pip package {dep.name!r} in conda-lock.yml: {exc.errors()[0]['msg']}"
        ) from None


# ---------------------------------------------------------------- @EXPLICIT


def to_explicit(lock: Lock, platform: str) -> str:
    """An ``@EXPLICIT`` list for one platform, each URL pinned by its md5.

    ``url#md5`` is the form conda-lock renders and every conda reads; conda
    (24.5 at least) refuses ``url#sha256:...`` lines. A record without md5 is
    listed by URL alone.
    """
    lines = [
        "# This file may be used to create an environment using:",
        "# $ conda create --name <env> --file <this file>",
        f"# platform: {platform}",
        f"# lock_hash: {lock.lock_hash}",
        "@EXPLICIT",
    ]
    lines.extend(f"{r.url}#{r.md5}" if r.md5 else r.url for r in lock.records(platform))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- helpers


def _split_dependency(dep: str) -> tuple[str, str]:
    name, _, constraint = dep.strip().partition(" ")
    return name, constraint.strip()


def _subdir_from_url(url: str) -> str:
    parts = urlparse(url).path.rstrip("/").split("/")
    if len(parts) < 2:
        raise LockError(f"package URL {url!r} has no subdir")
    return parts[-2]


def _channel_from_url(url: str) -> str:
    return url.rsplit("/", 2)[0] + "/"


def _build_from_filename(url: str, name: str, version: str) -> str:
    fn = url.rsplit("/", 1)[-1]
    stem = fn.removesuffix(".conda").removesuffix(".tar.bz2")
    prefix = f"{name}-{version}-"
    if not stem.startswith(prefix):
        raise LockError(f"cannot tell the build string of {fn!r}")
    return stem[len(prefix) :]


def _build_number(build: str) -> int:
    tail = build.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0
