"""One JSON error shape for every API answer: ``{"error": {"status", "code", "message"}}``.

Domain errors from the core are translated here and nowhere else.
"""

from __future__ import annotations

import logging
from typing import Any

import falcon

from condastore_core.auth.oidc import ProviderError
from condastore_core.auth.rbac import Forbidden, Unauthenticated
from condastore_core.bounded import DocumentRefused, DocumentTooLarge
from condastore_core.channels import ChannelRefused
from condastore_core.diskspace import is_out_of_space, out_of_space_error
from condastore_core.errors import (
    BuildCrashed,
    CondastoreError,
    Conflict,
    InsufficientStorage,
    InvalidRequest,
    LockError,
    NotFound,
    PhaseTimeout,
    SolveError,
    SpecError,
    TooManyRequests,
)
from condastore_core.policy import PolicyViolation

logger = logging.getLogger(__name__)

#: Status of each family of core errors; the first match wins.
STATUS_BY_ERROR: list[tuple[type[CondastoreError], int]] = [
    (Unauthenticated, 401),
    (Forbidden, 403),
    (TooManyRequests, 429),
    (PolicyViolation, 400),
    (ChannelRefused, 403),
    (NotFound, 404),
    (Conflict, 409),
    (DocumentTooLarge, 413),
    (DocumentRefused, 400),
    (SpecError, 400),
    (LockError, 400),
    (InvalidRequest, 400),
    (SolveError, 422),
    (BuildCrashed, 422),  # what was sent made the work crash or exhaust its memory
    (PhaseTimeout, 504),
    (InsufficientStorage, 507),
    (ProviderError, 502),
]


def status_of(exc: CondastoreError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(status: int, code: str, message: str, detail: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"status": status, "code": code, "message": message}
    if detail is not None:
        error["detail"] = detail
    return {"error": error}


def _set_error(resp: falcon.Response, status: int, code: str, message: str, detail: Any) -> None:
    resp.status = status
    resp.media = error_body(status, code, message, detail)


def _is_page(req) -> bool:  # type: ignore[no-untyped-def]
    return req.path.startswith("/ui")


def _page_error(req, resp, status: int, title: str, message: str) -> None:  # type: ignore[no-untyped-def]
    from condastore_web.ui.render import render_error  # pages render errors as pages

    render_error(req, resp, status, title, message)


def handle_core_error(req, resp, exc: CondastoreError, params) -> None:  # type: ignore[no-untyped-def]
    status = status_of(exc)
    if _is_page(req):
        _page_error(req, resp, status, exc.code.replace("_", " ").capitalize(), exc.message)
        return
    if status == 401:
        resp.set_header("WWW-Authenticate", 'Bearer realm="condastore"')
    if isinstance(exc, TooManyRequests):
        resp.set_header("Retry-After", str(exc.retry_after))
    _set_error(resp, status, exc.code, exc.message, exc.detail)


def handle_unexpected(req, resp, exc: Exception, params) -> None:  # type: ignore[no-untyped-def]
    if isinstance(exc, falcon.HTTPError):
        raise exc  # falcon's own errors go through the serializer below
    if is_out_of_space(exc):  # a full disk is the operator's to fix, not a bug
        logger.warning("out of storage space on %s %s: %s", req.method, req.path, exc)
        handle_core_error(req, resp, out_of_space_error(exc), params)
        return
    logger.exception("unhandled error on %s %s", req.method, req.path)
    if _is_page(req):
        _page_error(
            req,
            resp,
            500,
            "Something went wrong",
            "The server could not show this page; its log has the details.",
        )
        return
    _set_error(resp, 500, "INTERNAL", "internal server error; the server log has the details", None)


def serialize_http_error(req, resp, exc: falcon.HTTPError) -> None:  # type: ignore[no-untyped-def]
    """Falcon's own errors (unknown route, wrong method, body too large) in our shape."""
    status = exc.status_code
    title = (exc.title or "error").removeprefix(f"{status} ")  # "404 Not Found" -> "Not Found"
    code = getattr(exc, "code", None) or title.upper().replace(" ", "_")
    message = exc.description or exc.title or "error"
    if _is_page(req) and status >= 400:
        _page_error(req, resp, status, title, message)
        return
    resp.content_type = falcon.MEDIA_JSON
    resp.media = error_body(status, str(code), message)


def register(app: falcon.App) -> None:
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(CondastoreError, handle_core_error)
    app.set_error_serializer(serialize_http_error)
