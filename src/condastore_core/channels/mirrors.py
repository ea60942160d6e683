"""Mirrors and credentials: where a channel is really fetched from, and with what.

Specs and locks name a channel by its canonical URL (``conda-forge`` is
``https://conda.anaconda.org/conda-forge``); an installation may fetch it from
an internal mirror instead (setting ``channel_mirrors``), with credentials per
host (``channel_credentials``). rattler's own :class:`MirrorMiddleware` swaps
the prefix on every request its client makes (repodata and packages), so the
records rattler returns, and the lock, keep the canonical URL, and the gate's
proxy sees, and checks, the mirror URL actually contacted. Credentials are
added by a header middleware for their host only, after the mirror swap; they
never appear in a URL, so no error message, log line or API answer shows them.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass

from condastore_core.channels.gate import normalize_url


@dataclass(frozen=True)
class ChannelAccess:
    """An installation's mirror map and per-host credentials (hashable: one proxy per gate)."""

    #: (canonical URL, mirror URL), normalised; longest canonical prefix wins.
    mirrors: tuple[tuple[str, str], ...] = ()
    #: (host, Authorization header value).
    credentials: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:  # credentials are never shown
        return f"ChannelAccess(mirrors={self.mirrors!r}, credentials=<{len(self.credentials)}>)"

    @classmethod
    def create(
        cls, mirrors: Mapping[str, str] | None = None, credentials: Mapping[str, str] | None = None
    ) -> ChannelAccess:
        pairs = sorted(
            ((normalize_url(k), normalize_url(v)) for k, v in (mirrors or {}).items()),
            key=lambda p: -len(p[0]),
        )
        return cls(
            tuple(pairs),
            tuple(
                sorted(
                    (h.strip().lower(), _authorization(s)) for h, s in (credentials or {}).items()
                )
            ),
        )

    def fetched_url(self, url: str) -> str:
        """The URL really contacted for ``url`` (its mirror's, or itself)."""
        normal = normalize_url(url)
        for canonical, mirror in self.mirrors:
            if normal == canonical or normal.startswith(canonical + "/"):
                return mirror + normal[len(canonical) :]
        return url

    def headers(self, host: str, path: str) -> dict[str, str] | None:
        """The credentials for a request to ``host`` (rattler's header callback)."""
        host = host.lower()
        for name, value in self.credentials:
            if name == host:
                return {"Authorization": value}
        return None

    def middlewares(self) -> list:
        """rattler client middlewares: mirror swap, then credentials for the host contacted."""
        from rattler.networking import AddHeadersMiddleware, MirrorMiddleware

        result: list = []
        if self.mirrors:
            result.append(MirrorMiddleware({c: [m] for c, m in self.mirrors}))
        if self.credentials:
            result.append(AddHeadersMiddleware(self.headers))
        return result


def _authorization(secret: str) -> str:
    secret = secret.strip()
    if secret.lower().startswith(("bearer ", "token ", "basic ")):
        return secret
    return "Basic " + base64.b64encode(secret.encode()).decode()
