"""The channel gate settings of the test installations.

Tests build channels in pytest's temporary directories, read the conda-forge
sample channel from disk and serve channels and registries on loopback ports:
a server would refuse all three unless an administrator allowed them, so the
test installations allow them, as an administrator would, through settings.
The gate's own tests configure narrower settings of their own.

Their images stand on ``scratch``: the default base lives on Docker Hub, which
tests cannot reach; the tests of base images serve one from a local registry.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def sample_channel_root() -> Path:
    value = os.environ.get("CONDASTORE_SAMPLE_CHANNEL")
    return Path(value) if value else (REPO_ROOT / "../shared/conda-forge-sample").resolve()


def gate_settings() -> dict[str, tuple[str, ...] | str]:
    """Settings overrides allowing the temporary directories, the sample channel and loopback."""
    return {
        "allowed_channel_dirs": (tempfile.gettempdir(), str(sample_channel_root())),
        "allowed_networks": ("127.0.0.0/8", "::1/128"),
        "image_base": "scratch",
    }


def gate_env() -> dict[str, str]:
    """The same, as ``CONDASTORE_*`` variables for server and worker processes."""
    return {
        f"CONDASTORE_{key.upper()}": value if isinstance(value, str) else ",".join(value)
        for key, value in gate_settings().items()
    }
