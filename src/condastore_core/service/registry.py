"""Repositories of the OCI registry: blob links, manifests and tags.

Bytes live in the blob store (a manifest's exact bytes too); these functions
keep the metadata that makes a repository: which blobs it may serve, which
manifests it holds, where its tags point and which manifests refer to which.
Listing it all (tags, referrers, the catalog) is
:mod:`condastore_core.service.discovery`; uploads, which stage bytes before they
become blobs, are :mod:`condastore_core.service.uploads`. Errors carry the
distribution spec's codes; the registry app turns them into HTTP answers.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError

from condastore_core.bounded import MAX_MANIFEST_BYTES
from condastore_core.db.base import rowcount
from condastore_core.db.models import (
    RegistryBlob,
    RegistryManifest,
    RegistryTag,
    utcnow,
)
from condastore_core.digests import Digest, digest_bytes
from condastore_core.errors import CondastoreError, InvalidDigest
from condastore_core.image import manifest as mt
from condastore_core.service.context import Context

#: The distribution spec's grammar for repository names and tags.
NAME_PATTERN = re.compile(
    r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$"
)
TAG_PATTERN = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
MAX_NAME_LENGTH = 255
#: Real manifests nest a handful of levels; a cap keeps parsing bounded (no RecursionError).
MAX_MANIFEST_DEPTH = 64

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = {mt.MANIFEST, mt.INDEX, DOCKER_MANIFEST, DOCKER_LIST}
INDEX_TYPES = {mt.INDEX, DOCKER_LIST}


class RegistryError(CondastoreError):
    """An error of the distribution spec; ``code`` is one of its error codes."""

    def __init__(self, code: str, message: str, detail: object | None = None) -> None:
        super().__init__(message, detail=detail)
        self.code = code


def check_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH or not NAME_PATTERN.match(name):
        raise RegistryError("NAME_INVALID", f"invalid repository name {name!r}")
    return name


def parse_digest(value: str) -> Digest:
    try:
        return Digest.parse(value)
    except InvalidDigest as exc:
        raise RegistryError("DIGEST_INVALID", exc.message) from None


def parse_reference(reference: str) -> tuple[str | None, Digest | None]:
    """A manifest reference is a tag or a digest."""
    if ":" in reference:
        return None, parse_digest(reference)
    if not TAG_PATTERN.match(reference):
        raise RegistryError("MANIFEST_INVALID", f"invalid tag {reference!r}")
    return reference, None


# -- blobs ---------------------------------------------------------------------------


#: Built once: the size of a blob linked into a repository (none if it is not linked).
_LINKED_BLOB_SIZE = select(RegistryBlob.size).where(
    RegistryBlob.repository == bindparam("repository"), RegistryBlob.digest == bindparam("digest")
)


def link_in(conn: Connection, repository: str, digest: Digest, size: int) -> None:
    """Link within ``conn``'s transaction; a link made meanwhile by another request is fine."""
    params = {"repository": repository, "digest": str(digest)}
    if conn.execute(_LINKED_BLOB_SIZE, params).first() is not None:
        return
    try:
        with conn.begin_nested():
            conn.execute(insert(RegistryBlob), {**params, "size": size})
    except IntegrityError:
        pass  # linked meanwhile


def link_blob(ctx: Context, repository: str, digest: Digest, size: int) -> None:
    with ctx.engine.begin() as conn:
        link_in(conn, repository, digest, size)


def blob_size(ctx: Context, repository: str, digest: Digest) -> int:
    """The size of a blob this repository may serve; BLOB_UNKNOWN otherwise."""
    row = ctx.first(_LINKED_BLOB_SIZE, {"repository": repository, "digest": str(digest)})
    size = row.size if row is not None else None
    if size is None or not ctx.store.exists(digest):
        raise RegistryError("BLOB_UNKNOWN", f"blob {digest} is not in {repository}")
    return size


