"""Browser sessions: the session and CSRF cookies, the CSRF token, and where a login may lead.

A web session is a session token in an HttpOnly cookie. Requests that change
state with that cookie must carry a CSRF token in ``X-CSRF-Token``; the token
is derived from the session token itself (an HMAC keyed by it), so it is bound
to that one session: a token planted by another site, or taken from another
session, never matches, and any server of a cluster can check it without a
shared secret. The same token sits in a readable cookie and in each page's
``<meta name="csrf-token">`` for the page's JavaScript.

After a login the browser goes to ``next``, which must be a page of this site
(``/ui/...``): anything that a browser could read as another host (``//x``,
``/\\x``, a scheme, encoded forms of these) is replaced by the default page.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
from urllib.parse import quote, unquote, urlsplit

import falcon

from condastore_core.service import users
from condastore_core.service.context import Context

SESSION_COOKIE = "condastore_session"
CSRF_COOKIE = "condastore_csrf"
CSRF_HEADER = "X-CSRF-Token"
DEFAULT_NEXT = "/ui/environments"
LOGIN_PAGE = "/ui/login"
_CSRF_LABEL = b"condastore csrf v1"
#: A path of this site's pages: printable ASCII without backslashes or quotes.
_PAGE_PATH = re.compile(r"^/ui(/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$")


def csrf_token(session_token: str) -> str:
    """The CSRF token of the session whose token is ``session_token``."""
    mac = hmac.new(session_token.encode(), _CSRF_LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def csrf_matches(session_token: str, given: str) -> bool:
    return hmac.compare_digest(csrf_token(session_token), given)


def is_https(ctx: Context, req: falcon.Request) -> bool:
    """Whether the browser reached us over HTTPS, directly or through a trusted proxy."""
    if req.scheme == "https":
        return True
    return ctx.settings.trust_proxy_headers and req.forwarded_scheme == "https"


def start_session(
    ctx: Context, req: falcon.Request, resp: falcon.Response, name: str
) -> users.IssuedToken:
    """Issue a session token for ``name`` and set its cookies; returns the issued token."""
    issued = users.issue_token(ctx, name, kind="session", description="login")
    max_age = int((issued.expires_at - dt.datetime.now(dt.UTC)).total_seconds())
    secure = is_https(ctx, req)
    resp.set_cookie(
        SESSION_COOKIE,
        issued.token,
        max_age=max_age,
        secure=secure,
        http_only=True,
        same_site="Lax",
        path="/",
    )
    resp.set_cookie(
        CSRF_COOKIE,
        csrf_token(issued.token),
        max_age=max_age,
        secure=secure,
        http_only=False,
        same_site="Strict",
        path="/",
    )
    return issued


def end_session(resp: falcon.Response) -> None:
    """Tell the browser to forget the session's cookies."""
    resp.unset_cookie(SESSION_COOKIE, path="/")
    resp.unset_cookie(CSRF_COOKIE, path="/")


def safe_next(value: str | None) -> str:
    """``value`` when it is a page of this site, else the default page."""
    if not value or len(value) > 2048:
        return DEFAULT_NEXT
    decoded = value
    for _ in range(4):  # every layer of percent-encoding must be a page path too
        if not _PAGE_PATH.match(decoded) or not _plain_path(decoded):
            return DEFAULT_NEXT
        once = unquote(decoded)
        if once == decoded:
            return value
        decoded = once
    return DEFAULT_NEXT


def _plain_path(value: str) -> bool:
    parts = urlsplit(value)
    path = parts.path
    return (
        not parts.scheme
        and not parts.netloc
        and "//" not in path
        and not any(seg in (".", "..") for seg in path.split("/"))
    )


def login_url(next_path: str) -> str:
    """The login page, sending the browser on to ``next_path`` afterwards."""
    return f"{LOGIN_PAGE}?next={quote(safe_next(next_path), safe='/')}"
