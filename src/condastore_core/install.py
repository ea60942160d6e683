"""Install a lock into a prefix with py-rattler.

Every build shares one package cache (rattler locks its entries, so builds may
run at once). A prefix is installed into a staging directory with the final
path patched into its files, then renamed into place: a crash never leaves a
half-installed prefix under the final name. rattler checks each archive it
downloads against the sha256 the lock records; archives on a `file://` channel
it reads in place without that check, so we hash those ourselves first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import uuid
from pathlib import Path
from urllib.parse import unquote, urlparse

import rattler

from condastore_core.channels.gate import ChannelGate
from condastore_core.channels.proxy import client_for, refused_hop
from condastore_core.errors import CondastoreError, InstallError
from condastore_core.lock import Lock, LockedPackage
from condastore_core.package_paths import PackageSource, check_packages
from condastore_core.pip.index import PipIndex
from condastore_core.progress import NullReporter, Reporter


def to_repodata_record(pkg: LockedPackage) -> rattler.RepoDataRecord:
    record = rattler.PackageRecord(
        name=pkg.name,
        version=pkg.version,
        build=rattler.BuildString(pkg.build),
        build_number=pkg.build_number,
        subdir=pkg.subdir,
        noarch=pkg.noarch,  # type: ignore[arg-type]
        depends=list(pkg.depends),
        constrains=list(pkg.constrains),
        sha256=bytes.fromhex(pkg.sha256) if pkg.sha256 else None,
        md5=bytes.fromhex(pkg.md5) if pkg.md5 else None,
        size=pkg.size,
    )
    return rattler.RepoDataRecord(record, pkg.file_name, pkg.url, pkg.channel)


def verify_local_archives(packages: list[LockedPackage]) -> None:
    """Refuse any `file://` archive whose sha256 (md5 for md5-only records) differs from the
    lock's."""
    for pkg in packages:
        parsed = urlparse(pkg.url)
        if parsed.scheme != "file":
            continue
        path = Path(unquote(parsed.path))
        kind, expected = ("sha256", pkg.sha256) if pkg.sha256 else ("md5", pkg.md5)
        digest = hashlib.new(kind)
        try:
            with path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        except OSError as exc:
            raise InstallError(f"cannot read {pkg.file_name}: {exc.strerror}") from None
        if digest.hexdigest() != expected:
            raise InstallError(
                f"{kind} mismatch for {pkg.url}: the lock says {expected}, "
                f"the archive is {digest.hexdigest()}"
            )


class _RattlerProgress(rattler.InstallerReporter):
    """Forwards rattler's callbacks as ``downloading n/m`` and ``installing n/m`` steps."""

    def __init__(self, reporter: Reporter, total: int, stems: dict[str, str]) -> None:
        self._reporter = reporter
        self._stems = stems
        self._total = total
        self._cached = 0
        self._linked = 0
        self._next = 0

    def _idx(self) -> int:
        self._next += 1
        return self._next

    def on_populate_cache_start(self, operation: int, package_name: str) -> int:
        return self._idx()

    def on_populate_cache_complete(self, cache_entry: int) -> None:
        self._cached += 1
        self._reporter.step("downloading", self._cached, self._total)

    def on_link_start(self, operation: int, package_name: str) -> int:
        self._reporter.log(f"linking {self._stems.get(package_name, package_name)}")
        return self._idx()

    def on_link_complete(self, index: int) -> None:
        self._linked += 1
        self._reporter.step("installing", self._linked, self._total)


def local_archive_size(url: str) -> int | None:
    """The size of a ``file://`` package archive (a lock read from conda-lock.yml has none)."""
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return None
    try:
        return os.stat(unquote(parsed.path)).st_size
    except OSError:
        return None


#: rattler marks every directory it creates as a cache (CACHEDIR.TAG), prefixes too;
#: backup tools then skip the environment, and it is no part of any package.
CACHE_TAG = "CACHEDIR.TAG"


def remove_cache_tag(prefix: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (prefix / CACHE_TAG).unlink()


def install_lock(
    lock: Lock,
    platform: str,
    prefix: Path,
    cache_dir: Path,
    reporter: Reporter | None = None,
    *,
    only: set[str] | None = None,
    patched_prefix: str | None = None,
    client: rattler.Client | None = None,
    pip: PipIndex | None = None,
) -> Path:
    """Install the lock's ``platform`` packages at ``prefix``; returns ``prefix``.

    ``prefix`` must not exist yet. ``only`` limits the install to those package
    names (image layers are built for missing packages only); ``patched_prefix``
    is the path written into files instead of ``prefix`` (``/opt/conda`` in an
    image). ``client`` is the HTTP client downloads go through (the channel
    gate's, on a server). Raises :class:`InstallError` with rattler's explanation (for
    example a sha256 mismatch) and leaves nothing behind.
    """
    reporter = reporter or NullReporter()
    packages = [p for p in lock.records(platform) if only is None or p.name in only]
    if prefix.exists():
        raise InstallError(f"prefix {prefix} already exists")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    verify_local_archives(packages)
    staging = prefix.parent / f".staging-{prefix.name}-{uuid.uuid4().hex[:8]}"
    records = [to_repodata_record(p) for p in packages]
    with_pip = only is None and bool(lock.pip_records(platform))
    if with_pip and pip is None:
        raise InstallError("the lock has pip packages and no pip index is configured")
    reporter.step("installing", 0, len(records))
    reporter.log(f"installing {len(records)} packages for {platform}")
    try:
        check_packages(
            (PackageSource(f"{p.name}-{p.version}-{p.build}", p.url, p.sha256) for p in packages),
            cache_dir,
            client,
            reporter,
        )
    except InstallError as exc:
        refused = refused_hop(str(exc), "the lock's package URLs")
        if refused is not None:
            raise refused from None
        raise
    try:
        asyncio.run(
            rattler.install(
                records,
                target_prefix=staging,
                cache_dir=cache_dir,
                platform=rattler.Subdir(platform),
                execute_link_scripts=False,
                show_progress=False,
                # rattler declares every hook with an empty body; we override the ones we use.
                reporter=_RattlerProgress(  # type: ignore[abstract]
                    reporter,
                    len(records),
                    {p.name: f"{p.name}-{p.version}-{p.build}" for p in packages},
                ),
                alternative_target_prefix=patched_prefix or prefix,
                client=client,
            )
        )
        remove_cache_tag(staging)
        if with_pip:
            assert pip is not None
            # Deferred: only locks with pip packages need uv.
            from condastore_core.pip.install import install_pip_packages

            install_pip_packages(
                lock,
                platform,
                staging,
                pip,
                final_prefix=patched_prefix or prefix,
                reporter=reporter,
            )
        os.replace(staging, prefix)
    except Exception as exc:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
        if isinstance(exc, CondastoreError):  # the pip side's errors name their package
            raise
        refused = refused_hop(str(exc), "the lock's package URLs")
        if refused is not None:
            raise refused from None
        raise InstallError(f"installing {platform} packages failed: {exc}") from None
    return prefix


def install_gated(
    gate: ChannelGate,
    lock: Lock,
    platform: str,
    prefix: Path,
    cache_dir: Path,
    reporter: Reporter | None = None,
    **options: object,
) -> Path:
    """:func:`install_lock` downloading with ``gate``'s client (its proxy, mirrors and
    credentials), made in this process.

    What a child process runs: the gate pickles, rattler's client does not.
    """
    client = client_for(gate)
    return install_lock(
        lock,
        platform,
        prefix,
        cache_dir,
        reporter,
        client=client,
        **options,  # type: ignore[arg-type]
    )