def unlink_blob(ctx: Context, repository: str, digest: Digest) -> None:
    with ctx.sessions.begin() as session:
        gone = session.execute(
            delete(RegistryBlob).where(
                RegistryBlob.repository == repository, RegistryBlob.digest == str(digest)
            )
        )
        if rowcount(gone) == 0:
            raise RegistryError("BLOB_UNKNOWN", f"blob {digest} is not in {repository}")


#: A blob in many repositories is looked for in at most this many of them by a mount.
MOUNT_CANDIDATES = 100


def mount_blob(
    ctx: Context,
    repository: str,
    digest: Digest,
    source: str | None,
    may_pull: Callable[[str], bool],
) -> bool:
    """Link a blob that ``source`` (or, when None, any repository) holds; False if none.

    Only repositories the caller ``may_pull`` count: a mount from one they may
    not read fails just like a mount of a digest that exists nowhere, so the
    caller learns neither the bytes nor that they exist.
    """
    stmt = select(RegistryBlob.repository, RegistryBlob.size).where(
        RegistryBlob.digest == str(digest)
    )
    if source is not None:
        stmt = stmt.where(RegistryBlob.repository == source)
    with ctx.sessions() as session:
        candidates = session.execute(stmt.order_by(RegistryBlob.id).limit(MOUNT_CANDIDATES)).all()
    for holder, size in candidates:
        if may_pull(holder):
            if not ctx.store.exists(digest):
                return False
            link_blob(ctx, repository, digest, size)
            return True
    return False


# -- manifests -----------------------------------------------------------------------


@dataclass(frozen=True)
class StoredManifest:
    digest: str
    media_type: str
    size: int
    #: The tags this push set (the reference's, then each ``?tag=``), in the order asked.
    tags: tuple[str, ...] = ()


#: Layers that live elsewhere by definition (licensed base layers, Windows foreign layers):
#: a manifest may name them without their bytes ever being pushed here.
NONDISTRIBUTABLE_PREFIXES = (
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar",
)

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
#: +1 for an opening bracket, -1 for a closing one, per byte value.
_DEPTH_STEP = tuple(1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256))


