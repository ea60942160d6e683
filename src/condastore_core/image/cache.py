"""The layer cache: package layer key -> the blob holding that layer.

It wraps the blob store, which stays authoritative: an entry whose blob is gone
is a miss, a broken entry is a miss. Entries are added only after the layer's
blob is committed (nixery's rule), so a hit always points at real bytes.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from condastore_core import layout
from condastore_core.digests import Digest
from condastore_core.errors import CondastoreError
from condastore_core.store import BlobStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerRecord:
    digest: str  # of the compressed layer blob
    diff_id: str  # sha256 of the uncompressed tar
    size: int
    media_type: str
    packages: tuple[str, ...]


class LayerCache(Protocol):
    def get(self, key: str) -> LayerRecord | None: ...

    def get_many(self, keys: Iterable[str]) -> dict[str, LayerRecord]:
        """The hits among ``keys`` (misses are left out)."""
        ...

    def put(self, key: str, record: LayerRecord) -> None: ...


class FileLayerCache:
    """Entries as small JSON files in the data directory (embedded default)."""

    def __init__(self, data_dir: Path, store: BlobStore) -> None:
        self.data_dir = data_dir
        self.store = store
        self.errors = 0

    def get(self, key: str) -> LayerRecord | None:
        path = layout.layer_cache_path(self.data_dir, key)
        try:
            data = json.loads(path.read_text())
            record = LayerRecord(**{**data, "packages": tuple(data["packages"])})
            if self.store.exists(Digest.parse(record.digest)):
                return record
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, CondastoreError) as exc:
            self.errors += 1
            log.warning("layer cache entry %s unreadable, treated as a miss: %s", key, exc)
        return None

    def get_many(self, keys: Iterable[str]) -> dict[str, LayerRecord]:
        hits = {key: self.get(key) for key in keys}
        return {key: record for key, record in hits.items() if record is not None}

    def put(self, key: str, record: LayerRecord) -> None:
        path = layout.layer_cache_path(self.data_dir, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".entry-")
            with os.fdopen(fd, "w") as f:
                json.dump(asdict(record), f, sort_keys=True)
            os.replace(tmp, path)
        except OSError as exc:
            self.errors += 1
            log.warning("could not record layer cache entry %s: %s", key, exc)
