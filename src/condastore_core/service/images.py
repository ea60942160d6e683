"""Environments as OCI images and artifacts, made when a registry client asks for them.

Two kinds of repository resolve on demand:

* ``<namespace>/<environment>``: ``:<build key>`` is that completed build's
  image and ``:latest`` the current build's; ``:<build key>.lock`` (``.yaml``,
  ``.explicit``, ``.tarball``) are the build's artifacts, attached to the image
  as referrers (``subject``), so ``oras pull`` fetches them.
* ``conda/<package>/<package>...`` (nixery-style): the packages, sorted, with
  constraints spelled ``numpy.ge.1.26``, are solved against the configured
  channels; ``:latest`` solves now, a build key tag pins that lock.

Layers come from :class:`~condastore_core.image.builder.ImageBuilder`, one per
package and shared between images. Missing layers are built by layer jobs on
the job engine, several in parallel; the request waits for them up to
``image_wait_seconds`` and then tells the client to retry (the jobs go on).
Requests for the same image, on any server, wait on one cluster lock and the
second finds the first one's result; equal layer jobs share a job id, and a
layer job that runs twice (two servers enqueued it) builds once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time

import requests
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from condastore_core import layout
from condastore_core.artifacts import ARTIFACT_TYPES, FILE_NAMES, ArtifactKind
from condastore_core.channels import ChannelRefused
from condastore_core.db.models import Artifact, Build, BuildStatus, RegistryTag
from condastore_core.digests import Digest
from condastore_core.errors import (
    BuildCrashed,
    CondastoreError,
    ConfigError,
    NotFound,
    PhaseTimeout,
    SolveError,
    SpecError,
)
from condastore_core.image import manifest as oci
from condastore_core.image.base import BaseImage, resolve_base
from condastore_core.image.builder import ImageBuilder, LayerPlan
from condastore_core.isolation import run_isolated
from condastore_core.jobs.base import JobQueue
from condastore_core.lock import Lock, LockedPackage, parse_conda_lock_yaml
from condastore_core.locks import shared_file_lock
from condastore_core.oci_client import RegistryClientError
from condastore_core.progress import Reporter
from condastore_core.service import registry as reg
from condastore_core.service.context import Context
from condastore_core.service.environments import find_environment
from condastore_core.service.layer_cache import DbLayerCache
from condastore_core.service.reserved import is_dynamic
from condastore_core.service.tenancy import is_managed_environment
from condastore_core.settings import Settings
from condastore_core.solve import native_platform
from condastore_core.spec import EnvironmentSpec
from condastore_core.store import put, read_all

EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
TITLE = "org.opencontainers.image.title"
_OPERATORS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "eq": "=="}
_CONSTRAINT = re.compile(r"^(?P<name>[a-z0-9_-][a-z0-9_.-]*?)\.(?P<op>ge|gt|le|lt|eq)\.(?P<v>.+)$")


def prepare(ctx: Context, repository: str, reference: str) -> None:
    """Make ``repository:reference`` exist if it names an environment image; else do nothing."""
    if is_dynamic(repository):
        _prepare_dynamic(ctx, repository, reference)
    elif "/" in repository:
        _prepare_managed(ctx, repository, reference)


# -- managed environments -------------------------------------------------------------


def _prepare_managed(ctx: Context, repository: str, reference: str) -> None:
    namespace, name = repository.split("/", 1)
    if not is_managed_environment(ctx, repository):
        return  # a repository pushed by clients: the common case, kept to one light query
    key = reference.split(".", 1)[0]
    with ctx.sessions() as session:
        try:
            env = find_environment(session, namespace, name)
        except NotFound:
            return
        if reference == "latest":
            build = env.current_build
        else:
            build = session.scalar(
                select(Build).where(
                    Build.environment_id == env.id,
                    Build.build_key == key,
                    Build.status == BuildStatus.COMPLETED,
                    Build.deleted_at.is_(None),
                )
            )
        if build is None or build.build_key is None:
            return
        key = build.build_key
        artifacts = _build_artifacts(session, build)
        spec = EnvironmentSpec.from_dict(build.specification.spec)
        labels = {
            "org.condastore.spec-hash": build.specification.spec_hash,
            "org.condastore.lock-hash": build.lock_hash or "",
            "org.condastore.build-key": key,
        }
    with _image_lock(ctx, repository, key):
        try:
            image = reg.find_manifest(ctx, repository, key)
        except reg.RegistryError:
            digest, _ = artifacts[ArtifactKind.LOCKFILE.value]
            lock = parse_conda_lock_yaml(read_all(ctx.store, Digest.parse(digest)))
            base = ctx.settings.image_namespace_bases.get(namespace, ctx.settings.image_base)
            info = image_info(repository, spec.description or "", lock, spec)
            image = publish_image(ctx, repository, lock, [key], labels, base=base, info=info)
            publish_artifacts(ctx, repository, key, artifacts, image)
        else:  # artifacts that completed after the image was made (the tarball job)
            missing = _unpublished(ctx, repository, key, artifacts)
            if missing:
                publish_artifacts(ctx, repository, key, missing, image)
        if reference == "latest":
            _retag(ctx, repository, "latest", image)


# -- dynamic images -----------------------------------------------------------------


def spec_from_name(repository: str, channels: tuple[str, ...]) -> EnvironmentSpec:
    """``conda/zstd/numpy.ge.1.26`` -> a spec of those packages (order does not matter)."""
    deps = []
    for part in sorted(repository.split("/")[1:]):
        match = _CONSTRAINT.match(part)
        if match:
            deps.append(f"{match['name']} {_OPERATORS[match['op']]}{match['v']}")
        else:
            deps.append(part)
    if not deps:
        raise reg.RegistryError("NAME_INVALID", "name at least one package after conda/")
    try:
        return EnvironmentSpec.from_dict(
            {"name": "image", "channels": list(channels), "dependencies": deps}
        )
    except SpecError as exc:
        raise reg.RegistryError("NAME_INVALID", exc.message) from None


#: Recent solves of ``latest`` per dynamic name (``image_solve_ttl_seconds``), per process.
_solved: dict[tuple[str, str], tuple[float, Lock]] = {}
_solved_lock = threading.Lock()


def _solve_latest(ctx: Context, repository: str) -> Lock:
    """The lock ``latest`` means now: solved, or remembered from a solve less than a TTL ago."""
    cache_key = (str(ctx.settings.data_dir), repository)
    with _solved_lock:
        hit = _solved.get(cache_key)
    if hit is not None and time.monotonic() - hit[0] < ctx.settings.image_solve_ttl_seconds:
        return hit[1]
    spec = spec_from_name(repository, tuple(ctx.settings.channels))
    platform = native_platform() if native_platform() in oci.OCI_PLATFORMS else "linux-64"
    try:
        lock = ctx.solve(spec, [platform])
    except (SolveError, BuildCrashed, PhaseTimeout) as exc:
        # The whole message, as the API gives it: its first line and the solver's explanation.
        raise reg.RegistryError("MANIFEST_UNKNOWN", exc.message, detail=exc.detail) from None
    with _solved_lock:
        _solved[cache_key] = (time.monotonic(), lock)
    return lock


def _prepare_dynamic(ctx: Context, repository: str, reference: str) -> None:
    if reference != "latest":
        return  # a build key tag exists once its image was made, or is unknown
    lock = _solve_latest(ctx, repository)
    key = lock.build_key
    with contextlib.suppress(reg.RegistryError):  # the fast path: already made and tagged
        if (
            reg.find_manifest(ctx, repository, "latest").digest
            == reg.find_manifest(ctx, repository, key).digest
        ):
            return
    with _image_lock(ctx, repository, key):
        try:
            image = reg.find_manifest(ctx, repository, key)
        except reg.RegistryError:
            labels = {"org.condastore.lock-hash": lock.lock_hash, "org.condastore.build-key": key}
            spec = spec_from_name(repository, tuple(ctx.settings.channels))
            description = "conda packages " + " ".join(str(d) for d in spec.dependencies)
            info = image_info(repository, description, lock, spec)
            image = publish_image(ctx, repository, lock, [key], labels, info=info)
        _retag(ctx, repository, "latest", image)


# -- publishing ---------------------------------------------------------------------


def image_info(
    repository: str, description: str, lock: Lock, spec: EnvironmentSpec
) -> oci.ImageInfo:
    """The OCI annotations of an environment's image: its name, the versions of the packages
    its spec asks for, the channels it comes from, and its build key as the revision."""
    records = {p.name: p for p in lock.records(lock.platforms[0])} if lock.platforms else {}
    asked = sorted(
        {re.split(r"[^A-Za-z0-9_.-]", str(d).strip(), maxsplit=1)[0] for d in spec.dependencies}
    )
    version = " ".join(f"{n}={records[n].version}" for n in asked if n in records)
    return oci.ImageInfo(
        title=repository,
        description=description,
        source=" ".join(lock.channels),
        version=version,
        revision=lock.build_key,
    )


def image_builder(
    ctx: Context, *, prefix: str | None = None, compression: str | None = None
) -> ImageBuilder:
    data_dir = ctx.settings.data_dir
    cache = DbLayerCache(ctx)
    return ImageBuilder(
        ctx.store,
        cache,
        layout.package_cache_dir(data_dir),
        layout.scratch_dir(data_dir),
        prefix=prefix or ctx.settings.image_prefix,
        compression=compression or ctx.settings.image_compression,
        popularity=cache.popularity,
        client=ctx.solver.client,
        pip=ctx.solver.pip,
    )


def build_layers(
    ctx: Context,
    lock: Lock,
    platform: str,
    names: list[str],
    *,
    prefix: str | None = None,
    compression: str | None = None,
) -> int:
    """The work of one layer job: build those packages' layers if still missing.

    Runs in a child process (installing packages is package work), which
    connects to the installation's database and store from its settings.
    """
    return run_isolated(
        "layers",
        ctx.limits,
        _build_layers_here,
        ctx.settings,
        lock,
        platform,
        list(names),
        prefix=prefix,
        compression=compression,
    )


def _build_layers_here(
    settings: Settings,
    lock: Lock,
    platform: str,
    names: list[str],
    *,
    prefix: str | None,
    compression: str | None,
    reporter: Reporter | None = None,
) -> int:
    ctx = Context.from_settings(settings, migrate=False)
    try:
        builder = image_builder(ctx, prefix=prefix, compression=compression)
        keys = sorted(builder.plan(lock, platform).keys[name] for name in names)
        digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:40]
        with (
            ctx.locks.hold(f"layers:{digest}"),  # the second finds the first one's layers
            shared_file_lock(layout.package_cache_lock_path(ctx.settings.data_dir)),
        ):
            return len(builder.build_layers(lock, platform, names, reporter))
    finally:
        ctx.engine.dispose()


def publish_image(
    ctx: Context,
    repository: str,
    lock: Lock,
    tags: list[str],
    labels: dict[str, str],
    *,
    base: str | None = None,
    info: oci.ImageInfo | None = None,
) -> reg.StoredManifest:
    """Build the lock's image (an index of images when it has several linux platforms)."""
    platforms = [p for p in lock.platforms if p in oci.OCI_PLATFORMS]
    if not platforms:
        raise reg.RegistryError(
            "MANIFEST_UNKNOWN", f"the lock has no linux platform to make an image of ({repository})"
        )
    builder = image_builder(ctx)
    base_spec = ctx.settings.image_base if base is None else base
    descriptors = []
    for platform in platforms:
        plan = _layers_ready(ctx, builder, lock, platform)
        image = builder.assemble(
            lock,
            plan,
            labels=labels,
            base=_base(ctx, base_spec, platform, builder),
            info=info,
        )
        config = ctx.store.stat(image.config_digest)
        reg.link_blob(ctx, repository, config.digest, config.size)
        for layer in image.layers:
            reg.link_blob(ctx, repository, Digest.parse(layer.digest), layer.size)
        if len(platforms) == 1:
            stored = None
            for tag in tags:
                stored = reg.put_manifest(ctx, repository, tag, image.manifest, oci.MANIFEST)
            if stored is None:
                raise ValueError("an image is stored under at least one tag")
            return stored
        stored = reg.put_manifest(
            ctx, repository, str(image.manifest_digest), image.manifest, oci.MANIFEST
        )
        descriptors.append(
            oci.Descriptor(
                oci.MANIFEST, stored.digest, stored.size, platform=oci.OCI_PLATFORMS[platform]
            )
        )
    created = oci.created_at(lock.source_date_epoch)
    index = oci.image_index(descriptors, (info or oci.ImageInfo()).annotations(created))
    stored_index = None
    for tag in tags:
        stored_index = reg.put_manifest(ctx, repository, tag, index, oci.INDEX)
    if stored_index is None:
        raise ValueError("an image is stored under at least one tag")
    return stored_index


