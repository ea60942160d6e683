"""Assemble an OCI image from a lock: one layer per package, built once, shared by every image.

For a platform of a lock, each package's layer is looked up in the layer cache
by (package sha256 and url, prefix, platform, compression[, python]). Only the
missing ones are installed — each alone, into a scratch prefix, with the image
prefix patched into their files — and cut into deterministic tars, so a layer
is a function of its package and never of what was built beside it. A small
final layer adds what belongs to the environment rather than to a package
(``conda-meta/history``, the entrypoint). Layers are in rattler's link order
(dependencies first; merged layers keep it), so a file two packages ship ends
up on top as the installer leaves it in a prefix.
A lock's pip packages make one layer of their own, after the conda layers
(:mod:`condastore_core.image.pip_layer`).

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

import rattler
import zstandard

from condastore_core.digests import Digest
from condastore_core.image import manifest as oci
from condastore_core.image.base import SCRATCH, BaseImage
from condastore_core.image.cache import LayerCache, LayerRecord
from condastore_core.image.packages import (
    LAYER_SCHEME,
    layer_cache_key,
    layer_entries,
    python_version,
    read_installed_package,
)
from condastore_core.image.pip_layer import pip_layer_entries, pip_layer_key
from condastore_core.image.tarball import GZIP, Entry, write_layer
from condastore_core.install import install_lock, to_repodata_record
from condastore_core.leftovers import scratch_directory
from condastore_core.lock import Lock, LockedPackage

if TYPE_CHECKING:
    from condastore_core.pip.index import PipIndex
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
        pip: PipIndex | None = None,
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
        #: Where the wheels of a lock's pip packages are fetched from.
        self.pip = pip

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
        pip = [self.pip_layer(lock, platform)] if lock.pip_records(platform) else []
        ordered = self._within_budget(ordered, reserved=len(base.layers) + len(pip))
        final = self._final_layer(lock, platform, packages, base_has_shell)
        ordered = [*base.layers, *ordered, *pip, final]

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

        This is the unit of work a layer job runs. Each package is installed
        alone into a scratch prefix (with python beside a noarch python package,
        which needs it to be placed), so its layer never depends on what else
        the job or the image holds: no file is moved aside for another package.
        """
        reporter = reporter or NullReporter()
        plan = self.plan(lock, platform)
        missing = [p for p in plan.missing if p.name in set(names)]
        built: dict[str, LayerRecord] = {}
        for i, pkg in enumerate(missing, 1):
            reporter.step("building layers", i, len(missing))
            record = self._package_layer(lock, platform, pkg, plan.python is not None, reporter)
            self.cache.put(plan.keys[pkg.name], record)  # only after the blob is committed
            built[pkg.name] = record
        return built

    def _package_layer(
        self, lock: Lock, platform: str, pkg: LockedPackage, has_python: bool, reporter: Reporter
    ) -> LayerRecord:
        wanted = {pkg.name}
        if has_python and pkg.noarch == "python":
            wanted.add("python")  # noarch python packages are placed for this python
        with scratch_directory(self.scratch_dir, "layer-") as tmp:
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
            installed = read_installed_package(staging, pkg)
            record = self._write(layer_entries(staging, self.prefix, installed), (pkg.name,))
            shutil.rmtree(staging, ignore_errors=True)
        return record

    def pip_layer(self, lock: Lock, platform: str, reporter: Reporter | None = None) -> LayerRecord:
        """The one layer of the platform's pip packages, from the cache or built here.

        The wheels are installed over the lock's conda packages (their python runs
        the install) in a scratch prefix; the layer holds what the install added.
        """
        key = pip_layer_key(lock, platform, self.prefix, self.compression)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        if self.pip is None:
            raise ValueError("this image builder has no pip index for the lock's pip packages")
        with scratch_directory(self.scratch_dir, "pip-layer-") as tmp:
            staging = tmp / "prefix"
            install_lock(
                lock,
                platform,
                staging,
                self.package_cache_dir,
                reporter,
                only={p.name for p in lock.records(platform)},
                patched_prefix=self.prefix,
                client=self.client,
            )
            entries = pip_layer_entries(lock, platform, staging, self.prefix, self.pip, reporter)
            names = tuple(f"pip:{p.name}" for p in lock.pip_records(platform))
            record = self._write(entries, names)
            shutil.rmtree(staging, ignore_errors=True)
        self.cache.put(key, record)  # only after the blob is committed
        return record

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
        """Keep at most ``max_layers`` (final layer included) by merging neighbours in link order.

        Layers stay in link order, so a file two packages ship is the later
        one's in the image as in the prefix. Among neighbours, as nixery does,
        the least shared merge first (least likely to be pulled again for
        another image), then the smallest (cheapest to pull twice). A merged
        layer is cached by its parts.
        """
        budget = self.max_layers - 1 - reserved  # the final layer and the base's take theirs
        if budget < 1:
            raise ValueError(f"the base image alone has {reserved} of {self.max_layers} layers")
        if len(layers) <= budget:
            return layers
        uses = self.popularity([r.digest for r in layers]) if self.popularity else {}
        runs = [[r] for r in layers]

        def cost(i: int) -> tuple[int, int, int]:
            pair = runs[i] + runs[i + 1]
            return (sum(uses.get(r.digest, 0) for r in pair), sum(r.size for r in pair), i)

        while len(runs) > budget:
            i = min(range(len(runs) - 1), key=cost)
            runs[i : i + 2] = [runs[i] + runs[i + 1]]
        return [run[0] if len(run) == 1 else self._merge(run) for run in runs]

    def _merge(self, parts: list[LayerRecord]) -> LayerRecord:
        """One layer holding ``parts`` applied in order: a later part's path wins."""
        key = (
            "merged-"
            + hashlib.sha256(
                "\n".join(
                    [f"scheme{LAYER_SCHEME}", self.compression, *(p.digest for p in parts)]
                ).encode()
            ).hexdigest()
        )
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        entries: dict[str, Entry] = {}
        for part in parts:
            data = read_all(self.store, Digest.parse(part.digest))
            if part.media_type.endswith("zstd"):
                data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
            else:
                data = gzip.decompress(data)
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                for member in tar:
                    if member.isdir():
                        continue
                    if member.issym():
                        entries[member.name] = Entry(member.name, linkname=member.linkname)
                        continue
                    f = tar.extractfile(member)
                    assert f is not None
                    entries[member.name] = Entry(member.name, data=f.read(), mode=member.mode)
        record = self._write(list(entries.values()), tuple(n for p in parts for n in p.packages))
        self.cache.put(key, record)
        return record


def link_order(packages: tuple[LockedPackage, ...]) -> list[LockedPackage]:
    """The order rattler links packages in (dependencies first), which decides clobbers.

    Where two packages ship the same path, the prefix keeps the one linked
    last; layers in this order leave the same file on top.
    """
    by_name = {p.name: p for p in packages}
    records: list[rattler.PackageRecord] = [to_repodata_record(p) for p in packages]
    return [by_name[r.name.normalized] for r in rattler.PackageRecord.sort_topologically(records)]
