"""Channel names to URLs: ``conda-forge`` -> ``<alias>/conda-forge``, paths -> ``file://``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from condastore_core.errors import SpecError

DEFAULT_CHANNEL_ALIAS = "https://conda.anaconda.org"


def channel_url(
    channel: str, alias: str = DEFAULT_CHANNEL_ALIAS, custom: Mapping[str, str] | None = None
) -> str:
    """The canonical URL of a channel as written in a spec or on the command line.

    A name is under ``alias`` unless ``custom`` (conda's ``custom_channels``) gives
    its first segment a server of its own: ``{"internal": "https://c.example.com"}``
    makes ``internal/label/dev`` ``https://c.example.com/internal/label/dev``.
    """
    parsed = urlparse(channel)
    if parsed.scheme in ("http", "https", "file", "s3", "oci"):
        return channel.rstrip("/")
    if channel.startswith(("/", "./", "../", "~")):
        try:
            return Path(channel).expanduser().resolve().as_uri()
        except (RuntimeError, OSError, ValueError) as exc:  # "~nobody/...", bad bytes
            raise SpecError(f"invalid channel path {channel!r}: {exc}", field="channels") from None
    name = channel.strip("/")
    base = (custom or {}).get(name.split("/", 1)[0], alias)
    return f"{base.rstrip('/')}/{name}"
