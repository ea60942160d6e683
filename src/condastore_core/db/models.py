"""The service's metadata tables: namespaces, environments, specifications, builds, artifacts.

Blobs live in the blob store; these rows only point at them by digest. A
specification is stored once per spec hash. A build belongs to one environment
and one specification; its packages are rows of their own so builds can be
searched by package. Build logs are append-only chunks, never rewritten.
Deleted namespaces and environments keep their rows (``deleted_at``) for audit.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from condastore_core.db.base import Base

#: Ids are 32-bit integers on every database; larger numbers cannot name a row.
MAX_ID = 2**31 - 1


def valid_id(value: int) -> bool:
    return 1 <= value <= MAX_ID


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """A stored time, aware: SQLite hands back naive values of what was stored as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


class BuildStatus(enum.StrEnum):
    QUEUED = "QUEUED"
    BUILDING = "BUILDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    @property
    def finished(self) -> bool:
        return self in (BuildStatus.COMPLETED, BuildStatus.FAILED, BuildStatus.CANCELED)


class Namespace(Base):
    __tablename__ = "namespaces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Specification(Base):
    __tablename__ = "specifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    #: The canonical spec, as parsed (``EnvironmentSpec.canonical()``).
    spec: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Environment(Base):
    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("namespace_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    current_build_id: Mapped[int | None] = mapped_column(
        ForeignKey("builds.id", use_alter=True, ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    namespace: Mapped[Namespace] = relationship(lazy="joined")
    current_build: Mapped[Build | None] = relationship(
        foreign_keys=[current_build_id], post_update=True, lazy="joined"
    )


class Build(Base):
    __tablename__ = "builds"
    __table_args__ = (Index("ix_builds_lock_hash_status", "lock_hash", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"), index=True)
    specification_id: Mapped[int] = mapped_column(ForeignKey("specifications.id"))
    status: Mapped[BuildStatus] = mapped_column(
        Enum(BuildStatus, native_enum=False, length=16), default=BuildStatus.QUEUED, index=True
    )
    #: What the build is doing now (``solving``, ``downloading 3/24``...), for progress bars.
    step: Mapped[str] = mapped_column(String(64), default="")
    platforms: Mapped[list] = mapped_column(JSON, default=list)
    #: A lock given as input (built exactly, without solving), as conda-lock YAML.
    input_lock: Mapped[str | None] = mapped_column(Text)
    lock_hash: Mapped[str | None] = mapped_column(String(64))
    build_key: Mapped[str | None] = mapped_column(String(32))
    size: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    #: Artifacts a completed build could not get, by kind, with the reason
    #: (``{"tarball": "no space left on device"}``); an artifact made later clears its entry.
    artifact_errors: Mapped[dict | None] = mapped_column(JSON)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    #: The completed build whose artifacts this one reuses (same lock hash).
    reused_build_id: Mapped[int | None] = mapped_column(ForeignKey("builds.id"))
    queued_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: The lease of a running build: its worker renews it; a stale one means the worker died.
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    worker: Mapped[str | None] = mapped_column(String(128))
    #: Who asked for the build (a user name; None for watched files and the system).
    submitted_by: Mapped[str | None] = mapped_column(String(64))
    #: How many times the build was started (retries after a lost worker count too).
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    environment: Mapped[Environment] = relationship(foreign_keys=[environment_id], lazy="joined")
    specification: Mapped[Specification] = relationship(lazy="joined")
    artifacts: Mapped[list[Artifact]] = relationship(
        back_populates="build", cascade="all, delete-orphan", lazy="selectin"
    )


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("build_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(140), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    build: Mapped[Build] = relationship(back_populates="artifacts")


class BuildPackage(Base):
    """One package of a build's lock, so builds can be searched and compared by package."""

    __tablename__ = "build_packages"
    __table_args__ = (UniqueConstraint("build_id", "platform", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id"), index=True)
    platform: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[str] = mapped_column(String(64))
    build: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64))


class LogChunk(Base):
    """A piece of a build log; ``start`` is its first character's position in the whole log."""

    __tablename__ = "log_chunks"
    __table_args__ = (UniqueConstraint("build_id", "start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id"), index=True)
    start: Mapped[int] = mapped_column(BigInteger)
    text: Mapped[str] = mapped_column(Text)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    #: scrypt hash (``condastore_core.auth.passwords``); None for accounts of an external provider.
    password_hash: Mapped[str | None] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(default=False)
    groups: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class SsoIdentity(Base):
    """A user's account at an OpenID provider (``issuer`` + ``subject``), linked to one user.

    ``groups`` are the groups the provider gave at the last login: they are the
    part of ``User.groups`` the provider owns, replaced at each login, so groups
    an administrator added by hand stay.
    """

    __tablename__ = "sso_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer: Mapped[str] = mapped_column(String(512))
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    groups: Mapped[list] = mapped_column(JSON, default=list)
    last_login_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SsoLogin(Base):
    """One login in progress at the OpenID provider, found by the hash of its handle.

    The handle is the ``state`` of a browser login, or the secret a CLI polls
    with; only its sha256 is stored. A row is used once and expires after
    minutes. ``kind``: ``browser``, ``cli`` (a browser login whose result goes
    to the CLI's loopback address as a one-time code) or ``device``.
    """

    __tablename__ = "sso_logins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    handle_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    nonce: Mapped[str | None] = mapped_column(String(128))
    code_verifier: Mapped[str | None] = mapped_column(String(128))
    next_path: Mapped[str | None] = mapped_column(String(2048))
    #: cli: the loopback address to send the browser to, the CLI's PKCE challenge and state.
    client_redirect: Mapped[str | None] = mapped_column(String(256))
    client_challenge: Mapped[str | None] = mapped_column(String(128))
    client_state: Mapped[str | None] = mapped_column(String(128))
    #: device: the provider's device code, and the poll interval it asked for.
    device_code: Mapped[str | None] = mapped_column(Text)
    interval: Mapped[int | None] = mapped_column(Integer)
    #: Set once the provider vouched for the user (cli: waiting for the CLI's exchange).
    user_name: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


class RoleBindingRecord(Base):
    """``pattern`` (``team-*/*``) grants ``role`` to ``subject`` (``user:alice``, ``group:x``)."""

    __tablename__ = "role_bindings"
    __table_args__ = (UniqueConstraint("subject", "pattern"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(128))
    pattern: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TokenRecord(Base):
    """Every issued token, by its id (``jti``), so it can be listed and revoked."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    jti: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # session | api
    description: Mapped[str] = mapped_column(String(256), default="")
    #: Narrowed rights, ``["team-a/*=viewer", ...]``; None for the holder's full rights.
    scope: Mapped[list | None] = mapped_column(JSON)
    issued_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class PolicyRecord(Base):
    """The policy set at one level: ``""`` (global), ``namespace`` or ``namespace/environment``."""

    __tablename__ = "policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(256), unique=True)
    policy: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RegistryManifest(Base):
    """A manifest pushed to (or built for) a repository; its exact bytes are a blob."""

    __tablename__ = "registry_manifests"
    __table_args__ = (UniqueConstraint("repository", "digest"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository: Mapped[str] = mapped_column(String(255), index=True)
    digest: Mapped[str] = mapped_column(String(140))
    media_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    artifact_type: Mapped[str | None] = mapped_column(String(255))
    #: The manifest this one refers to (``subject``), for the referrers API.
    subject: Mapped[str | None] = mapped_column(String(140), index=True)
    #: Annotations of the manifest, returned in referrers lists.
    annotations: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RegistryTag(Base):
    __tablename__ = "registry_tags"
    __table_args__ = (UniqueConstraint("repository", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(String(140))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RegistryBlob(Base):
    """A blob linked into a repository: only linked blobs are served from it."""

    __tablename__ = "registry_blobs"
    __table_args__ = (UniqueConstraint("repository", "digest"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(140), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RegistryUpload(Base):
    """An upload session; its bytes sit in the blob store's staging area until committed."""

    __tablename__ = "registry_uploads"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    repository: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ImageLayer(Base):
    """The layer cache: a package's image layer (by package, prefix, platform...) -> its blob.

    Shared by every process of an installation, so a layer built by a worker on
    one machine is found by a request on another. A row is written only after
    its blob is committed; a row whose blob has gone is a miss.
    """

    __tablename__ = "image_layers"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    digest: Mapped[str] = mapped_column(String(140))
    diff_id: Mapped[str] = mapped_column(String(140))
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(255))
    packages: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SigningKey(Base):
    """A key that signs tokens, shared by every server and worker of an installation.

    The newest generation signs; older ones keep verifying the tokens they
    signed until those have expired, then rotation removes them. Generations
    are unique, so two processes creating the first key (or rotating) at once
    cannot both win.
    """

    __tablename__ = "signing_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, unique=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    private_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