def check_depth(body: bytes, limit: int = MAX_MANIFEST_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` before parsing it.

    Python's parser recurses once per level and fails with RecursionError far
    below what fits in 4 MiB. The scan runs in C (regular expressions, then
    map/accumulate over the brackets left) and allocates at most a copy of
    the body; brackets inside strings do not count.
    """
    structure = _NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", body))
    if structure.count(b"[") + structure.count(b"{") <= limit:
        return  # cannot be deeper than it has openings
    if max(itertools.accumulate(map(_DEPTH_STEP.__getitem__, structure))) > limit:
        raise RegistryError("MANIFEST_INVALID", f"the manifest nests deeper than {limit} levels")


def _parse_manifest(body: bytes) -> dict[str, Any]:
    if len(body) > MAX_MANIFEST_BYTES:
        raise RegistryError("MANIFEST_INVALID", f"manifest larger than {MAX_MANIFEST_BYTES} bytes")
    check_depth(body)
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise RegistryError("MANIFEST_INVALID", "the manifest is not JSON") from None
    if not isinstance(doc, dict):
        raise RegistryError("MANIFEST_INVALID", "the manifest is not a JSON object")
    return doc


def _check_tag(tag: str) -> str:
    if not TAG_PATTERN.match(tag):
        raise RegistryError("MANIFEST_INVALID", f"invalid tag {tag!r}")
    return tag


def artifact_type_of(doc: dict[str, Any], media_type: str) -> str | None:
    """The artifactType a referrers index lists for this manifest.

    The distribution spec: an image manifest without one is listed with its
    config's media type.
    """
    artifact_type = doc.get("artifactType")
    if artifact_type is None and media_type == mt.MANIFEST:
        config = doc.get("config")
        artifact_type = config.get("mediaType") if isinstance(config, dict) else None
    return artifact_type if isinstance(artifact_type, str) and artifact_type else None


def put_manifest(
    ctx: Context,
    repository: str,
    reference: str,
    body: bytes,
    content_type: str | None,
    tags: Sequence[str] = (),
) -> StoredManifest:
    """Store a manifest's exact bytes, check what it references, tag it when asked.

    ``tags`` (the ``?tag=`` parameters of a push) are set with the reference's
    own tag, all in one transaction: all of them or none.
    """
    tag, wanted = parse_reference(reference)
    wanted_tags = [_check_tag(t) for t in ([tag] if tag else []) + list(tags)]
    wanted_tags = list(dict.fromkeys(wanted_tags))
    doc = _parse_manifest(body)
    media_type = doc.get("mediaType") or (content_type or "").split(";")[0].strip()
    if media_type not in MANIFEST_TYPES:
        raise RegistryError("MANIFEST_INVALID", f"unsupported manifest media type {media_type!r}")
    digest = digest_bytes(body, wanted.algorithm if wanted else "sha256")
    if wanted is not None and digest != wanted:
        raise RegistryError("DIGEST_INVALID", f"the manifest's digest is {digest}, not {wanted}")
    _check_references(ctx, repository, doc, media_type)
    subject = doc.get("subject")
    subject_digest = None
    if subject is not None:
        if not isinstance(subject, dict) or "digest" not in subject:
            raise RegistryError("MANIFEST_INVALID", "subject must be a descriptor")
        subject_digest = str(parse_digest(subject["digest"]))
    artifact_type = artifact_type_of(doc, media_type)
    info = _put_bytes(ctx, body, digest)
    fields = {
        "media_type": media_type,
        "size": info,
        "artifact_type": artifact_type,
        "subject": subject_digest,
        "annotations": doc.get("annotations"),
    }
    for attempt in range(_RACE_ATTEMPTS):
        try:
            _record_manifest(ctx, repository, str(digest), fields, wanted_tags)
            break
        except IntegrityError:
            # Another request stored the same manifest or tag meanwhile: the next try
            # finds its rows and updates them, so both requests answer the same result.
            if attempt == _RACE_ATTEMPTS - 1:
                raise
    return StoredManifest(str(digest), media_type, info, tuple(wanted_tags))


#: A uniqueness race is lost at most once per row, and a push holds one manifest and few tags.
_RACE_ATTEMPTS = 5


def _record_manifest(
    ctx: Context, repository: str, digest: str, fields: dict[str, Any], tags: list[str]
) -> None:
    """The manifest's row (if new) and its tags, in one transaction."""
    with ctx.sessions.begin() as session:
        row = session.scalar(
            select(RegistryManifest).where(
                RegistryManifest.repository == repository,
                RegistryManifest.digest == digest,
            )
        )
        if row is None:
            session.add(RegistryManifest(repository=repository, digest=digest, **fields))
            session.flush()
        for name in tags:
            existing = session.scalar(
                select(RegistryTag).where(
                    RegistryTag.repository == repository, RegistryTag.name == name
                )
            )
            if existing is None:
                session.add(RegistryTag(repository=repository, name=name, digest=digest))
                session.flush()
            else:
                existing.digest, existing.updated_at = digest, utcnow()


def manifest_subject(body: bytes) -> str | None:
    """The digest a stored manifest names as its subject, for the ``OCI-Subject`` header."""
    subject = json.loads(body).get("subject")
    return subject.get("digest") if isinstance(subject, dict) else None


def _put_bytes(ctx: Context, body: bytes, digest: Digest) -> int:
    writer = ctx.store.writer(digest.algorithm)
    writer.write(body)
    return writer.commit(digest).size


def _descriptors(doc: dict[str, Any], field: str) -> list[dict[str, Any]]:
    """The descriptors under ``field`` (one object, or a list), each with a string digest."""
    value = doc.get(field)
    if value is None:
        return []
    items = [value] if field == "config" else value
    if not isinstance(items, list) or not all(
        isinstance(d, dict) and isinstance(d.get("digest"), str) for d in items
    ):
        raise RegistryError("MANIFEST_INVALID", f"{field} must hold descriptors")
    return items


def _check_references(ctx: Context, repository: str, doc: dict[str, Any], media_type: str) -> None:
    if media_type in INDEX_TYPES:
        children = _descriptors(doc, "manifests")
        wanted = [str(parse_digest(d["digest"])) for d in children]
        with ctx.sessions() as session:
            held = set(
                session.scalars(
                    select(RegistryManifest.digest).where(
                        RegistryManifest.repository == repository,
                        RegistryManifest.digest.in_(wanted),
                    )
                )
            )
        missing = [d for d in wanted if d not in held]
        if missing:
            raise RegistryError(
                "MANIFEST_BLOB_UNKNOWN", f"manifest {missing[0]} is not in {repository}"
            )
        return
    descriptors = _descriptors(doc, "config") + _descriptors(doc, "layers")
    for descriptor in descriptors:
        digest = parse_digest(descriptor["digest"])
        layer_type = descriptor.get("mediaType")
        if isinstance(layer_type, str) and layer_type.startswith(NONDISTRIBUTABLE_PREFIXES):
            continue  # its bytes live elsewhere
        try:
            blob_size(ctx, repository, digest)
        except RegistryError:
            raise RegistryError(
                "MANIFEST_BLOB_UNKNOWN", f"blob {digest} is not in {repository}"
            ) from None


_MANIFEST_COLUMNS = select(
    RegistryManifest.digest, RegistryManifest.media_type, RegistryManifest.size
).where(RegistryManifest.repository == bindparam("repository"))
#: Built once: the registry's hottest queries, executed with parameters only.
_MANIFEST_BY_TAG = _MANIFEST_COLUMNS.join(
    RegistryTag,
    (RegistryTag.repository == RegistryManifest.repository)
    & (RegistryTag.digest == RegistryManifest.digest),
).where(RegistryTag.name == bindparam("reference"))
_MANIFEST_BY_DIGEST = _MANIFEST_COLUMNS.where(RegistryManifest.digest == bindparam("reference"))


def find_manifest(ctx: Context, repository: str, reference: str) -> StoredManifest:
    """One query, by tag or by digest (this is the registry's hottest path)."""
    tag, digest = parse_reference(reference)
    stmt = _MANIFEST_BY_TAG if tag is not None else _MANIFEST_BY_DIGEST
    row = ctx.first(stmt, {"repository": repository, "reference": tag or str(digest)})
    if row is None:
        raise RegistryError("MANIFEST_UNKNOWN", f"no manifest {reference} in {repository}")
    return StoredManifest(row.digest, row.media_type, row.size)


_TAG_EXISTS = select(RegistryTag.id).where(
    RegistryTag.repository == bindparam("repository"), RegistryTag.name == bindparam("tag")
)


def has_tag(ctx: Context, repository: str, tag: str) -> bool:
    return ctx.first(_TAG_EXISTS, {"repository": repository, "tag": tag}) is not None


def delete_manifest(ctx: Context, repository: str, reference: str) -> None:
    """By tag: untag. By digest: remove the manifest and every tag pointing at it."""
    tag, digest = parse_reference(reference)
    with ctx.sessions.begin() as session:
        if tag is not None:
            gone = session.execute(
                delete(RegistryTag).where(
                    RegistryTag.repository == repository, RegistryTag.name == tag
                )
            )
        else:
            session.execute(
                delete(RegistryTag).where(
                    RegistryTag.repository == repository, RegistryTag.digest == str(digest)
                )
            )
            gone = session.execute(
                delete(RegistryManifest).where(
                    RegistryManifest.repository == repository,
                    RegistryManifest.digest == str(digest),
                )
            )
        if rowcount(gone) == 0:
            raise RegistryError("MANIFEST_UNKNOWN", f"no manifest {reference} in {repository}")
