"""What ``condastore login`` keeps in the user's config dir (0600): tokens and the last server.

One token per server URL, and the URL of the server last logged in to, which
later commands use when neither ``--url`` nor ``CONDASTORE_URL`` names one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import platformdirs


def credentials_path() -> Path:
    override = os.environ.get("CONDASTORE_CREDENTIALS")
    if override:
        return Path(override)
    return Path(platformdirs.user_config_dir("condastore", appauthor=False)) / "credentials.json"


def _load() -> dict[str, Any]:
    """``{"tokens": {url: token}, "default_url": url}``; the older flat ``{url: token}`` too."""
    try:
        data = json.loads(credentials_path().read_text())
    except (FileNotFoundError, ValueError):
        return {"tokens": {}}
    if not isinstance(data, dict):
        return {"tokens": {}}
    if "tokens" not in data:
        return {"tokens": {k: v for k, v in data.items() if isinstance(v, str)}}
    return data


def stored_token(url: str) -> str | None:
    return dict(_load().get("tokens") or {}).get(url.rstrip("/"))


def default_url() -> str | None:
    """The server ``condastore login`` last logged in to, if any."""
    value = _load().get("default_url")
    return value if isinstance(value, str) else None


def store_token(url: str, token: str | None) -> Path:
    """Save the token for ``url`` and make ``url`` the default server (with None: forget it)."""
    data = _load()
    tokens = dict(data.get("tokens") or {})
    url = url.rstrip("/")
    if token is None:
        tokens.pop(url, None)
    else:
        tokens[url] = token
        data["default_url"] = url
    data["tokens"] = tokens
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path