def _base(ctx: Context, spec: str, platform: str, builder: ImageBuilder) -> BaseImage:
    """The base image named in settings; one the server cannot fetch is its own problem
    (503: the client may retry once an administrator fixed it), said without credentials."""
    try:
        return resolve_base(
            spec,
            platform,
            ctx.store,
            ctx.solver.gate,
            credentials=ctx.settings.image_registry_credentials,
            cache=builder.cache,
        )
    except (RegistryClientError, ChannelRefused, ConfigError, requests.RequestException) as exc:
        reason = exc.message if isinstance(exc, CondastoreError) else type(exc).__name__
        raise reg.RegistryError(
            "UNAVAILABLE", f"the base image {spec} of this server's images is unavailable: {reason}"
        ) from None


# -- layers by jobs -----------------------------------------------------------------


def _layers_ready(ctx: Context, builder: ImageBuilder, lock: Lock, platform: str) -> LayerPlan:
    """The plan with every layer present: built by layer jobs, waited for up to a bound."""
    plan = builder.plan(lock, platform)
    if not plan.missing:
        return plan
    jobs = ctx.jobs
    if jobs is None:  # no job engine (a command-line build): build them now
        build_layers(
            ctx,
            lock,
            platform,
            [p.name for p in plan.missing],
            prefix=builder.prefix,
            compression=builder.compression,
        )
        plan = builder.plan(lock, platform)
        if plan.missing:
            names = ", ".join(p.name for p in plan.missing)
            raise reg.RegistryError("UNKNOWN", f"building image layers failed for {names}")
        return plan
    wanted = len(plan.missing)
    deadline = time.monotonic() + ctx.settings.image_wait_seconds
    while True:
        job_ids = _enqueue_layer_jobs(ctx, jobs, builder, lock, plan)
        while True:
            remaining = deadline - time.monotonic()
            ended = jobs.wait_layers(job_ids, max(0.0, min(remaining, 1.0)))
            plan = builder.plan(lock, platform)
            if not plan.missing:
                return plan
            for job_id in job_ids:
                failure = jobs.layers_failure(job_id)
                if failure is not None:
                    raise reg.RegistryError("UNKNOWN", f"building image layers failed: {failure}")
            if time.monotonic() >= deadline:
                done = wanted - len(plan.missing)
                raise reg.RegistryError(
                    "UNAVAILABLE",
                    f"the image is being built ({done} of {wanted} layers done); retry shortly",
                    detail={
                        "retry_after": 10,
                        "layers_built": done,
                        "layers_missing": wanted - done,
                    },
                )
            if ended:  # every job ended and a layer is still missing (collected meanwhile?)
                break  # enqueue what is missing again


