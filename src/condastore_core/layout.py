"""Where everything lives: the only module that builds a storage path or key.

Data directory (embedded defaults; every part can be moved by settings)::

    <data_dir>/
        condastore.toml                  optional configuration file
        condastore.db                    SQLite metadata (service)
        blobs/                           LocalBlobStore root
            sha256/<ab>/<abcdef...>      a blob, named by its digest, sharded by 2 hex chars
            sha512/<ab>/<abcdef...>
            _staging/<uuid>              bytes being written; renamed into place on commit
        pkgs/                            the package cache shared by every build
        envs/<build_key>/                installed prefixes, one per build
        envs/.staging-<build_key>-<id>/  a prefix being installed
        builds/<build_key>.json          build records of the embedded (no database) pipeline
        tmp/                             scratch space for builds (staging prefixes, tarballs)
        locks/                           inter-process lock files
        repodata-cache/                  rattler's repodata cache, shared by the machine's processes
        pip-cache/                       uv's cache (index pages, metadata) for pip resolution
        pip-cache/wheels/<sha256>/<file> wheels downloaded and verified for pip installs
        channels.json                    when each channel was last revalidated (no Redis)
        keys/token-signing-key.pem       the Ed25519 key that signs API tokens (created once)

Shared environments directory (``environments_dir``, optional, e.g. on NFS)::

    <environments_dir>/
        .builds/<build_key>/             a build's prefix, installed once at this very path
        .builds/.staging-<key>-<id>/     a prefix being installed
        .builds/.records/<key>.json      build records, seen by every machine mounting it
        <namespace>/                     mode 2750, group of the namespace (when mapped)
            <environment> -> ../.builds/<build_key>    the current build (relative link)
            .<environment>.link-<id>     a link being switched (renamed over the name)

Redis keys (when the installation has Redis; besides RQ's own)::

    condastore:channels:validated        hash: channel URL -> when a process last revalidated it
    condastore:channels:refresh          hash: channel URL -> when a refresh was last asked for
    condastore:lock:<name>               a cluster lock's holder, with its lease

Object store (S3) keys under the configured prefix::

    <prefix>/blobs/<algorithm>/<hex>     a blob
    <prefix>/_staging/<uuid>/started     an upload exists (it may hold no bytes yet)
    <prefix>/_staging/<uuid>/<n>         its n-th piece (one per writing session)
    <prefix>/_staging/<uuid>/whole       the pieces joined, while the digest is checked
"""

from __future__ import annotations

from pathlib import Path

BLOBS_DIR = "blobs"
CHANNEL_VALIDATED_KEY = "condastore:channels:validated"
CHANNEL_REFRESH_KEY = "condastore:channels:refresh"
STAGING_DIR = "_staging"


def blobs_root(data_dir: Path) -> Path:
    return data_dir / BLOBS_DIR


def blob_relpath(algorithm: str, hex_digest: str) -> str:
    """Relative path of a blob inside a local store root (sharded)."""
    return f"{algorithm}/{hex_digest[:2]}/{hex_digest}"


def blob_key(prefix: str, algorithm: str, hex_digest: str) -> str:
    """Object key of a blob in an object store."""
    return _join(prefix, f"{BLOBS_DIR}/{algorithm}/{hex_digest}")


def blob_key_prefix(prefix: str) -> str:
    return _join(prefix, f"{BLOBS_DIR}/")


def staging_key(prefix: str, upload_id: str) -> str:
    return _join(prefix, f"{STAGING_DIR}/{upload_id}")


def package_cache_dir(data_dir: Path) -> Path:
    return data_dir / "pkgs"


def envs_dir(data_dir: Path) -> Path:
    return data_dir / "envs"


def prefix_dir(data_dir: Path, build_key: str) -> Path:
    return prefix_in(envs_dir(data_dir), build_key)


def prefix_in(envs_root: Path, build_key: str) -> Path:
    """The prefix of ``build_key`` in a directory of prefixes (a data dir's or a shared one)."""
    return envs_root / _component(build_key)


def record_in(records_root: Path, build_key: str) -> Path:
    return records_root / f"{_component(build_key)}.json"


def shared_builds_dir(environments_dir: Path) -> Path:
    return environments_dir / ".builds"


def shared_records_dir(environments_dir: Path) -> Path:
    return shared_builds_dir(environments_dir) / ".records"


def namespace_link_dir(environments_dir: Path, namespace: str) -> Path:
    return environments_dir / _component(namespace)


def environment_link(environments_dir: Path, namespace: str, name: str) -> Path:
    """``<environments_dir>/<namespace>/<environment>``: a link to the current build's prefix."""
    return namespace_link_dir(environments_dir, namespace) / _component(name)


def environment_link_target(build_key: str) -> str:
    """What an environment link holds: relative, so every mount point of the share works."""
    return f"../.builds/{_component(build_key)}"


def staging_link(environments_dir: Path, namespace: str, name: str, attempt_id: str) -> Path:
    directory = namespace_link_dir(environments_dir, namespace)
    return directory / f".{_component(name)}.link-{attempt_id}"


def _component(name: str) -> str:
    """One path component, never a way out of its directory nor a hidden name."""
    if not name or "/" in name or "\\" in name or "\0" in name or name.startswith("."):
        raise ValueError(f"not a valid path component: {name!r}")
    return name


def staging_prefix_dir(data_dir: Path, build_key: str, attempt_id: str) -> Path:
    return envs_dir(data_dir) / f".staging-{build_key}-{attempt_id}"


def records_dir(data_dir: Path) -> Path:
    return data_dir / "builds"


def build_record_path(data_dir: Path, build_key: str) -> Path:
    return record_in(records_dir(data_dir), build_key)


def scratch_dir(data_dir: Path) -> Path:
    return data_dir / "tmp"


def lock_file_path(data_dir: Path, name: str) -> Path:
    return data_dir / "locks" / f"{name}.lock"


def cluster_lock_key(name: str) -> str:
    """Redis key of cluster lock ``name`` (:mod:`condastore_core.clusterlock`)."""
    return f"condastore:lock:{name}"


def package_cache_lock_path(data_dir: Path) -> Path:
    """Installs hold it shared; trimming the package cache holds it alone."""
    return lock_file_path(data_dir, "package-cache")


def claim_file_path(data_dir: Path, name: str) -> Path:
    """When periodic task ``name`` last ran, for processes sharing this data directory."""
    return data_dir / "locks" / f"{name}.claim"


def config_file_path(data_dir: Path) -> Path:
    return data_dir / "condastore.toml"


def sqlite_path(data_dir: Path) -> Path:
    return data_dir / "condastore.db"


def _join(prefix: str, rest: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{rest}" if prefix else rest


def signing_key_path(data_dir: Path) -> Path:
    return data_dir / "keys" / "token-signing-key.pem"


def repodata_cache_dir(data_dir: Path) -> Path:
    return data_dir / "repodata-cache"


def channel_freshness_path(data_dir: Path) -> Path:
    return data_dir / "channels.json"


def pip_cache_dir(data_dir: Path) -> Path:
    return data_dir / "pip-cache"


def pip_wheel_path(cache_dir: Path, sha256: str, file_name: str) -> Path:
    """Where a verified wheel is kept: named by its sha256, under its own file name."""
    return cache_dir / "wheels" / sha256 / file_name
