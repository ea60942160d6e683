"""conda-store's error shape, ``{"status": "error", "message": ...}``, on its routes only.

The app's own handlers (``condastore_web/api/errors.py``) still decide the
status of every error; this wraps them and rewrites the body for requests to
conda-store's paths, so one table of statuses serves both APIs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from condastore_core.errors import CondastoreError
from condastore_web.api import errors

#: conda-store's resource nouns under /api/v1 (ours are plural, so they never collide).
NOUNS = (
    "permission",
    "usage",
    "token",
    "namespace",
    "environment",
    "specification",
    "build",
    "channel",
    "package",
    "setting",
)
PREFIXES = tuple(f"/api/v1/{noun}" for noun in NOUNS)


def is_compat_path(path: str) -> bool:
    path = path.rstrip("/")
    return any(path == p or path.startswith(p + "/") for p in PREFIXES)


def _reshape(req: falcon.Request, resp: falcon.Response) -> None:
    if not is_compat_path(req.path):
        return
    body = resp.media if isinstance(resp.media, dict) else {}
    error = body.get("error")
    message = error.get("message", "error") if isinstance(error, dict) else "error"
    resp.media = {"status": "error", "message": message}


def _wrap(handler: Callable[..., None]) -> Callable[..., None]:
    def handle(req: falcon.Request, resp: falcon.Response, exc: Any, params: Any) -> None:
        handler(req, resp, exc, params)
        _reshape(req, resp)

    return handle


def _serialize(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    errors.serialize_http_error(req, resp, exc)
    _reshape(req, resp)


def register(app: falcon.App) -> None:
    app.add_error_handler(Exception, _wrap(errors.handle_unexpected))
    app.add_error_handler(CondastoreError, _wrap(errors.handle_core_error))
    app.set_error_serializer(_serialize)