def _enqueue_layer_jobs(
    ctx: Context, jobs: JobQueue, builder: ImageBuilder, lock: Lock, plan: LayerPlan
) -> list[str]:
    """One job per group of the image's packages that has missing layers; their ids."""
    lock_json = lock.model_dump_json()
    image = {"prefix": builder.prefix, "compression": builder.compression}
    job_ids = []
    for group in layer_groups(list(plan.packages), ctx.settings.image_layer_jobs):
        names = [p.name for p in group if p.name not in plan.layers]
        if not names:
            continue
        keys = sorted(plan.keys[p.name] for p in group)
        job_id = "condastore-layers-" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:40]
        jobs.enqueue_layers(job_id, lock_json, plan.platform, names, image)
        job_ids.append(job_id)
    return job_ids


def layer_groups(packages: list[LockedPackage], jobs: int) -> list[list[LockedPackage]]:
    """Split an image's packages into at most ``jobs`` groups of similar download size.

    A group's job builds those of its layers that are missing. When a record
    has no size (a lock read back from ``conda-lock.yml``), every package counts
    as one, so such images spread over the jobs too. Groups depend on
    the image alone, not on what is cached at the time, so a client retrying
    while the jobs run finds the same job ids and waits on them. python and the
    noarch python packages stay together: a group holding one of them installs
    python, which is worth doing once.
    """
    units: list[list[LockedPackage]] = []
    pythonic = [p for p in packages if p.name == "python" or p.noarch == "python"]
    if pythonic:
        units.append(pythonic)
    units += [[p] for p in packages if p not in pythonic]
    sized = all(p.size is not None for p in packages)

    def weight(unit: list[LockedPackage]) -> int:
        return sum(p.size or 0 for p in unit) if sized else len(unit)

    units.sort(key=lambda u: (-weight(u), u[0].name))
    groups: list[list[LockedPackage]] = [[] for _ in range(max(1, min(jobs, len(units))))]
    sizes = [0] * len(groups)
    for unit in units:
        i = sizes.index(min(sizes))
        groups[i].extend(unit)
        sizes[i] += weight(unit)
    return [sorted(g, key=lambda p: p.name) for g in groups if g]


