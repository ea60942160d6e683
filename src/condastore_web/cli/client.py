"""A small HTTP client of the REST API for the CLI (standard library only)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from condastore_core.errors import CondastoreError
from condastore_web.cli.credentials import default_url, stored_token

DEFAULT_URL = "http://127.0.0.1:8080"


#: Exit codes scripts can tell apart (click's own is 2 for a wrong command line).
EXIT_ERROR = 1
EXIT_NOT_FOUND = 3
EXIT_DENIED = 4
EXIT_CONFLICT = 5


class ApiError(CondastoreError):
    """The server answered with an error; the message is the server's."""

    code = "API_ERROR"

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} (HTTP {status}, {code})")
        self.status = status
        self.api_code = code

    @property
    def exit_code(self) -> int:
        return {404: EXIT_NOT_FOUND, 401: EXIT_DENIED, 403: EXIT_DENIED, 409: EXIT_CONFLICT}.get(
            self.status, EXIT_ERROR
        )


class ApiClient:
    def __init__(self, url: str | None = None, token: str | None = None) -> None:
        self.url = (url or os.environ.get("CONDASTORE_URL") or default_url() or DEFAULT_URL).rstrip(
            "/"
        )
        self.token = token or os.environ.get("CONDASTORE_TOKEN") or stored_token(self.url)

    @property
    def anonymous(self) -> bool:
        return not self.token

    def own_namespace(self) -> str:
        """The caller's own namespace (named after them), the default like in the web UI."""
        if self.anonymous:
            raise CondastoreError(
                f"not logged in to {self.url}: run `condastore login` or pass --namespace"
            )
        return str(self.get("/auth/me")["name"])

    def _open(self, method: str, path: str, body: Any = None, params: dict | None = None):  # type: ignore[no-untyped-def]
        query = {k: v for k, v in (params or {}).items() if v is not None}
        url = f"{self.url}/api/v1{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            return urllib.request.urlopen(request, timeout=60)
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None
        except urllib.error.URLError as exc:
            raise CondastoreError(f"cannot reach condastore at {self.url}: {exc.reason}") from None

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        with self._open(method, path, body, params) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, **params)

    def download(
        self,
        path: str,
        target: Path | BinaryIO,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> int:
        """Stream a download into a file or a binary stream; returns the byte count.

        ``progress(done, total)`` is called after every chunk (total from Content-Length).
        """
        with self._open("GET", path) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if isinstance(target, Path):
                with open(target, "wb") as f:
                    return _copy(response, f, total, progress)
            return _copy(response, target, total, progress)


def _copy(source, target, total, progress) -> int:  # type: ignore[no-untyped-def]
    count = 0
    while chunk := source.read(1 << 20):
        target.write(chunk)
        count += len(chunk)
        if progress is not None:
            progress(count, total)
    return count


def _api_error(exc: urllib.error.HTTPError) -> ApiError:
    try:
        error = json.loads(exc.read())["error"]
        return ApiError(error["status"], error["code"], error["message"])
    except (ValueError, KeyError, TypeError):
        return ApiError(exc.code, "HTTP_ERROR", exc.reason or "request failed")
