"""The image layer of a lock's pip packages: what installing the wheels adds to a prefix.

All pip packages of a platform share one layer, laid over the conda layers.
Its bytes depend on the wheels, the python they were installed for, the
install prefix, the platform and the compression: those make its cache key.
"""

from __future__ import annotations

from pathlib import Path

from condastore_core.hashing import content_hash
from condastore_core.image.tarball import Entry
from condastore_core.lock import Lock
from condastore_core.pip.index import PipIndex
from condastore_core.progress import Reporter

PIP_LAYER_SCHEME = 1


def pip_layer_key(lock: Lock, platform: str, prefix: str, compression: str) -> str:
    python = next((r for r in lock.records(platform) if r.name == "python"), None)
    return content_hash(
        "pip-layer",
        {
            "scheme": PIP_LAYER_SCHEME,
            "pip": [p.hashed_fields() for p in lock.pip_records(platform)],
            "python": python.content_id if python else None,
            "prefix": prefix,
            "platform": platform,
            "compression": compression,
        },
    )


def pip_layer_entries(
    lock: Lock,
    platform: str,
    staging: Path,
    prefix: str,
    index: PipIndex,
    reporter: Reporter | None = None,
) -> list[Entry]:
    """Install the pip packages into ``staging`` (conda packages in place) and list what
    they added, as layer entries under ``prefix``."""
    # Deferred: only images of locks with pip packages need uv.
    from condastore_core.pip.install import install_pip_packages

    before = _files(staging)
    install_pip_packages(lock, platform, staging, index, final_prefix=prefix, reporter=reporter)
    root = prefix.strip("/")
    return [
        Entry(f"{root}/{path.relative_to(staging).as_posix()}", source=path)
        for path in sorted(_files(staging) - before)
        if "__pycache__" not in path.parts
    ]


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_symlink() or p.is_file()}
