"""One typed settings object, read once at start by the entry point.

Precedence, highest first: explicit overrides (command-line flags), environment
variables ``CONDASTORE_<FIELD>``, a TOML config file, defaults. Library code
receives a :class:`Settings`; it never reads the environment itself.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from condastore_core import layout
from condastore_core.channels import DEFAULT_CHANNEL_ALIAS
from condastore_core.errors import ConfigError

ENV_PREFIX = "CONDASTORE_"
#: Variables with the prefix that are not settings: the CLI's (which server, which token,
#: where tokens are kept, which config file) and the locations the project's own tests and
#: benchmarks read. Any other ``CONDASTORE_*`` name is a typo, refused like one in the file.
NOT_SETTINGS = frozenset(
    {
        "CONDASTORE_CONFIG",
        "CONDASTORE_URL",
        "CONDASTORE_TOKEN",
        "CONDASTORE_CREDENTIALS",
        "CONDASTORE_SAMPLE_CHANNEL",
        "CONDASTORE_PY39_REPODATA",
    }
)
#: Names under this prefix belong to the test suite (its Redis and PostgreSQL servers).
TEST_PREFIX = "CONDASTORE_TEST_"


def default_data_dir() -> Path:
    """The platform's conventional per-user data directory (XDG on Linux)."""
    return Path(platformdirs.user_data_dir("condastore", appauthor=False))


