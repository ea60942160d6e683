"""Where ``condastore login`` keeps tokens: one per server URL, in the user's config dir (0600)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import platformdirs


def credentials_path() -> Path:
    override = os.environ.get("CONDASTORE_CREDENTIALS")
    if override:
        return Path(override)
    return Path(platformdirs.user_config_dir("condastore", appauthor=False)) / "credentials.json"


def _load() -> dict[str, str]:
    try:
        return dict(json.loads(credentials_path().read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def stored_token(url: str) -> str | None:
    return _load().get(url.rstrip("/"))


def store_token(url: str, token: str | None) -> Path:
    """Save (with None: forget) the token for ``url``, atomically and readable by you only."""
    tokens = _load()
    if token is None:
        tokens.pop(url.rstrip("/"), None)
    else:
        tokens[url.rstrip("/")] = token
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(tokens, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path
