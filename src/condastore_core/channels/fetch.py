"""HTTP fetches whose every hop passes the channel gate.

``requests`` follows redirects on its own, to wherever a server points; this
session follows them itself and puts each target through the gate before
connecting, so an allowed server cannot bounce a request to loopback or to a
cloud metadata address. Credentials are dropped when a redirect leaves the
host, as ``requests`` does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from condastore_core.channels.gate import ChannelGate

MAX_REDIRECTS = 10


class TooManyRedirects(requests.TooManyRedirects):
    pass


class GatedSession(requests.Session):
    """A ``requests.Session`` that checks the first URL and every redirect with ``gate``."""

    def __init__(self, gate: ChannelGate) -> None:
        super().__init__()
        self.gate = gate

    def request(  # type: ignore[override]
        self, method: str, url: str, **kwargs: Any
    ) -> requests.Response:
        follow = kwargs.pop("allow_redirects", True)
        self.gate.check_url(url)
        for _ in range(MAX_REDIRECTS + 1):
            response = super().request(method, url, allow_redirects=False, **kwargs)
            if not (follow and response.is_redirect):
                return response
            target = urljoin(url, response.headers["Location"])
            response.close()
            # The target came from the remote server: refused without echoing it back.
            self.gate.check_url(target, shown=f"a redirect from {urlsplit(url).netloc}")
            if urlsplit(target).netloc != urlsplit(url).netloc:
                kwargs.pop("auth", None)
                headers = dict(kwargs.get("headers") or {})
                headers.pop("Authorization", None)
                kwargs["headers"] = headers
            if response.status_code == 303 or (
                response.status_code in (301, 302) and method.upper() == "POST"
            ):
                method = "GET"
                kwargs.pop("data", None)
            url = target
        raise TooManyRedirects(f"more than {MAX_REDIRECTS} redirects from {urlsplit(url).netloc}")