def publish_artifacts(
    ctx: Context,
    repository: str,
    key: str,
    artifacts: dict[str, tuple[str, int]],
    subject: reg.StoredManifest,
) -> None:
    """Each artifact of a build as an OCI artifact referring to the build's image."""
    empty = put(ctx.store, b"{}")
    reg.link_blob(ctx, repository, empty.digest, empty.size)
    for kind, (suffix, artifact_type) in ARTIFACT_TYPES.items():
        if kind.value not in artifacts:
            continue
        digest, size = artifacts[kind.value]
        reg.link_blob(ctx, repository, Digest.parse(digest), size)
        manifest = {
            "schemaVersion": 2,
            "mediaType": oci.MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": EMPTY_CONFIG, "digest": str(empty.digest), "size": 2},
            "layers": [
                {
                    "mediaType": artifact_type,
                    "digest": digest,
                    "size": size,
                    "annotations": {TITLE: FILE_NAMES[kind]},
                }
            ],
            "subject": {
                "mediaType": subject.media_type,
                "digest": subject.digest,
                "size": subject.size,
            },
            "annotations": {"org.condastore.build-key": key},
        }
        body = json.dumps(manifest, sort_keys=True).encode()
        reg.put_manifest(ctx, repository, f"{key}.{suffix}", body, oci.MANIFEST)


