"""Channel names to URLs: ``conda-forge`` -> ``<alias>/conda-forge``, paths -> ``file://``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from condastore_core.errors import SpecError

DEFAULT_CHANNEL_ALIAS = "https://conda.anaconda.org"


def channel_url(channel: str, alias: str = DEFAULT_CHANNEL_ALIAS) -> str:
    """The URL rattler fetches for a channel as written in a spec or on the command line."""
    parsed = urlparse(channel)
    if parsed.scheme in ("http", "https", "file", "s3", "oci"):
        return channel.rstrip("/")
    if channel.startswith(("/", "./", "../", "~")):
        try:
            return Path(channel).expanduser().resolve().as_uri()
        except (RuntimeError, OSError, ValueError) as exc:  # "~nobody/...", bad bytes
            raise SpecError(f"invalid channel path {channel!r}: {exc}", field="channels") from None
    return f"{alias.rstrip('/')}/{channel.strip('/')}"
