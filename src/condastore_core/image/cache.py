"""The layer cache's interface: package layer key -> the blob holding that layer.

The blob store stays authoritative: an entry whose blob is gone is a miss.
Entries are added only after the layer's blob is committed (nixery's rule), so
a hit always points at real bytes. The service keeps it in the database
(``service.layer_cache``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

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