def default_config_file() -> Path:
    return Path(platformdirs.user_config_dir("condastore", appauthor=False)) / "config.toml"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=default_data_dir)
    #: Blob store: a path, ``file://`` URL or ``s3://bucket/prefix``; default ``<data_dir>/blobs``.
    store_url: str | None = None
    #: SQLAlchemy URL; default SQLite in the data directory.
    database_url: str | None = None
    redis_url: str | None = None
    #: Channels used when a spec lists none, and by ``--channel``-less package search.
    channels: tuple[str, ...] = ("conda-forge",)
    channel_alias: str = DEFAULT_CHANNEL_ALIAS
    #: Channel names served from elsewhere than the alias, as conda's ``custom_channels``:
    #: ``{"internal": "https://conda.example.com"}`` makes ``internal`` that host's ``/internal``.
    custom_channels: Mapping[str, str] = field(default_factory=dict)
    #: Where a channel is actually fetched from: ``{"https://conda.anaconda.org/conda-forge":
    #: "https://mirror.example.com/conda-forge"}``; specs and locks keep the canonical URL.
    channel_mirrors: Mapping[str, str] = field(default_factory=dict)
    #: Credentials per channel host: ``{"mirror.example.com": "user:password"}`` (HTTP Basic)
    #: or ``"Bearer <token>"``; sent only to that host, never shown.
    channel_credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: How long repodata is kept before the server is asked again (conda's
    #: ``local_repodata_ttl``): 1 honours the server's caching headers, 0 revalidates before
    #: every solve, any other number is seconds.
    local_repodata_ttl: int = 1
    #: "enforce": every URL fetched passes the channel gate (servers, workers). "open": only
    #: namespace policies apply (``condastore lock``/``build`` on the user's own machine).
    channel_gate: str = "enforce"
    #: Directories whose ``file://`` channels and packages may be fetched, besides configured
    #: channels; none by default.
    allowed_channel_dirs: tuple[str, ...] = ()
    #: Non-public networks (CIDRs such as ``10.0.0.0/8``, or host names) that may be fetched
    #: from; loopback, link-local and private addresses are refused otherwise.
    allowed_networks: tuple[str, ...] = ()
    #: The PyPI-style index (PEP 503 simple API) that ``pip:`` requirements resolve against,
    #: and extra ones consulted after it.
    pip_index_url: str = "https://pypi.org/simple"
    pip_extra_index_urls: tuple[str, ...] = ()
    #: Credentials per pip index host: ``{"pypi.example.com": "user:password"}`` or a token;
    #: sent only to that host, never shown.
    pip_credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: Virtual package overrides, e.g. ``{"__cuda": "12.2", "__glibc": "2.31"}``; "" removes one.
    virtual_packages: Mapping[str, str] = field(default_factory=dict)
    solve_timeout_seconds: float | None = None
    #: Package work (solve, install, pack, image layers) runs in child processes; each may
    #: use this much address space (MB, ``RLIMIT_AS``; 0: unlimited) and each phase this
    #: long (wall-clock seconds) before it is killed and its build fails.
    build_memory_limit_mb: int = 4096
    solve_limit_seconds: float = 300
    install_limit_seconds: float = 1800
    pack_limit_seconds: float = 1800
    layer_limit_seconds: float = 1800
    #: Solves and package searches run in long-lived solver children that keep repodata
    #: in memory (this many per process), each replaced after this many calls or once its
    #: resident memory passes this many MB (0: no cap), so no process grows without bound.
    solver_processes: int = 1
    solver_max_solves: int = 50
    solver_max_rss_mb: int = 2048
    #: Also write a conda-pack tarball for every build (the slowest artifact).
    tarball: bool = True
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    log_level: str = "INFO"
    #: A running build renews its lease this often (a third of it); past it, its worker is lost.
    build_lease_seconds: float = 60
    #: Starts of a build before a lost worker fails it rather than retrying it.
    build_max_attempts: int = 2
    #: The longest one build job may run on a worker.
    build_timeout_seconds: float = 6 * 3600
    #: Directories whose spec files are kept as environments, in ``watch_namespace``.
    watch_dirs: tuple[str, ...] = ()
    watch_namespace: str = "filesystem"
    #: Garbage collection runs this often (hours) in the server or on workers; 0 turns it off.
    gc_interval_hours: float = 24
    #: Registry uploads started longer ago than this (hours) and never finished are purged,
    #: with their staged bytes, by garbage collection.
    upload_max_age_hours: float = 24
    #: New builds are refused while the data directory has less free space than this; a
    #: worker under it takes no work (another worker does) until it has room again.
    min_free_bytes: int = 1 << 30
    #: Each worker trims its package cache to this size, least recently used first (0: no cap).
    package_cache_max_bytes: int = 20 << 30
    #: Each worker removes its prefixes of collected builds and trims its cache this often.
    tidy_interval_seconds: float = 600
    #: What environment images stand on: a registry reference (fetched once through the
    #: channel gate, then reused), an OCI layout directory, or "scratch" (nothing: no loader
    #: or libc, so no binary of the image runs). conda-forge's binaries need glibc.
    image_base: str = "docker.io/library/debian:bookworm-slim"
    #: Per-namespace bases for managed environments' images, e.g. ``{"ml": "/srv/bases/cuda"}``;
    #: a namespace not named here uses ``image_base``.
    image_namespace_bases: Mapping[str, str] = field(default_factory=dict)
    #: ``user:password`` (or token) per registry host that base images come from, e.g.
    #: ``{"registry.example.com": "robot:secret"}``; never shown back.
    image_registry_credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: Where the environment sits inside images, and how their layers are compressed.
    image_prefix: str = "/opt/conda"
    image_compression: str = "gzip"
    #: A request for an image waits this long for its layers; past it, the client is told
    #: to come back (503 with Retry-After) while the layer jobs go on.
    image_wait_seconds: float = 600
    #: Missing layers of one image are split into at most this many jobs run in parallel.
    image_layer_jobs: int = 4
    #: ``conda/<pkgs>:latest`` is solved again at most this often (seconds).
    image_solve_ttl_seconds: float = 300
    #: Rights of requests without credentials, e.g. ``("public/*=viewer",)``; none by default.
    anonymous_bindings: tuple[str, ...] = ()
    #: Lifetime of a login (session) token, and the longest any token may live.
    token_lifetime_seconds: float = 7 * 24 * 3600
    max_token_lifetime_seconds: float = 90 * 24 * 3600
    #: A verified HTTP Basic password is trusted this long (seconds) without scrypt again;
    #: a password change or a disabled account ends that at once. 0 turns it off.
    basic_auth_cache_seconds: float = 60
    #: Failed password checks allowed per user and per address in a window (seconds);
    #: past them, 429 with Retry-After, before any password is checked.
    login_failures_per_user: int = 10
    login_failures_per_address: int = 30
    login_failure_window_seconds: float = 60
    #: Believe ``X-Forwarded-Proto`` (set by a proxy in front): session cookies of browsers
    #: that reached the proxy over HTTPS are then marked ``Secure``.
    trust_proxy_headers: bool = False
    #: Single sign-on with an OpenID provider (``core/auth/oidc.py``): off while the issuer is
    #: "". URLs under the issuer are fetched as configured (an administrator named them);
    #: endpoints elsewhere pass the channel gate. The secret is never shown.
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = field(default="", repr=False)
    oidc_scopes: tuple[str, ...] = ("openid", "profile", "email")
    #: Which claims give the user name and the groups (``group:NAME`` role binding subjects).
    oidc_username_claim: str = "preferred_username"
    oidc_groups_claim: str = "groups"
    #: A first login creates the user; when false, only users an administrator added may log in.
    oidc_create_users: bool = True
    #: Local passwords; when false only tokens and single sign-on log in.
    password_login: bool = True
    #: A file holding the one Ed25519 key that signs tokens, given to every machine; by
    #: default the keys live in the database, shared by every server (``keys rotate``).
    signing_key_path: Path | None = None
    #: A directory every machine mounts (NFS, say): builds are installed once in it, at
    #: ``.builds/<build key>``, and ``<namespace>/<environment>`` links to the current build,
    #: for JupyterHub kernels and cron jobs. Unset: prefixes stay in each worker's data dir.
    environments_dir: Path | None = None
    #: Unix group of each namespace's directory there: ``{"data-science": "ds"}``. A mapped
    #: namespace's directory is mode 2750 and that group's, so only its members reach its
    #: environments by name; an unmapped one is 0755 (readable by every local user).
    environments_groups: Mapping[str, str] = field(default_factory=dict)

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or str(layout.blobs_root(self.data_dir))

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{layout.sqlite_path(self.data_dir)}"

    def virtual_package_overrides(self) -> dict[str, str | None]:
        return {k: (v or None) for k, v in self.virtual_packages.items()}


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Merge defaults, the config file, ``CONDASTORE_*`` variables and overrides; validate."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}

    path = config_file or _config_path(overrides or {}, environ)
    if path is not None and path.is_file():
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        for key, value in data.items():
            values[_check_key(key, f"config file {path}")] = value
    elif config_file is not None:
        raise ConfigError(f"config file {config_file} does not exist")

    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS or name.startswith(TEST_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in _FIELDS:
            raise ConfigError(f"unknown setting variable {name}{_did_you_mean(key, variable=True)}")
        values[key] = value

    for key, value in (overrides or {}).items():
        if value is not None:
            values[_check_key(key, "overrides")] = value

    return Settings(**{k: _coerce(k, v) for k, v in values.items()})


def _config_path(overrides: Mapping[str, Any], environ: Mapping[str, str]) -> Path | None:
    if environ.get("CONDASTORE_CONFIG"):
        return Path(environ["CONDASTORE_CONFIG"])
    data_dir = overrides.get("data_dir") or environ.get("CONDASTORE_DATA_DIR")
    if data_dir:
        candidate = layout.config_file_path(Path(data_dir))
        if candidate.is_file():
            return candidate
    return default_config_file()


def _check_key(key: str, source: str) -> str:
    if key not in _FIELDS:
        raise ConfigError(f"unknown setting {key!r} in {source}{_did_you_mean(key)}")
    return key


def _did_you_mean(key: str, *, variable: bool = False) -> str:
    close = difflib.get_close_matches(key, _FIELDS, n=1)
    if not close:
        return ""
    return f" (did you mean {ENV_PREFIX + close[0].upper() if variable else repr(close[0])}?)"


def _coerce(key: str, value: Any) -> Any:
    """Turn strings from the environment into the field's type."""
    try:
        if key == "data_dir":
            return Path(value).expanduser()
        if key in (
            "channels",
            "anonymous_bindings",
            "watch_dirs",
            "allowed_channel_dirs",
            "allowed_networks",
            "oidc_scopes",
            "pip_extra_index_urls",
        ):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(c.strip() for c in items if c.strip())
        if key in (
            "virtual_packages",
            "image_namespace_bases",
            "image_registry_credentials",
            "custom_channels",
            "channel_mirrors",
            "channel_credentials",
            "environments_groups",
            "pip_credentials",
        ):
            if isinstance(value, str):
                pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
                return {k.strip(): v.strip() for k, v in pairs}
            return {str(k): str(v) for k, v in dict(value).items()}
        if key in ("tarball", "trust_proxy_headers", "oidc_create_users", "password_login"):
            if isinstance(value, str):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(f"expected a boolean, got {value!r}")
                return value.lower() in ("1", "true", "yes", "on")
            return bool(value)
        if key in (
            "solve_timeout_seconds",
            "token_lifetime_seconds",
            "max_token_lifetime_seconds",
            "build_lease_seconds",
            "build_timeout_seconds",
            "gc_interval_hours",
            "upload_max_age_hours",
            "basic_auth_cache_seconds",
            "login_failure_window_seconds",
            "image_wait_seconds",
            "image_solve_ttl_seconds",
            "solve_limit_seconds",
            "install_limit_seconds",
            "pack_limit_seconds",
            "layer_limit_seconds",
            "tidy_interval_seconds",
        ):
            return float(value)
        if key in (
            "build_max_attempts",
            "local_repodata_ttl",
            "min_free_bytes",
            "package_cache_max_bytes",
            "image_layer_jobs",
            "login_failures_per_user",
            "login_failures_per_address",
            "build_memory_limit_mb",
            "solver_processes",
            "solver_max_solves",
            "solver_max_rss_mb",
        ):
            return int(value)
        if key == "image_compression":
            if value not in ("gzip", "zstd"):
                raise ValueError(f"expected gzip or zstd, got {value!r}")
            return value
        if key == "channel_gate":
            if value not in ("enforce", "open"):
                raise ValueError(f"expected enforce or open, got {value!r}")
            return value
        if key in ("signing_key_path", "environments_dir"):
            return Path(value).expanduser() if value else None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid value for setting {key!r}: {exc}") from None
    return value
