"""Small helpers shared by the resource modules: query parameters and blob downloads."""

from __future__ import annotations

import falcon

from condastore_core.artifacts import FILE_NAMES, MEDIA_TYPES, ArtifactKind
from condastore_core.db.models import Artifact
from condastore_core.digests import Digest
from condastore_core.errors import InvalidRequest
from condastore_core.service.context import Context


def int_param(req: falcon.Request, name: str, default: int | None = None) -> int | None:
    value = req.get_param(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidRequest(
            f"query parameter '{name}' must be an integer, not {value!r}"
        ) from None


def send_artifact(ctx: Context, resp: falcon.Response, art: Artifact) -> None:
    """Stream an artifact's blob with its media type and a download file name."""
    kind = ArtifactKind(art.kind)
    resp.content_type = MEDIA_TYPES[kind]
    resp.downloadable_as = FILE_NAMES[kind]
    resp.set_header("Docker-Content-Digest", art.digest)
    resp.set_stream(ctx.store.open(Digest.parse(art.digest)), art.size)
