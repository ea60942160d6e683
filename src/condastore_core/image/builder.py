"""Assemble an OCI image from a lock: one layer per package, built once, shared by every image.

For a platform of a lock, each package's layer is looked up in the layer cache
by (package sha256, prefix, platform, compression[, python]). Only the missing
ones are installed — into a scratch prefix, with the image prefix patched into
their files — and cut into deterministic tars. A small final layer adds what
belongs to the environment rather than to a package (``conda-meta/history``,
the entrypoint). Layers are ordered like conda links packages (dependencies
first), so a file two packages ship ends up as conda would leave it.

Nothing runs a container, so images for other platforms are built the same way.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import shutil
import tarfile
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import zstandard

from condastore_core.digests import Digest
from condastore_core.image import manifest as oci
from condastore_core.image.base import SCRATCH, BaseImage
from condastore_core.image.cache import LayerCache, LayerRecord
from condastore_core.image.packages import (
    layer_cache_key,
    layer_entries,
    python_version,
    read_installed,
)
from condastore_core.image.tarball import GZIP, Entry, write_layer
from condastore_core.install import install_lock
from condastore_core.leftovers import scratch_directory
from condastore_core.lock import Lock, LockedPackage

if TYPE_CHECKING:
    import rattler
from condastore_core.progress import NullReporter, Reporter
from condastore_core.store import BlobStore, put, read_all

DEFAULT_PREFIX = "/opt/conda"
MAX_LAYERS = 100

ENTRYPOINT_SCRIPT = """#!/bin/sh
# Apply the environment's activation scripts, then run the command.
export CONDA_PREFIX="{prefix}"
for script in "$CONDA_PREFIX"/etc/conda/activate.d/*.sh; do
    [ -r "$script" ] && . "$script"
done
exec "$@"
"""


@dataclass(frozen=True)
class LayerPlan:
    """One platform's packages in link order, their layer cache keys, and the layers found."""

    platform: str
    packages: tuple[LockedPackage, ...]
    keys: Mapping[str, str]
    layers: Mapping[str, LayerRecord]
    python: str | None

    @property
    def missing(self) -> list[LockedPackage]:
        return [p for p in self.packages if p.name not in self.layers]

    def with_layers(self, found: Mapping[str, LayerRecord]) -> LayerPlan:
        return dataclasses.replace(self, layers={**self.layers, **found})


@dataclass(frozen=True)
class BuiltImage:
    platform: str
    manifest: bytes
    manifest_digest: Digest
    config_digest: Digest
    layers: tuple[LayerRecord, ...]
    layers_built: int


class ImageBuilder:
    def __init__(
        self,
        store: BlobStore,
        cache: LayerCache,
        package_cache_dir: Path,
        scratch_dir: Path,
        *,
        prefix: str = DEFAULT_PREFIX,
        compression: str = GZIP,
        max_layers: int = MAX_LAYERS,
        popularity: Callable[[Sequence[str]], Mapping[str, int]] | None = None,
        client: rattler.Client | None = None,
    ) -> None:
        self.store = store
        self.cache = cache
        self.package_cache_dir = package_cache_dir
        self.scratch_dir = scratch_dir
        self.prefix = "/" + prefix.strip("/")
        self.compression = compression
        self.max_layers = max_layers
        #: layer digest -> how many images use it; past the budget the least used merge.
        self.popularity = popularity
        #: rattler's HTTP client for package downloads (the channel gate's, on a server).
        self.client = client

    def plan(self, lock: Lock, platform: str) -> LayerPlan:
        """Which layers the platform's image needs and which of them are cached already."""
        if platform not in oci.OCI_PLATFORMS:
            raise ValueError(f"images are built for linux platforms only, not {platform}")
        packages = link_order(lock.records(platform))
        python = python_version(tuple(packages))
        keys = {
            p.name: layer_cache_key(p, self.prefix, platform, self.compression, python)
            for p in packages
        }
        hits = self.cache.get_many(keys.values())
        layers = {p.name: hits[keys[p.name]] for p in packages if keys[p.name] in hits}
        return LayerPlan(platform, tuple(packages), keys, layers, python)

    def build(
        self,
        lock: Lock,
        platform: str,
        *,
        labels: Mapping[str, str] | None = None,
        base: BaseImage = SCRATCH,
        reporter: Reporter | None = None,
        info: oci.ImageInfo | None = None,
    ) -> BuiltImage:
        """Plan, build the missing layers here, and assemble the image."""
        reporter = reporter or NullReporter()
        plan = self.plan(lock, platform)
        reporter.log(
            f"image {platform}: {len(plan.packages)} packages, "
            f"{len(plan.layers)} layers cached, {len(plan.missing)} to build"
        )
        built = self.build_layers(lock, platform, [p.name for p in plan.missing], reporter)
        return self.assemble(
            lock,
            plan.with_layers(built),
            labels=labels,
            base=base,
            layers_built=len(built),
            info=info,
        )

    def assemble(
        self,
        lock: Lock,
        plan: LayerPlan,
        *,
        labels: Mapping[str, str] | None = None,
        base: BaseImage = SCRATCH,
        layers_built: int = 0,
        info: oci.ImageInfo | None = None,
    ) -> BuiltImage:
        """The image of a plan whose package layers all exist: config, final layer, manifest."""
        if plan.missing:
            names = ", ".join(p.name for p in plan.missing)
            raise ValueError(f"layers of {names} are not built yet")
        packages = list(plan.packages)
        platform = plan.platform
        base_has_shell = base.has_shell
        ordered = [plan.layers[p.name] for p in packages]
        ordered = self._within_budget(ordered, reserved=len(base.layers))
        final = self._final_layer(lock, platform, packages, base_has_shell)
        ordered = [*base.layers, *ordered, final]

        base_path = next((e[5:] for e in base.env if e.startswith("PATH=")), None)
        system_path = base_path or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        env = [
            *(e for e in base.env if not e.startswith(("PATH=", "CONDA_PREFIX="))),
            f"PATH={self.prefix}/bin:{system_path}",
            f"CONDA_PREFIX={self.prefix}",
        ]
        entrypoint = [f"{self.prefix}/.condastore/entrypoint.sh"] if base_has_shell else None
        created = oci.created_at(lock.source_date_epoch)
        annotations = (info or oci.ImageInfo()).annotations(created)
        config = oci.image_config(
            platform,
            [r.diff_id for r in ordered],
            env=env,
            labels={**annotations, **(labels or {})},
            entrypoint=entrypoint,
            cmd=["/bin/sh"] if base_has_shell else None,
            created=created,
            history=oci.layer_history(
                base.history,
                oci.describe_layers(
                    [r.packages for r in ordered[len(base.layers) :]],
                    {p.name: f"{p.name}-{p.version}-{p.build}" for p in packages},
                ),
                created,
            ),
        )
        config_info = put(self.store, config)
        manifest = oci.image_manifest(
            oci.Descriptor(oci.CONFIG, str(config_info.digest), config_info.size),
            [
                oci.Descriptor(
                    r.media_type,
                    r.digest,
                    r.size,
                    {oci.PACKAGES_ANNOTATION: ",".join(r.packages)} if r.packages else None,
                )
                for r in ordered
            ],
            annotations,
        )
        manifest_info = put(self.store, manifest)
        return BuiltImage(
            platform,
            manifest,
            manifest_info.digest,
            config_info.digest,
            tuple(ordered),
            layers_built,
        )

    # -- layers ------------------------------------------------------------------

    def build_layers(
        self,
        lock: Lock,
        platform: str,
        names: Collection[str],
        reporter: Reporter | None = None,
    ) -> dict[str, LayerRecord]:
        """Build the layers of the packages ``names`` that are still missing; cache each one.

        This is the unit of work a layer job runs: installs only those packages
        (and python, where noarch python packages need it) into a scratch prefix.
        """
        reporter = reporter or NullReporter()
        plan = self.plan(lock, platform)
        missing = [p for p in plan.missing if p.name in set(names)]
        if not missing:
            return {}
        wanted = {p.name for p in missing}
        if plan.python and any(p.noarch == "python" for p in missing):
            wanted.add("python")  # noarch python packages are placed for this python
        built: dict[str, LayerRecord] = {}
        with scratch_directory(self.scratch_dir, "image-") as tmp:
            staging = tmp / "prefix"
            install_lock(
                lock,
                platform,
                staging,
                self.package_cache_dir,
                reporter,
                only=wanted,
                patched_prefix=self.prefix,
                client=self.client,
            )
            installed = read_installed(staging)
            for i, pkg in enumerate(missing, 1):
                reporter.step("building layers", i, len(missing))
                entries = layer_entries(staging, self.prefix, installed[pkg.name])
                record = self._write(entries, (pkg.name,))
                self.cache.put(plan.keys[pkg.name], record)  # only after the blob is committed
                built[pkg.name] = record
            shutil.rmtree(staging, ignore_errors=True)
        return built

    def _write(self, entries: list[Entry], packages: tuple[str, ...]) -> LayerRecord:
        writer = self.store.writer()
        try:
            result = write_layer(entries, writer, self.compression)  # type: ignore[arg-type]
            info = writer.commit()
        except BaseException:
            writer.cancel()
            raise
        return LayerRecord(
            str(info.digest),
            f"sha256:{result.diff_id}",
            info.size,
            oci.LAYER_MEDIA_TYPES[self.compression],
            packages,
        )

    def _final_layer(
        self, lock: Lock, platform: str, packages: list[LockedPackage], base_has_shell: bool
    ) -> LayerRecord:
        root = self.prefix.strip("/")
        history = (
            "==> condastore <==\n# lock_hash: "
            + lock.lock_hash
            + "\n"
            + "".join(
                f"+{p.channel.rstrip('/')}::{p.name}-{p.version}-{p.build}\n" for p in packages
            )
        )
        entries = [Entry(f"{root}/conda-meta/history", data=history.encode())]
        if base_has_shell:
            entries.append(
                Entry(
                    f"{root}/.condastore/entrypoint.sh",
                    mode=0o755,
                    data=ENTRYPOINT_SCRIPT.format(prefix=self.prefix).encode(),
                )
            )
        return self._write(entries, ())

    def _within_budget(self, layers: list[LayerRecord], reserved: int = 0) -> list[LayerRecord]:
        """Keep at most ``max_layers`` (final layer included): merge the least shared past it.

        As nixery does, layers few images use are merged first (they are least
        likely to be pulled again for another image), the smallest first among
        equally shared ones (cheapest to pull twice). The merged layer is cached
        by its parts.
        """
        budget = self.max_layers - 1 - reserved  # the final layer and the base's take theirs
        if budget < 1:
            raise ValueError(f"the base image alone has {reserved} of {self.max_layers} layers")
        if len(layers) <= budget:
            return layers
        uses = self.popularity([r.digest for r in layers]) if self.popularity else {}
        count = len(layers) - budget + 1
        rank = sorted(
            range(len(layers)), key=lambda i: (uses.get(layers[i].digest, 0), layers[i].size, i)
        )
        chosen = set(rank[:count])
        merged = self._merge([layers[i] for i in sorted(chosen)])
        return [layer for i, layer in enumerate(layers) if i not in chosen] + [merged]

    def _merge(self, parts: list[LayerRecord]) -> LayerRecord:
        key = (
            "merged-"
            + hashlib.sha256(
                "\n".join([self.compression, *(p.digest for p in parts)]).encode()
            ).hexdigest()
        )
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        with scratch_directory(self.scratch_dir, "merge-") as root:
            for part in parts:  # in dependency order: a later package's file wins
                data = read_all(self.store, Digest.parse(part.digest))
                if part.media_type.endswith("zstd"):
                    data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
                else:
                    data = gzip.decompress(data)
                with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                    tar.extractall(root, filter="tar")
            entries = [
                Entry(str(path.relative_to(root)), source=path)
                for path in sorted(root.rglob("*"))
                if path.is_symlink() or path.is_file()
            ]
            record = self._write(entries, tuple(n for p in parts for n in p.packages))
        self.cache.put(key, record)
        return record


def link_order(packages: tuple[LockedPackage, ...]) -> list[LockedPackage]:
    """Dependencies before dependents (as conda links), ties broken by name: deterministic."""
    by_name = {p.name: p for p in packages}
    deps = {
        p.name: {d.split(" ")[0] for d in p.depends} & by_name.keys() - {p.name} for p in packages
    }
    ordered: list[LockedPackage] = []
    done: set[str] = set()
    while len(ordered) < len(packages):
        ready = sorted(n for n in by_name if n not in done and deps[n] <= done)
        if not ready:  # a dependency cycle: break it by name
            ready = [min(n for n in by_name if n not in done)]
        for name in ready:
            ordered.append(by_name[name])
            done.add(name)
    return ordered
