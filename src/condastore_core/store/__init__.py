"""The content-addressed blob store and the factory that picks its backend."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from condastore_core.errors import ConfigError
from condastore_core.store.base import BlobInfo, BlobStore, BlobWriter, put, read_all
from condastore_core.store.local import LocalBlobStore

__all__ = ["BlobInfo", "BlobStore", "BlobWriter", "LocalBlobStore", "open_store", "put", "read_all"]


def open_store(url: str, **options: object) -> BlobStore:
    """Build the store a URL names: a path or ``file://`` URL, or ``s3://bucket/prefix``."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):  # S3 options do not apply to a directory
        return LocalBlobStore(Path(parsed.path if parsed.scheme else url))
    if parsed.scheme == "s3":
        from condastore_core.store.s3 import S3BlobStore  # boto3 is only loaded when used

        return S3BlobStore.from_url(url, **options)  # type: ignore[arg-type]
    raise ConfigError(f"unsupported blob store URL {url!r}: use a path, file:// or s3://")
