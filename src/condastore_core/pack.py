"""conda-pack tarballs: a relocatable copy of a prefix, unpacked with ``bin/conda-unpack``.

The same lock gives the same tarball bytes on any machine. conda-pack alone
would write the build machine's prefix path (into ``bin/conda-unpack`` and
``sha256_in_prefix``), the file owners, the clock (member and gzip header
mtimes) and the order the filesystem lists files in. So the prefix's packages
are installed again, from the package cache, at one canonical path; conda-pack
packs that copy as an uncompressed tar, and the tar is rewritten: members
sorted, owned by root, dated by the lock (the newest package's build time),
gzip header mtime 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from condastore_core.channels.gate import ChannelGate
from condastore_core.channels.proxy import client_for, refused_hop
from condastore_core.errors import InstallError, PackError
from condastore_core.install import local_archive_size, remove_cache_tag
from condastore_core.package_paths import PackageSource, check_packages

#: Where a packed environment believes it was installed; ``conda-unpack`` replaces it.
CANONICAL_PREFIX = "/opt/condastore-env"


def pack_prefix(
    prefix: Path,
    output: Path,
    *,
    compress_level: int = 4,
    threads: int = 1,
    client: Any = None,
) -> Path:
    """Write a reproducible ``.tar.gz`` of ``prefix`` at ``output`` atomically; returns ``output``.

    ``threads`` is kept for callers; the gzip stream is written by one thread
    so that its bytes never depend on how it was split.
    ``client`` is the HTTP client a package missing from the cache is fetched
    with again (the channel gate's, on a server).
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pack-", dir=output.parent) as tmp:
        work = Path(tmp)
        canonical = _install_canonical(prefix, work / "prefix", client)
        raw = work / "raw.tar"
        epoch = source_date_epoch(canonical)
        _conda_pack(canonical, raw, epoch)
        packed = work / "environment.tar.gz"
        _normalise(raw, packed, epoch, compress_level)
        os.replace(packed, output)
    return output


def pack_gated(gate: ChannelGate, prefix: Path, output: Path, **options: Any) -> Path:
    """:func:`pack_prefix` fetching a package missing from the cache with ``gate``'s client
    (its proxy, mirrors and credentials), made in this process.

    What a child process runs: the gate pickles, rattler's client does not.
    """
    seen: set[tuple[str, str, int | None]] = set()
    for meta in sorted((prefix / "conda-meta").glob("*.json")):
        with contextlib.suppress(ValueError, OSError):
            url = json.loads(meta.read_text()).get("url") or ""
            if url:
                gate.check_url(url, shown=f"package URL {url!r}", _hosts=seen)
    return pack_prefix(prefix, output, client=client_for(gate), **options)


def source_date_epoch(prefix: Path) -> int:
    """The time an environment's files are dated: its newest package's build time (0 if none)."""
    newest = 0
    for path in (prefix / "conda-meta").glob("*.json"):
        with contextlib.suppress(ValueError, TypeError, OSError):
            newest = max(newest, int(json.loads(path.read_text()).get("timestamp") or 0))
    return newest // 1000 if newest > 10**11 else newest  # conda records ms, old packages s


def _install_canonical(prefix: Path, target: Path, client: Any) -> Path:
    """The packages of ``prefix`` linked again at ``target``, patched for ``CANONICAL_PREFIX``."""
    import rattler

    metas = sorted((prefix / "conda-meta").glob("*.json"))
    if not metas:
        raise PackError(f"{prefix} is not a conda environment")
    records = [rattler.PrefixRecord.from_path(path) for path in metas]
    extracted = json.loads(metas[0].read_text()).get("extracted_package_dir")
    cache_dir = Path(extracted).parent if extracted else prefix.parent / "pkgs"
    sources = [
        PackageSource(
            f"{r.name.normalized}-{r.version}-{r.build}",
            r.url,
            r.sha256.hex() if r.sha256 else None,
        )
        for r in records
    ]
    try:
        check_packages(sources, cache_dir, client)
        asyncio.run(
            rattler.install(
                records,  # type: ignore[arg-type]
                target_prefix=target,
                cache_dir=cache_dir,
                execute_link_scripts=False,
                show_progress=False,
                alternative_target_prefix=CANONICAL_PREFIX,
                client=client,
            )
        )
    except Exception as exc:
        refused = refused_hop(str(exc), "the environment's package URLs")
        if refused is not None:
            raise refused from None
        if isinstance(exc, InstallError):
            raise  # a package refused before linking, said as the install says it
        raise PackError(f"cannot link {prefix}'s packages again to pack them: {exc}") from None
    remove_cache_tag(target)
    # pip packages are no conda package: their installed files are carried over as they are.
    from condastore_core.pip.install import copy_installed

    copy_installed(prefix, target, CANONICAL_PREFIX)
    for path in (target / "conda-meta").glob("*.json"):
        record = json.loads(path.read_text())
        if record.get("size") is None:  # a lock read from conda-lock.yml carries no size
            record["size"] = local_archive_size(record.get("url", ""))
            path.write_text(json.dumps(record, indent=2))
    return target


def _conda_pack(prefix: Path, output: Path, mtime: int) -> None:
    """conda-pack's packer over ``prefix``, told the environment lives at ``CANONICAL_PREFIX``."""
    # Deferred: a build without a tarball (``--no-tarball``) never pays for conda-pack.
    from conda_pack.core import CondaEnv, CondaPackException, Packer
    from conda_pack.formats import archive

    try:
        env = CondaEnv.from_prefix(str(prefix), ignore_missing_files=False)
        lost = _clobbered_sources(prefix)
        with open(output, "wb") as f, archive(f, str(output), "", "tar", mtime=mtime) as arc:
            # conda-unpack replaces the prefix the packer is given: the canonical one.
            packer = Packer(CANONICAL_PREFIX, arc, None, None)
            for file in env.files:
                if file.source not in lost:
                    packer.add(file)
            packer.finish()
    except CondaPackException as exc:
        raise PackError(f"conda-pack failed for {prefix}: {exc}") from None


def _clobbered_sources(prefix: Path) -> set[str]:
    """Package-cache files that lost a clobber: the prefix keeps another package's file there."""
    lost = set()
    for path in (prefix / "conda-meta").glob("*.json"):
        record = json.loads(path.read_text())
        source = record.get("extracted_package_dir") or ""
        for entry in record.get("paths_data", {}).get("paths", []):
            if entry.get("original_path"):
                lost.add(os.path.join(source, entry["original_path"]))
    return lost


def _normalise(raw: Path, output: Path, mtime: int, compress_level: int) -> None:
    """Rewrite conda-pack's tar: sorted members, root-owned, dated ``mtime``, gzip mtime 0."""
    with (
        tarfile.open(raw) as source,
        open(output, "wb") as sink,
        gzip.GzipFile(
            filename="", mode="wb", fileobj=sink, mtime=0, compresslevel=compress_level
        ) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        members: dict[str, tarfile.TarInfo] = {}
        for member in source.getmembers():
            members[member.name] = member  # a later duplicate wins, as on extraction
        # Empty directories are no package's: rattler leaves some behind (under
        # ``__clobbers__``) or not, depending on the order its threads link in.
        parents = {n.rsplit("/", 1)[0] for n in members if "/" in n}
        for name in sorted(members):
            member = members[name]
            if member.isdir() and name not in parents:
                continue
            info = tarfile.TarInfo(name)
            info.mode = member.mode
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if member.isdir():
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif member.issym():
                info.type = tarfile.SYMTYPE
                info.linkname = member.linkname
                tar.addfile(info)
            else:  # files, and hard links written out as files: order no longer matters
                target = source.getmember(member.linkname) if member.islnk() else member
                info.size = target.size
                tar.addfile(info, source.extractfile(member))
