"""Locks: the exact package records of an environment, per platform.

A :class:`Lock` is what the solver produced (or what a ``conda-lock.yml``
said). Its **lock hash** is the identity of the environment: the same hash
means the same files on any machine. The hash covers only what a
``conda-lock.yml`` can carry (name, version, build, subdir, url, sha256, md5,
depends), so a lock written out and read back keeps its hash and its build.

Rendering uses conda-lock's own models, so ``conda-lock`` parses what we write.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from conda_lock.lockfile import parse_conda_lock_file, write_conda_lock_file
from conda_lock.lockfile.v2prelim.models import (
    HashModel,
    LockedDependency,
    Lockfile,
    LockMeta,
)
from conda_lock.models.channel import Channel as CondaLockChannel
from pydantic import BaseModel, ConfigDict, ValidationError

from condastore_core.bounded import MAX_LOCK_BYTES, check_size, check_yaml
from condastore_core.errors import LockError
from condastore_core.hashing import content_hash

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
    sha256: str
    md5: str | None = None
    size: int | None = None
    depends: tuple[str, ...] = ()
    constrains: tuple[str, ...] = ()
    noarch: str | None = None

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

    @classmethod
    def create(cls, channels: list[str], packages: dict[str, list[LockedPackage]]) -> Lock:
        return cls(
            channels=tuple(channels),
            packages={
                platform: tuple(sorted(records, key=lambda r: r.name))
                for platform, records in sorted(packages.items())
            },
        )

    @property
    def platforms(self) -> list[str]:
        return sorted(self.packages)

    def canonical(self) -> dict[str, Any]:
        return {
            platform: [r.hashed_fields() for r in records]
            for platform, records in sorted(self.packages.items())
        }

    @property
    def lock_hash(self) -> str:
        return content_hash("lock", self.canonical())

    @property
    def build_key(self) -> str:
        return build_key_for(self.lock_hash)

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


def to_conda_lock_yaml(lock: Lock, *, spec_hash: str | None = None) -> str:
    """Render ``conda-lock.yml`` (format version 1) with conda-lock's own writer."""
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
    ]
    custom = {"condastore_lock_hash": lock.lock_hash, "condastore_build_key": lock.build_key}
    if spec_hash:
        custom["condastore_spec_hash"] = spec_hash
    meta = LockMeta(
        content_hash={p: spec_hash or lock.lock_hash for p in lock.platforms},
        channels=[CondaLockChannel.from_string(c) for c in lock.channels],
        platforms=lock.platforms,
        sources=["environment.yaml"],
        custom_metadata=custom,
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conda-lock.yml"
        write_conda_lock_file(Lockfile(package=deps, metadata=meta), path, metadata_choices=None)
        return path.read_text()


def parse_conda_lock_yaml(text: str | bytes) -> Lock:
    """Read a ``conda-lock.yml`` into a :class:`Lock` (conda packages only).

    The text is bounded before conda-lock parses it: larger than
    ``MAX_LOCK_BYTES`` raises ``DocumentTooLarge``, anchors or too deep nesting
    ``DocumentRefused``.
    """
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
    for dep in parsed.package:
        if dep.manager != "conda":
            raise LockError(
                f"conda-lock.yml lists {dep.manager} package {dep.name!r}; "
                "only conda packages can be built from a lock"
            )
        if not dep.hash.sha256:
            raise LockError(f"package {dep.name!r} in conda-lock.yml has no sha256")
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
                sha256=dep.hash.sha256,
                md5=dep.hash.md5,
                depends=tuple(f"{n} {s}".strip() for n, s in dep.dependencies.items()),
            )
        )
    channels = [c.url for c in parsed.metadata.channels]
    return Lock.create(channels, packages)


# ---------------------------------------------------------------- @EXPLICIT


def to_explicit(lock: Lock, platform: str) -> str:
    """An ``@EXPLICIT`` list for one platform, each URL pinned by its sha256."""
    lines = [
        "# This file may be used to create an environment using:",
        "# $ conda create --name <env> --file <this file>",
        f"# platform: {platform}",
        f"# lock_hash: {lock.lock_hash}",
        "@EXPLICIT",
    ]
    lines.extend(f"{r.url}#sha256:{r.sha256}" for r in lock.records(platform))
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
