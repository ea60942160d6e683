"""Base images: the layers an environment image is stacked on (a loader, a libc, a shell).

conda-forge's binaries need the system's loader and libc, which no conda
package ships, so an image of an environment runs only on a base that has
them. A base is ``scratch`` (nothing), an OCI image layout on disk, or an
image in an upstream registry (``docker.io/library/debian:bookworm-slim``,
the default). A registry's image is fetched once: its blobs go into the blob
store and the manifest its reference named is remembered in the layer cache
under the reference, so later images reuse it without asking the registry
again (name a new tag or a digest to move to another base). Its layers and
their history come first in every image made on it; its environment
(``PATH``...) is kept behind the conda prefix's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from condastore_core.channels import OPEN_GATE, ChannelGate
from condastore_core.channels.fetch import GatedSession
from condastore_core.digests import Digest
from condastore_core.errors import BlobNotFound, ConfigError
from condastore_core.hashing import content_hash
from condastore_core.image import manifest as oci
from condastore_core.image.cache import LayerCache, LayerRecord
from condastore_core.store import BlobStore, put, read_all

INDEX_TYPES = (oci.INDEX, "application/vnd.docker.distribution.manifest.list.v2+json")


@dataclass(frozen=True)
class BaseImage:
    name: str
    layers: tuple[LayerRecord, ...]
    env: tuple[str, ...]
    #: The base's own ``history`` entries, kept first in every image made on it.
    history: tuple[Mapping[str, Any], ...] = ()

    @property
    def has_shell(self) -> bool:
        return bool(self.layers)


SCRATCH = BaseImage("scratch", (), ())


def _pick(manifests: list[dict], platform: str) -> dict:
    wanted = oci.OCI_PLATFORMS[platform]
    for entry in manifests:
        got = entry.get("platform") or {}
        if got.get("os") == wanted["os"] and got.get("architecture") == wanted["architecture"]:
            return entry
    if len(manifests) == 1:
        return manifests[0]
    raise ConfigError(f"the base image has no {platform} image")


def _from_manifest(name: str, manifest: dict, config: dict, store: BlobStore) -> BaseImage:
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    try:
        layers = tuple(
            LayerRecord(layer["digest"], diff_id, layer["size"], layer["mediaType"], ())
            for layer, diff_id in zip(manifest["layers"], diff_ids, strict=True)
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"the base image {name} has a malformed manifest: {exc}") from None
    for layer in layers:
        store.stat(Digest.parse(layer.digest))  # present, or BlobNotFound
    return BaseImage(
        name, layers, tuple(config.get("config", {}).get("Env") or ()), _history(name, config)
    )


def _history(name: str, config: dict) -> tuple[Mapping[str, Any], ...]:
    """The base's history if it matches its layers (one entry per non-empty layer), else
    one entry per layer naming the base."""
    history = config.get("history")
    layers = len(config.get("rootfs", {}).get("diff_ids", []))
    if (
        isinstance(history, list)
        and all(isinstance(h, dict) for h in history)
        and sum(1 for h in history if not h.get("empty_layer")) == layers
    ):
        return tuple(history)
    return tuple({"created_by": f"base image {name}"} for _ in range(layers))


def load_layout(path: Path, platform: str, store: BlobStore) -> BaseImage:
    """A base from an OCI image layout directory; its blobs are copied into the store."""
    blobs = path / "blobs"

    def blob(digest: str) -> bytes:
        algorithm, _, hexd = digest.partition(":")
        return (blobs / algorithm / hexd).read_bytes()

    try:
        index = json.loads((path / "index.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not an OCI image layout: {exc}") from None
    entry = _pick(index["manifests"], platform)
    manifest = json.loads(blob(entry["digest"]))
    if manifest.get("mediaType") in INDEX_TYPES:
        manifest = json.loads(blob(_pick(manifest["manifests"], platform)["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    for layer in manifest["layers"]:
        digest = Digest.parse(layer["digest"])
        if not store.exists(digest):
            writer = store.writer(digest.algorithm)
            with open(blobs / digest.algorithm / digest.hex, "rb") as f:
                while chunk := f.read(1 << 20):
                    writer.write(chunk)
            writer.commit(digest)
    return _from_manifest(str(path), manifest, config, store)


def pull_upstream(
    reference: str,
    platform: str,
    store: BlobStore,
    gate: ChannelGate = OPEN_GATE,
    *,
    credentials: Mapping[str, str] | None = None,
    cache: LayerCache | None = None,
) -> BaseImage:
    """A base from a registry (``host/repo:tag``), fetched once into the store and reused.

    Every request (the registry itself, token realms, blob redirects to a CDN)
    passes ``gate``: a registry on loopback or a private network is reached
    only where an administrator allowed that network. ``credentials`` are the
    settings' ``user:password`` per registry host; they go to that registry
    (and its token realm) only, and no error repeats them.
    """
    from condastore_core.oci_client import (
        RegistryClient,
        RegistryClientError,
        parse_reference,
        registry_host,
        stored_credentials,
    )

    key = content_hash("base-image", {"reference": reference, "platform": platform})
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            try:
                manifest = json.loads(read_all(store, Digest.parse(hit.digest)))
                config = json.loads(read_all(store, Digest.parse(manifest["config"]["digest"])))
                return _from_manifest(reference, manifest, config, store)
            except BlobNotFound:
                pass  # collected since: fetch it again
    host, repository, tag = parse_reference(reference)
    if host == "docker.io" and "/" not in repository:
        repository = f"library/{repository}"  # docker.io/debian is docker.io/library/debian
    scheme = "http" if host.startswith(("127.", "localhost")) else "https"
    user, sep, password = (credentials or {}).get(host, "").partition(":")
    client = RegistryClient(
        registry_host(host),
        credentials=(user, password) if sep else stored_credentials(host),
        scheme=scheme,
        session=GatedSession(gate),
    )
    body, media_type = client.get_manifest(repository, tag)
    manifest = json.loads(body)
    if media_type in INDEX_TYPES or manifest.get("mediaType") in INDEX_TYPES:
        chosen = _pick(manifest["manifests"], platform)
        body = client.get_manifest(repository, chosen["digest"])[0]
        manifest = json.loads(body)
    for descriptor in [manifest["config"], *manifest["layers"]]:
        digest = Digest.parse(descriptor["digest"])
        if not store.exists(digest):
            writer = store.writer(digest.algorithm)
            size, written = int(descriptor.get("size") or 0), 0
            try:
                for chunk in client.blob_chunks(repository, descriptor["digest"]):
                    written += len(chunk)
                    if written > size:  # the manifest said how big: no more is taken
                        raise RegistryClientError(
                            f"the base image {reference} sent more than the {size} bytes "
                            f"its manifest gives blob {descriptor['digest']}"
                        )
                    writer.write(chunk)
                writer.commit(digest)  # verified: a blob that is not its digest is refused
            except BaseException:
                writer.cancel()
                raise
    config = json.loads(read_all(store, Digest.parse(manifest["config"]["digest"])))
    base = _from_manifest(reference, manifest, config, store)
    if cache is not None:  # only once every blob is stored (nixery's rule)
        stored = put(store, body)
        cache.put(key, LayerRecord(str(stored.digest), "", stored.size, oci.MANIFEST, ()))
    return base


def resolve_base(
    spec: str,
    platform: str,
    store: BlobStore,
    gate: ChannelGate = OPEN_GATE,
    *,
    credentials: Mapping[str, str] | None = None,
    cache: LayerCache | None = None,
) -> BaseImage:
    """``""``/``scratch``, a layout directory, or a registry reference (fetched through ``gate``).

    ``spec`` comes from settings (``image_base``, ``image_namespace_bases``), never
    from a user, so a directory it names is read as configured; a registry is
    reached through the gate like any other URL the server fetches.
    """
    if spec in ("", "scratch"):
        return SCRATCH
    path = Path(spec).expanduser()
    if spec.startswith(("/", ".", "~")) or path.is_dir():
        return load_layout(path, platform, store)
    return pull_upstream(spec, platform, store, gate, credentials=credentials, cache=cache)
