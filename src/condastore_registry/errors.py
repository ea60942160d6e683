"""The distribution spec's error codes, each declared once with its HTTP status.

``INSUFFICIENT_STORAGE`` is ours: the spec has no code for a full disk, and
clients show any code's message; its status, 507, tells them to retry later.
"""

from __future__ import annotations

import falcon

from condastore_core.channels import ChannelRefused
from condastore_core.errors import (
    BlobNotFound,
    CondastoreError,
    DigestMismatch,
    InsufficientStorage,
    InvalidDigest,
    TooManyRequests,
)
from condastore_core.service.registry import RegistryError

STATUS = {
    "BLOB_UNKNOWN": 404,
    "BLOB_UPLOAD_INVALID": 400,
    "BLOB_UPLOAD_UNKNOWN": 404,
    "DIGEST_INVALID": 400,
    "MANIFEST_BLOB_UNKNOWN": 400,
    "MANIFEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "NAME_UNKNOWN": 404,
    "SIZE_INVALID": 400,
    "UNAUTHORIZED": 401,
    "DENIED": 403,
    "UNSUPPORTED": 405,
    "TOOMANYREQUESTS": 429,
    "UNAVAILABLE": 503,
    "UNKNOWN": 500,
    "INSUFFICIENT_STORAGE": 507,
}


def as_registry_error(exc: CondastoreError) -> RegistryError:
    if isinstance(exc, RegistryError):
        return exc
    if isinstance(exc, InvalidDigest | DigestMismatch):
        return RegistryError("DIGEST_INVALID", exc.message)
    if isinstance(exc, ChannelRefused):
        return RegistryError("DENIED", exc.message)
    if isinstance(exc, BlobNotFound):
        return RegistryError("BLOB_UNKNOWN", exc.message)
    if isinstance(exc, TooManyRequests):
        return RegistryError("TOOMANYREQUESTS", exc.message, detail=exc.detail)
    if isinstance(exc, InsufficientStorage):
        return RegistryError("INSUFFICIENT_STORAGE", exc.message)
    return RegistryError("UNSUPPORTED", exc.message)


def send_error(resp: falcon.Response, exc: RegistryError) -> None:
    status = STATUS.get(exc.code, 500)
    detail = exc.detail if isinstance(exc.detail, dict) else {}
    if exc.code == "BLOB_UPLOAD_INVALID" and detail.get("range_not_satisfiable"):
        status = 416
        resp.set_header("Range", f"0-{max(detail.get('size', 0) - 1, 0)}")
    if "retry_after" in detail:
        resp.set_header("Retry-After", str(detail["retry_after"]))
    resp.status = status
    error: dict = {"code": exc.code, "message": exc.message}
    if exc.detail is not None:
        error["detail"] = exc.detail
    resp.media = {"errors": [error]}
