"""Base images: the layers an environment image is stacked on (a libc, a shell).

A base is ``scratch`` (nothing), an OCI image layout on disk, or an image in
an upstream registry (``docker.io/library/debian:bookworm-slim``), pulled once
into the blob store. Its layers come first in every image made on it; its
environment (``PATH``...) is kept behind the conda prefix's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from condastore_core.channels import OPEN_GATE, ChannelGate
from condastore_core.channels.fetch import GatedSession
from condastore_core.digests import Digest
from condastore_core.errors import ConfigError
from condastore_core.image import manifest as oci
from condastore_core.image.cache import LayerRecord
from condastore_core.store import BlobStore, read_all

INDEX_TYPES = (oci.INDEX, "application/vnd.docker.distribution.manifest.list.v2+json")


@dataclass(frozen=True)
class BaseImage:
    name: str
    layers: tuple[LayerRecord, ...]
    env: tuple[str, ...]

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
    layers = tuple(
        LayerRecord(layer["digest"], diff_id, layer["size"], layer["mediaType"], ())
        for layer, diff_id in zip(manifest["layers"], diff_ids, strict=True)
    )
    for layer in layers:
        store.stat(Digest.parse(layer.digest))  # present, or BlobNotFound
    return BaseImage(name, layers, tuple(config.get("config", {}).get("Env") or ()))


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
    reference: str, platform: str, store: BlobStore, gate: ChannelGate = OPEN_GATE
) -> BaseImage:
    """A base from a registry (``host/repo:tag``), its blobs pulled once into the store.

    The registry itself was named by an administrator; everything it points
    to (token realms, blob redirects to a CDN) passes ``gate`` hop by hop.
    """
    from condastore_core.oci_client import RegistryClient, parse_reference, stored_credentials

    host, repository, tag = parse_reference(reference)
    scheme = "http" if host.startswith(("127.", "localhost")) else "https"
    client = RegistryClient(
        host,
        credentials=stored_credentials(host),
        scheme=scheme,
        session=GatedSession(gate.with_configured(f"{scheme}://{host}/v2")),
    )
    body, media_type = client.get_manifest(repository, tag)
    manifest = json.loads(body)
    if media_type in INDEX_TYPES:
        chosen = _pick(manifest["manifests"], platform)
        manifest = json.loads(client.get_manifest(repository, chosen["digest"])[0])
    for descriptor in [manifest["config"], *manifest["layers"]]:
        digest = Digest.parse(descriptor["digest"])
        if not store.exists(digest):
            writer = store.writer(digest.algorithm)
            for chunk in client.blob_chunks(repository, descriptor["digest"]):
                writer.write(chunk)
            writer.commit(digest)
    config = json.loads(read_all(store, Digest.parse(manifest["config"]["digest"])))
    return _from_manifest(reference, manifest, config, store)


def resolve_base(
    spec: str, platform: str, store: BlobStore, gate: ChannelGate = OPEN_GATE
) -> BaseImage:
    """``""``/``scratch``, a layout directory, or a registry reference (fetched through ``gate``).

    ``spec`` comes from settings (``image_base``, ``image_namespace_bases``), never
    from a user, so the directory or registry it names is allowed as configured.
    """
    if spec in ("", "scratch"):
        return SCRATCH
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_layout(path, platform, store)
    return pull_upstream(spec, platform, store, gate)
