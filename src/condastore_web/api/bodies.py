"""Strict request bodies: size- and depth-limited JSON, unknown fields refused by name."""

from __future__ import annotations

import json
from typing import TypeVar

import falcon
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from condastore_core.bounded import load_json
from condastore_core.db.models import MAX_ID
from condastore_core.errors import InvalidRequest
from condastore_registry import request_body

MAX_BODY_BYTES = 1 << 20
M = TypeVar("M", bound=BaseModel)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NamespaceCreate(Body):
    name: str = Field(max_length=64)


class EnvironmentCreate(Body):
    namespace: str = Field(default="default", max_length=64)
    #: The environment.yaml text.
    specification: str = Field(max_length=MAX_BODY_BYTES)
    description: str | None = Field(default=None, max_length=4096)
    platforms: list[str] | None = None
    #: Optional conda-lock.yml text: build exactly this lock instead of solving.
    lockfile: str | None = Field(default=None, max_length=MAX_BODY_BYTES)


class CurrentBuild(Body):
    build_id: int = Field(ge=1, le=MAX_ID)


class SolveRequest(Body):
    #: Whose channel policy the preview follows.
    namespace: str = Field(default="default", max_length=64)
    specification: str = Field(max_length=MAX_BODY_BYTES)
    platforms: list[str] | None = None


class ChannelRefresh(Body):
    #: Channel names or URLs; none: every configured channel.
    channels: list[str] = Field(default_factory=list, max_length=100)


def read_body(req: falcon.Request, model: type[M], limit: int = MAX_BODY_BYTES) -> M:
    """Parse the JSON body of ``req`` (sized or chunked) into ``model``; 413 past ``limit``.

    Nesting deeper than ``bounded.MAX_DEPTH`` is refused too (``DocumentRefused``).
    """
    try:
        raw = request_body.read_body(req, limit)
    except request_body.BodyTooLarge as exc:
        raise falcon.HTTPContentTooLarge(description=str(exc)) from None
    try:
        data = load_json(raw or b"null", "the request body")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(_explain(exc), detail={"errors": _errors(exc)}) from None


def _errors(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
        for e in exc.errors()
    ]


def _explain(exc: ValidationError) -> str:
    parts = []
    for e in _errors(exc):
        if e["message"] == "Extra inputs are not permitted":
            parts.append(f"unknown field '{e['field']}'")
        else:
            parts.append(f"field '{e['field']}': {e['message']}")
    return "invalid request body: " + "; ".join(parts)
