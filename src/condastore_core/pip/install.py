"""Install a lock's pip packages into a prefix, after its conda packages.

The wheels are fetched here, from the lock's URLs only, each through the
channel gate (every redirect too) and checked against the lock's sha256
before anything uses it; verified wheels are kept by digest and checked again
when reused. uv then installs exactly those files with the prefix's own
interpreter (``--python <prefix>/bin/python``), offline, without dependencies,
requiring the same hashes: nothing else is contacted at install time.

A prefix installed under one path and used under another (a staging directory
renamed into place, an image's ``/opt/conda``) gets the final path written into
the scripts uv generated.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

from condastore_core import layout
from condastore_core.channels.fetch import GatedSession
from condastore_core.channels.gate import ChannelRefused
from condastore_core.errors import InstallError
from condastore_core.lock import Lock
from condastore_core.pip.index import PipIndex
from condastore_core.pip.records import PipPackage
from condastore_core.pip.uv import uv_environment, uv_executable
from condastore_core.progress import NullReporter, Reporter

#: The largest wheel fetched (bytes); a larger answer is refused, not stored.
MAX_WHEEL_BYTES = 2 << 30


def install_pip_packages(
    lock: Lock,
    platform: str,
    prefix: Path,
    index: PipIndex,
    *,
    final_prefix: str | Path | None = None,
    reporter: Reporter | None = None,
) -> list[PipPackage]:
    """Install the lock's ``platform`` pip packages into ``prefix``; returns them.

    ``final_prefix`` is where the prefix will be used (default: ``prefix``).
    Raises :class:`InstallError` naming the package (a digest mismatch, a source
    archive, no python in the prefix) or :class:`ChannelRefused`.
    """
    packages = list(lock.pip_records(platform))
    if not packages:
        return []
    reporter = reporter or NullReporter()
    python = prefix / "bin" / "python"
    if not python.exists():
        raise InstallError(
            f"pip packages ({', '.join(p.name for p in packages)}) need python in the "
            "environment; the conda packages installed none"
        )
    reporter.log(f"installing {len(packages)} pip packages with the environment's python")
    with tempfile.TemporaryDirectory(prefix="condastore-wheels-") as tmp:
        links = Path(tmp) / "wheels"
        links.mkdir()
        for i, pkg in enumerate(packages, 1):
            reporter.step("fetching pip packages", i, len(packages))
            wheel = fetch_wheel(pkg, index)
            _link(wheel, links / pkg.file_name)
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(
            "".join(f"{p.name}=={p.version} --hash=sha256:{p.sha256}\n" for p in packages)
        )
        command = [
            uv_executable(),
            "pip",
            "install",
            "--python",
            str(python),
            "--no-deps",
            "--offline",
            "--no-index",
            "--find-links",
            str(links),
            "--require-hashes",
            "--no-config",
            "--no-cache",
            "--link-mode",
            "copy",
            "--color",
            "never",
            "--quiet",
            "-r",
            str(requirements),
        ]
        with uv_environment(index.gate) as (env, _):
            result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if result.returncode != 0:
        raise InstallError(
            f"installing the pip packages {', '.join(p.name for p in packages)} failed: "
            f"{result.stderr.strip()}"
        )
    final = str(final_prefix or prefix)
    if final != str(prefix):
        relocate_scripts(prefix, str(prefix), final)
    return packages


def fetch_wheel(pkg: PipPackage, index: PipIndex) -> Path:
    """The verified wheel of ``pkg``: from the cache when its bytes still match, else fetched."""
    if not pkg.file_name.endswith(".whl"):
        raise InstallError(
            f"pip package {pkg.name} {pkg.version}: {pkg.file_name} is not a wheel; "
            "source archives are not built"
        )
    cache = index.cache_dir or Path(tempfile.gettempdir()) / "condastore-pip"
    path = layout.pip_wheel_path(cache, pkg.sha256, pkg.file_name)
    if path.is_file():
        if _sha256(path) == pkg.sha256:
            return path
        path.unlink()  # a damaged cache entry is fetched again, never used
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{uuid.uuid4().hex}.part"
    try:
        digest = _download(pkg, index, staging)
        if digest != pkg.sha256:
            raise InstallError(
                f"pip package {pkg.name} {pkg.version}: sha256 mismatch for {pkg.url}: "
                f"the lock says {pkg.sha256}, the download is {digest}"
            )
        os.replace(staging, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
    return path


def _download(pkg: PipPackage, index: PipIndex, target: Path) -> str:
    """Write the wheel at ``pkg.url`` to ``target``; returns its sha256."""
    digest = hashlib.sha256()
    size = 0
    shown = f"the wheel URL of pip package {pkg.name!r}"
    index.gate.check_url(pkg.url, shown=shown)
    parts = urlsplit(pkg.url)
    with target.open("wb") as out:
        if parts.scheme == "file":
            source = Path(unquote(parts.path))
            try:
                with source.open("rb") as f:
                    while chunk := f.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
            except OSError as exc:
                raise InstallError(f"pip package {pkg.name}: cannot read {source}") from exc
            return digest.hexdigest()
        try:
            with GatedSession(index.gate) as session:
                response = session.get(
                    pkg.url, headers=index.headers(pkg.url), stream=True, timeout=60
                )
                if response.status_code != 200:
                    raise InstallError(
                        f"pip package {pkg.name} {pkg.version}: {pkg.url} answered "
                        f"HTTP {response.status_code}"
                    )
                for chunk in response.iter_content(1 << 20):
                    size += len(chunk)
                    if size > MAX_WHEEL_BYTES:
                        raise InstallError(
                            f"pip package {pkg.name}: {pkg.url} is larger than "
                            f"{MAX_WHEEL_BYTES} bytes"
                        )
                    digest.update(chunk)
                    out.write(chunk)
        except ChannelRefused:
            raise
        except InstallError:
            raise
        except Exception as exc:  # requests' connection and protocol errors
            raise InstallError(
                f"pip package {pkg.name} {pkg.version}: cannot fetch {pkg.url}: "
                f"{type(exc).__name__}"
            ) from None
    return digest.hexdigest()


def relocate_scripts(prefix: Path, old: str, new: str) -> None:
    """Write ``new`` for ``old`` in the scripts of ``prefix/bin`` that name ``old``.

    uv writes the interpreter's path into the launchers it generates; conda's
    own files already hold the final prefix, so only uv's scripts change.
    """
    needle, replacement = old.encode(), new.encode()
    bin_dir = prefix / "bin"
    if not bin_dir.is_dir():
        return
    for path in sorted(bin_dir.iterdir()):
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if needle not in data[:4096]:
            continue
        mode = path.stat().st_mode
        path.write_bytes(data.replace(needle, replacement))
        path.chmod(mode)


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def installed_files(prefix: Path) -> list[Path]:
    """Files the pip packages installed into ``prefix`` (relative), read from the RECORD of
    each distribution uv installed; what a copy of the prefix must carry besides conda's."""
    found: set[Path] = set()
    for installer in sorted(prefix.glob("lib/python*/site-packages/*.dist-info/INSTALLER")):
        if installer.read_text().strip() != "uv":
            continue
        site = installer.parent.parent
        for line in (installer.parent / "RECORD").read_text().splitlines():
            name = line.rsplit(",", 2)[0] if line.count(",") >= 2 else line
            if not name:
                continue
            path = Path(os.path.normpath(site / name))
            if path.is_relative_to(prefix) and (path.is_file() or path.is_symlink()):
                found.add(path.relative_to(prefix))
    return sorted(found)


def copy_installed(source: Path, target: Path, target_prefix: str) -> None:
    """Copy the pip packages' files of ``source`` into ``target`` (conda's files already there),
    their scripts naming ``target_prefix``."""
    for rel in installed_files(source):
        destination = target / rel
        if destination.exists():
            continue  # a conda package's file, linked for the target already
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, destination, follow_symlinks=False)
    relocate_scripts(target, str(source), target_prefix)
