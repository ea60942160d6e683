"""A ``python`` conda package built from the machine's own CPython, for pip tests.

The sample channel has no interpreter, so the tests package the one running
them: the interpreter binary, its standard library (without the test suite,
tkinter, idle and other large optional parts, and without site-packages) and
libpython when it is shared. The binary's run path is pointed at the package's
own ``lib`` (``$ORIGIN/../lib``), so the interpreter runs from any prefix, a
chroot included. The archive is a real ``.conda`` with ``info/index.json`` and
``info/paths.json``, indexed by py-rattler like every test channel.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

import zstandard

from tests.support.packages import ARCHIVE_MTIME, _tar

#: Parts of the standard library the tests never need (and most of its size).
SKIPPED_DIRS = {
    "site-packages",
    "test",
    "tests",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "pydoc_data",
    "__pycache__",
}
SKIPPED_PREFIXES = ("config-", "_test", "xxlimited", "_ctypes_test", "_xxtest")


def python_version() -> str:
    return platform.python_version()


def _stdlib_files(stdlib: Path) -> dict[str, Path]:
    files = {}
    for path in sorted(stdlib.rglob("*")):
        rel = path.relative_to(stdlib)
        if any(part in SKIPPED_DIRS or part.startswith(SKIPPED_PREFIXES) for part in rel.parts):
            continue
        if path.is_file() and not path.is_symlink():
            files[rel.as_posix()] = path
    return files


def _relocatable_binary(data: bytes, libdir: str) -> bytes:
    """The binary with its absolute run path to ``libdir`` turned into ``$ORIGIN/../lib``.

    The new path is shorter; it is written in place, padded with NULs, so no
    offset in the ELF file moves.
    """
    old = libdir.encode() + b"\0"
    if old not in data:
        return data
    new = b"$ORIGIN/../lib\0"
    return data.replace(old, new + b"\0" * (len(old) - len(new)))


def build_python_package(channel_root: Path) -> str:
    """Write ``python-<version>-0_test.conda`` into ``channel_root`` and index it; its URL."""
    from rattler.index import index_fs

    from condastore_core.solve import native_platform

    base = Path(sys.base_prefix)
    version = python_version()
    short = f"{sys.version_info.major}.{sys.version_info.minor}"
    subdir = native_platform()
    libdir = sysconfig.get_config_var("LIBDIR") or str(base / "lib")
    payload: dict[str, bytes] = {}
    binary = Path(sys.base_prefix) / "bin" / f"python{short}"
    exe = _relocatable_binary(binary.resolve().read_bytes(), libdir)
    for name in (f"python{short}", "python3", "python"):
        payload[f"bin/{name}"] = exe
    ldlibrary = sysconfig.get_config_var("LDLIBRARY") or ""
    if sysconfig.get_config_var("Py_ENABLE_SHARED") and ldlibrary:
        soname = sysconfig.get_config_var("INSTSONAME") or ldlibrary
        library = Path(libdir) / soname
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / soname
            shutil.copyfile(library, copy)
            if shutil.which("strip"):
                subprocess.run(["strip", "--strip-unneeded", str(copy)], check=False)
            payload[f"lib/{soname}"] = copy.read_bytes()
    stdlib = base / "lib" / f"python{short}"
    for rel, path in _stdlib_files(stdlib).items():
        payload[f"lib/python{short}/{rel}"] = path.read_bytes()
    payload[f"lib/python{short}/site-packages/README.txt"] = b"site-packages\n"

    modes = {path: 0o755 for path in payload if path.startswith("bin/") or path.endswith(".so")} | {
        path: 0o755 for path in payload if ".so." in path
    }
    paths = [
        {
            "_path": path,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(data).hexdigest(),
            "size_in_bytes": len(data),
        }
        for path, data in sorted(payload.items())
    ]
    os_name, _, arch = subdir.partition("-")
    index = {
        "name": "python",
        "version": version,
        "build": "0_test",
        "build_number": 0,
        "depends": [],
        "subdir": subdir,
        "platform": os_name,
        "arch": arch,
        "license": "PSF-2.0",
        "timestamp": ARCHIVE_MTIME * 1000,
    }
    info = {
        "info/index.json": json.dumps(index, indent=2, sort_keys=True).encode(),
        "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}, indent=2).encode(),
        "info/files": "".join(f"{p}\n" for p in sorted(payload)).encode(),
    }
    stem = f"python-{version}-0_test"
    target_dir = channel_root / subdir
    target_dir.mkdir(parents=True, exist_ok=True)
    cctx = zstandard.ZstdCompressor(level=1, threads=-1)
    with zipfile.ZipFile(target_dir / f"{stem}.conda", "w", compression=zipfile.ZIP_STORED) as zf:
        members = [
            ("metadata.json", json.dumps({"conda_pkg_format_version": 2}).encode()),
            (f"info-{stem}.tar.zst", cctx.compress(_tar(info))),
            (f"pkg-{stem}.tar.zst", cctx.compress(_tar(payload, modes))),
        ]
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name, date_time=(2023, 11, 14, 22, 13, 20)), data)
    (channel_root / "noarch").mkdir(exist_ok=True)
    asyncio.run(index_fs(channel_root))
    return channel_root.resolve().as_uri()
