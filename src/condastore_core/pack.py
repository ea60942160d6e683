"""conda-pack tarballs: a relocatable copy of a prefix, unpacked with ``bin/conda-unpack``."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from condastore_core.errors import PackError


def pack_prefix(prefix: Path, output: Path, *, compress_level: int = 4, threads: int = 1) -> Path:
    """Write a ``.tar.gz`` of ``prefix`` at ``output`` atomically; returns ``output``."""
    # Deferred: a build without a tarball (``--no-tarball``) never pays for conda-pack.
    import conda_pack

    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".pack-", suffix=".tar.gz", dir=output.parent)
    os.close(fd)
    os.unlink(tmp)  # conda-pack refuses to overwrite an existing file
    try:
        conda_pack.pack(
            prefix=str(prefix),
            output=tmp,
            format="tar.gz",
            compress_level=compress_level,
            n_threads=threads,
            ignore_missing_files=False,
        )
        os.replace(tmp, output)
    except conda_pack.CondaPackException as exc:
        raise PackError(f"conda-pack failed for {prefix}: {exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return output