def attach_artifacts(ctx: Context, build_id: int) -> None:
    """Publish the artifacts a build gained after its image was made (the tarball job, a
    ``build pack``) on the images of every build of its lock, as referrers and tags.

    A pull makes an image with the artifacts its build has at that moment; this runs
    when one more completes, so ``oras``, the tags list and the referrers API see it
    without waiting for another pull. A build not pulled yet has no image: its first pull
    publishes everything.
    """
    with ctx.sessions() as session:
        build = session.get(Build, build_id)
        if build is None or build.lock_hash is None:
            return
        twins = session.scalars(
            select(Build).where(
                Build.lock_hash == build.lock_hash,
                Build.status == BuildStatus.COMPLETED,
                Build.deleted_at.is_(None),
                Build.build_key.is_not(None),
            )
        ).all()
        targets = {
            f"{b.environment.namespace.name}/{b.environment.name}": (
                str(b.build_key),
                _build_artifacts(session, b),
            )
            for b in twins
        }
    for repository, (key, artifacts) in sorted(targets.items()):
        with _image_lock(ctx, repository, key):
            try:
                image = reg.find_manifest(ctx, repository, key)
            except reg.RegistryError:
                continue  # not pulled yet: its first pull publishes every artifact
            missing = _unpublished(ctx, repository, key, artifacts)
            if missing:
                publish_artifacts(ctx, repository, key, missing, image)


def _build_artifacts(session: Session, build: Build) -> dict[str, tuple[str, int]]:
    """A build's artifacts, and those it lacks that another completed build of the same
    lock has (a reused build whose twin's tarball job ended later): same lock, same forms."""
    found = {a.kind: (a.digest, a.size) for a in build.artifacts}
    others = session.scalars(
        select(Artifact)
        .join(Build)
        .where(
            Build.lock_hash == build.lock_hash,
            Build.status == BuildStatus.COMPLETED,
            Build.deleted_at.is_(None),
            Build.id != build.id,
            Artifact.kind != ArtifactKind.LOG.value,
        )
        .order_by(Build.id)
    )
    for artifact in others:
        found.setdefault(artifact.kind, (artifact.digest, artifact.size))
    return found


_TAGS_NAMED = select(RegistryTag.name).where(
    RegistryTag.repository == bindparam("repository"),
    RegistryTag.name.in_(bindparam("names", expanding=True)),
)


def _unpublished(
    ctx: Context, repository: str, key: str, artifacts: dict[str, tuple[str, int]]
) -> dict[str, tuple[str, int]]:
    """The build's artifacts that have no ``<key>.<suffix>`` tag yet (one query)."""
    tags = {
        f"{key}.{suffix}": kind.value
        for kind, (suffix, _) in ARTIFACT_TYPES.items()
        if kind.value in artifacts
    }
    with ctx.engine.connect() as conn:
        held = set(conn.scalars(_TAGS_NAMED, {"repository": repository, "names": list(tags)}).all())
    return {kind: artifacts[kind] for tag, kind in tags.items() if tag not in held}


def _retag(ctx: Context, repository: str, tag: str, image: reg.StoredManifest) -> None:
    try:
        if reg.find_manifest(ctx, repository, tag).digest == image.digest:
            return
    except reg.RegistryError:
        pass
    body = read_all(ctx.store, Digest.parse(image.digest))
    reg.put_manifest(ctx, repository, tag, body, image.media_type)


def _image_lock(ctx: Context, repository: str, key: str) -> contextlib.AbstractContextManager[None]:
    """One maker per image in the cluster; the others wait and then find it made."""
    return ctx.locks.hold(f"image:{repository}:{key}")
