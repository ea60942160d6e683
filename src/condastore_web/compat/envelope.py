"""conda-store's answer shapes: the envelope, its page/size/sort parameters, its bodies.

Every answer is ``{"status": "ok", "data": ..., "message": ...}``; lists add
``page``, ``size`` (at most :data:`MAX_PAGE_SIZE`, conda-store's default) and
``count``, and sort by ``sort_by`` (repeated) in ``order`` (``asc``/``desc``),
ignoring keys a list does not sort by, as conda-store does.

condastore's services page by keyset; conda-store clients page by number and
expect the total. A list here walks the caller's visible rows through the
service (which applies the same visibility as our own routes), then sorts and
slices them, so ``count`` is exact for what the caller may see.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import falcon
from pydantic import BaseModel, ConfigDict, ValidationError

from condastore_core.bounded import load_json
from condastore_core.errors import InvalidRequest
from condastore_core.service.pagination import MAX_LIMIT, Page
from condastore_registry import request_body

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
MAX_PAGE_SIZE = 100
MAX_BODY_BYTES = 1 << 20


class Body(BaseModel):
    """A conda-store request body: unknown fields are ignored, as FastAPI's ``Body`` does.

    conda-store's own CLI sends fields its server never reads (``exp`` beside
    ``expiration``); refusing them would break the client this API exists for.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)


def ok(resp: falcon.Response, data: Any = None, message: str | None = None) -> None:
    resp.media = {"status": "ok", "data": data, "message": message}


def ack(resp: falcon.Response, message: str | None = None) -> None:
    resp.media = {"status": "ok", "message": message}


def read_body(req: falcon.Request, model: type[M]) -> M:
    try:
        raw = request_body.read_body(req, MAX_BODY_BYTES)
    except request_body.BodyTooLarge as exc:
        raise falcon.HTTPContentTooLarge(description=str(exc)) from None
    try:
        data = load_json(raw or b"{}", "the request body")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(body)"
        raise InvalidRequest(f"{where}: {first['msg']}") from None


def param(req: falcon.Request, name: str) -> str | None:
    """A query parameter as conda-store's CLI meant it.

    The CLI appends ``/`` to every URL, after the query when there is one
    (``/build?status=COMPLETED/``): that slash belongs to no value.
    """
    value = req.get_param(name)
    if value is not None and req.query_string.endswith("/"):
        value = value.rstrip("/")
    return value


def int_param(req: falcon.Request, name: str, default: int | None = None) -> int | None:
    value = param(req, name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        message = f"query parameter '{name}' must be an integer, not {value!r}"
        raise InvalidRequest(message) from None


def list_param(req: falcon.Request, name: str) -> list[str]:
    values = req.get_param_as_list(name) or []
    if req.query_string.endswith("/"):
        values = [v.rstrip("/") for v in values]
    return [v for v in values if v]


def walk(fetch: Callable[[str | None], Page[T]]) -> Iterator[T]:
    """Every item of a keyset-paged service list, page after page."""
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


#: How many rows a service page holds while walking a list.
WALK_LIMIT = MAX_LIMIT


def paginated(
    req: falcon.Request,
    resp: falcon.Response,
    items: Iterable[T],
    shape: Callable[[T], dict[str, Any]],
    sorts: dict[str, Callable[[T], Any]],
    default_sort: list[str],
) -> None:
    """Answer one page of ``items``, sorted as the request asks, in conda-store's envelope."""
    asked_page, asked_size = int_param(req, "page"), int_param(req, "size")
    page = 1 if asked_page is None else asked_page
    size = MAX_PAGE_SIZE if asked_size is None else asked_size
    if page < 1:
        raise InvalidRequest(f"page must be at least 1, not {page}")
    if size < 1:
        raise InvalidRequest(f"size must be at least 1, not {size}")
    size = min(size, MAX_PAGE_SIZE)
    keys = [k for k in (list_param(req, "sort_by") or default_sort) if k in sorts]
    rows = list(items)
    descending = param(req, "order") == "desc"
    if keys:
        rows.sort(key=lambda row: tuple(_sortable(sorts[k](row)) for k in keys), reverse=descending)
    start = (page - 1) * size
    resp.media = {
        "status": "ok",
        "data": [shape(row) for row in rows[start : start + size]],
        "message": None,
        "page": page,
        "size": size,
        "count": len(rows),
    }


def _sortable(value: Any) -> tuple[bool, Any]:
    """None sorts before everything else, whatever the other values' type."""
    return (value is not None, value if value is not None else 0)
