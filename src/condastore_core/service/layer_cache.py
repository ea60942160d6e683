"""The image layer cache in the database, and how many images use each layer.

Every process of an installation shares it: a layer one worker built is a hit
for a request on any machine. The blob store stays authoritative (an entry
whose blob has gone, say to garbage collection, is a miss).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from condastore_core.db.models import ImageLayer, RegistryBlob
from condastore_core.digests import Digest
from condastore_core.image.cache import LayerRecord
from condastore_core.service.context import Context


class DbLayerCache:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def get(self, key: str) -> LayerRecord | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, LayerRecord]:
        keys = list(keys)
        if not keys:
            return {}
        with self.ctx.sessions() as session:
            rows = session.scalars(select(ImageLayer).where(ImageLayer.key.in_(keys))).all()
            records = {
                row.key: LayerRecord(
                    row.digest, row.diff_id, row.size, row.media_type, tuple(row.packages)
                )
                for row in rows
            }
        return {
            key: record
            for key, record in records.items()
            if self.ctx.store.exists(Digest.parse(record.digest))
        }

    def put(self, key: str, record: LayerRecord) -> None:
        with self.ctx.sessions.begin() as session:
            row = session.get(ImageLayer, key)
            if row is None:
                try:
                    with session.begin_nested():
                        session.add(_row(key, record))
                except IntegrityError:
                    pass  # another worker built the same layer: the same bytes
                return
            # An entry whose blob was collected, now built again.
            row.digest, row.diff_id, row.size = record.digest, record.diff_id, record.size
            row.media_type, row.packages = record.media_type, list(record.packages)

    def popularity(self, digests: Sequence[str]) -> Mapping[str, int]:
        """How many repositories (images) link each layer blob."""
        with self.ctx.sessions() as session:
            rows = session.execute(
                select(RegistryBlob.digest, func.count())
                .where(RegistryBlob.digest.in_(list(digests)))
                .group_by(RegistryBlob.digest)
            ).all()
        return {digest: count for digest, count in rows}


def _row(key: str, record: LayerRecord) -> ImageLayer:
    return ImageLayer(
        key=key,
        digest=record.digest,
        diff_id=record.diff_id,
        size=record.size,
        media_type=record.media_type,
        packages=list(record.packages),
    )
