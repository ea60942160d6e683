"""Where pip packages come from: an installation's index URLs and credentials.

Credentials are given to uv in a private netrc file, and to the wheel downloads
as a header for their host only: they never appear in a URL, a command line, a
lock or a message.
"""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from condastore_core.channels.gate import OPEN_GATE, ChannelGate

if TYPE_CHECKING:
    from condastore_core.settings import Settings

DEFAULT_INDEX_URL = "https://pypi.org/simple"


@dataclass(frozen=True)
class PipIndex:
    """The indexes pip requirements resolve against, the gate their fetches pass, a cache."""

    index_url: str = DEFAULT_INDEX_URL
    extra_index_urls: tuple[str, ...] = ()
    #: (host, "user:password" or a token); never shown.
    credentials: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    gate: ChannelGate = OPEN_GATE
    #: uv's cache and the verified wheels; None: a temporary one per use.
    cache_dir: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings, gate: ChannelGate, cache_dir: Path) -> PipIndex:
        return cls(
            index_url=settings.pip_index_url,
            extra_index_urls=tuple(settings.pip_extra_index_urls),
            credentials=tuple(
                sorted((h.strip().lower(), s) for h, s in settings.pip_credentials.items())
            ),
            gate=gate,
            cache_dir=cache_dir,
        )

    def headers(self, url: str) -> dict[str, str]:
        """The Authorization header for ``url``'s host, if the installation has credentials."""
        host = (urlsplit(url).hostname or "").lower()
        for name, secret in self.credentials:
            if name == host:
                user, password = _split(secret)
                token = base64.b64encode(f"{user}:{password}".encode()).decode()
                return {"Authorization": f"Basic {token}"}
        return {}

    @contextlib.contextmanager
    def netrc(self) -> Iterator[Path | None]:
        """A private netrc file holding the credentials (for uv), removed afterwards."""
        if not self.credentials:
            yield None
            return
        fd, name = tempfile.mkstemp(prefix="condastore-netrc-")
        try:
            with os.fdopen(fd, "w") as f:
                for host, secret in self.credentials:
                    user, password = _split(secret)
                    f.write(f"machine {host} login {user} password {password}\n")
            yield Path(name)
        finally:
            os.unlink(name)


def _split(secret: str) -> tuple[str, str]:
    """``user:password``; a bare token is PyPI's ``__token__`` user."""
    user, sep, password = secret.partition(":")
    return (user, password) if sep else ("__token__", secret)
