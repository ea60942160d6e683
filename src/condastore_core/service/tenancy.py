"""The registry's rules between tenants, on top of RBAC and for everyone, admins included.

RBAC says who may pull, push and delete in a repository. These rules protect
what the store itself publishes, which no role may forge or remove through
the registry:

* the dynamic-image namespace (``conda/...``) is written only by the store:
  no blob, mount, manifest or delete from a client;
* ``<build key>`` and ``<build key>.<artifact>`` tags are written only by the
  store, in every repository (any ``namespace/name`` may become an
  environment, and the store would then serve a planted tag as that build);
* ``latest`` of a managed environment is its current build;
* a manifest one of those tags points to is not deleted by digest.

A refusal is :class:`~condastore_core.auth.rbac.Forbidden` with the reason,
which the registry answers as 403 ``DENIED``.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select

from condastore_core.auth.rbac import Forbidden
from condastore_core.db.models import Environment, Namespace, RegistryTag
from condastore_core.service import registry as reg
from condastore_core.service.context import Context
from condastore_core.service.reserved import DYNAMIC_PREFIX, LATEST, is_build_tag, is_dynamic

_ENVIRONMENT_EXISTS = (
    select(Environment.id)
    .join(Namespace, Environment.namespace_id == Namespace.id)
    .where(
        Namespace.name == bindparam("namespace"),
        Namespace.deleted_at.is_(None),
        Environment.name == bindparam("name"),
        Environment.deleted_at.is_(None),
    )
)
_TAGS_OF_DIGEST = select(RegistryTag.name).where(
    RegistryTag.repository == bindparam("repository"), RegistryTag.digest == bindparam("digest")
)


def is_managed_environment(ctx: Context, repository: str) -> bool:
    """Whether ``namespace/name`` is a managed environment (one light query)."""
    namespace, _, name = repository.partition("/")
    if not name:
        return False
    return ctx.first(_ENVIRONMENT_EXISTS, {"namespace": namespace, "name": name}) is not None


def check_writable(repository: str) -> None:
    """Refuse every client write (blobs, mounts, manifests, deletes) under ``conda/``."""
    if is_dynamic(repository):
        raise Forbidden(
            f"{repository} is a dynamic image: images under {DYNAMIC_PREFIX}/ are made by "
            f"condastore from their names and cannot be pushed, mounted into or deleted"
        )


def _protected(ctx: Context, repository: str, tag: str, managed: bool | None = None) -> str | None:
    """Why the store keeps ``tag`` of ``repository`` to itself, or None."""
    if is_build_tag(tag):
        return (
            f"tag {tag!r} has the form of a build key (or a build's artifact); such tags "
            f"name condastore's builds and are written only by condastore"
        )
    if tag == LATEST:
        if managed is None:
            managed = is_managed_environment(ctx, repository)
        if managed:
            return (
                f"{repository} is a managed environment: its {LATEST!r} is its current build, "
                f"set by condastore (make another build current instead)"
            )
    return None


def check_manifest_write(ctx: Context, repository: str, reference: str) -> None:
    """Before a client's manifest PUT: refuse the tags the store keeps."""
    check_writable(repository)
    tag, _ = reg.parse_reference(reference)
    reason = _protected(ctx, repository, tag) if tag is not None else None
    if reason is not None:
        raise Forbidden(f"{repository}:{tag} is immutable: {reason}")


def check_manifest_delete(ctx: Context, repository: str, reference: str) -> None:
    """Before a client's manifest DELETE: by tag, the tags the store keeps; by digest,
    a manifest one of them points to."""
    check_writable(repository)
    tag, digest = reg.parse_reference(reference)
    if tag is not None:
        reason = _protected(ctx, repository, tag)
        if reason is not None:
            raise Forbidden(f"{repository}:{tag} cannot be deleted: {reason}")
        return
    managed = is_managed_environment(ctx, repository)
    for name in ctx.rows(_TAGS_OF_DIGEST, {"repository": repository, "digest": str(digest)}):
        reason = _protected(ctx, repository, name[0], managed)
        if reason is not None:
            raise Forbidden(
                f"{repository}@{digest} cannot be deleted: it is tagged {name[0]!r} and {reason}"
            )
