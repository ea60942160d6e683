"""Who is asking, and may they: authentication middleware and the access checks of routes.

Credentials come as ``Authorization: Bearer <token>``, as HTTP Basic (user
name and a password or token, for registry clients), or as the session cookie
of the web UI; with the cookie, state-changing requests must carry the session's
CSRF token in ``X-CSRF-Token`` (see :mod:`condastore_web.api.sessions`). A
revoked or expired session cookie is cleared and the request goes on as
anonymous (pages send the browser to the login form). What a caller may not
read answers 404 exactly as if it did not exist (401 when anonymous, so clients
know to log in); what they may read but not change answers 403.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs

import falcon

from condastore_core.auth.rbac import (
    ANONYMOUS_PRINCIPAL,
    AccessPolicy,
    Action,
    Forbidden,
    Principal,
    Unauthenticated,
)
from condastore_core.errors import CondastoreError, NotFound
from condastore_core.service import users
from condastore_core.service.context import Context
from condastore_core.service.visibility import Visibility
from condastore_web.api.sessions import (
    CSRF_HEADER,
    LOGIN_PAGE,
    SESSION_COOKIE,
    csrf_matches,
    end_session,
    login_url,
)

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
#: Where the UI's JavaScript-free forms post; their CSRF token is a form field.
FORM_PREFIX = "/ui/do/"
#: A form of the UI is a few short fields (a spec is the largest); anything larger is not one.
MAX_FORM_BYTES = 1 << 20


def read_form(req: falcon.Request, limit: int = MAX_FORM_BYTES) -> dict[str, str]:
    """The fields of a urlencoded form body, size-limited; the first value of each."""
    raw = req.bounded_stream.read(limit + 1)
    if len(raw) > limit:
        raise falcon.HTTPContentTooLarge(description="the form is too large")
    try:
        fields = parse_qs(raw.decode(), keep_blank_values=True, max_num_fields=32)
    except (UnicodeDecodeError, ValueError):
        raise falcon.HTTPBadRequest(description="the form could not be read") from None
    return {k: v[0] for k, v in fields.items()}


#: Where a password is checked: a session cookie the browser still sends plays no part.
LOGIN_ROUTES = {("POST", LOGIN_PAGE), ("POST", "/api/v1/auth/login")}


class Authenticate:
    """Middleware: puts ``principal`` (and ``token_expiry``) on every request's context."""

    def __init__(self, ctx: Context, authenticator: users.Authenticator | None = None) -> None:
        self.ctx = ctx
        self.authenticator = authenticator or users.LocalPasswords()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.principal = ANONYMOUS_PRINCIPAL
        req.context.token_expiry = None
        if req.path.startswith(
            ("/v2", "/auth/token", "/metrics", "/healthz", "/readyz", "/static")
        ):
            return  # the registry authenticates its clients its own way
        header = req.get_header("Authorization")
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() == "bearer":
                self._token(req, value.strip())
            elif scheme.lower() == "basic":
                self._basic(req, value.strip())
            else:
                raise Unauthenticated(f"unsupported authorization scheme {scheme!r}")
            return
        cookie = req.get_cookie_values(SESSION_COOKIE)
        if not cookie or (req.method, req.path) in LOGIN_ROUTES:
            return
        session = cookie[0]
        if req.method not in SAFE_METHODS and req.path.startswith(FORM_PREFIX):
            # A plain HTML form (no JavaScript) carries the CSRF token as a field.
            req.context.form = read_form(req)
            if not csrf_matches(session, req.context.form.get("csrf", "")):
                raise Forbidden("missing or wrong CSRF token in the form; reload the page")
        elif req.method not in SAFE_METHODS and not csrf_matches(
            session, req.get_header(CSRF_HEADER) or ""
        ):
            raise Forbidden(f"missing or wrong {CSRF_HEADER} header for a cookie session")
        try:
            self._token(req, session)
        except Unauthenticated:
            self._stale_session(req, resp)

    def _stale_session(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A revoked or expired session: forget it; pages lead to the login form."""
        end_session(resp)
        req.context.principal = ANONYMOUS_PRINCIPAL
        if req.method in SAFE_METHODS and req.path.startswith("/ui/") and req.path != LOGIN_PAGE:
            raise falcon.HTTPSeeOther(login_url(req.relative_uri))

    def _token(self, req: falcon.Request, token: str) -> None:
        principal, expiry = users.principal_for_token(self.ctx, token)
        req.context.principal = principal
        req.context.token_expiry = expiry

    def _basic(self, req: falcon.Request, value: str) -> None:
        principal, expiry = users.principal_for_basic(
            self.ctx, value, self.authenticator, req.remote_addr
        )
        req.context.principal = principal
        req.context.token_expiry = expiry


def principal(req: falcon.Request) -> Principal:
    return req.context.principal


def access_policy(ctx: Context, req: falcon.Request) -> AccessPolicy:
    """The role bindings, read once per request."""
    if getattr(req.context, "access_policy", None) is None:
        req.context.access_policy = users.access_policy(ctx)
    return req.context.access_policy


def visibility(ctx: Context, req: falcon.Request) -> Visibility:
    return Visibility(access_policy(ctx, req), principal(req))


def require(
    ctx: Context,
    req: falcon.Request,
    action: Action,
    namespace: str,
    environment: str | None = None,
    *,
    hidden: str | CondastoreError,
) -> None:
    """Allow ``action`` on ``namespace[/environment]`` or raise.

    ``hidden`` is what a missing object raises (or its message), so an object the
    caller may not read is indistinguishable from one that does not exist.
    """
    who = principal(req)
    policy = access_policy(ctx, req)
    if policy.can(who, action, namespace, environment):
        return
    readable = (
        policy.can_see_any(who, namespace)
        if environment is None
        else policy.can(who, Action.READ, namespace, environment)
    )
    if who.anonymous:
        raise Unauthenticated(f"log in to {action.name.lower()} {namespace}")
    if not readable:
        raise NotFound(hidden) if isinstance(hidden, str) else hidden
    target = namespace if environment is None else f"{namespace}/{environment}"
    raise Forbidden(f"{who.name} may not {action.name.lower()} {target}")


def require_login(req: falcon.Request) -> Principal:
    who = principal(req)
    if who.anonymous:
        raise Unauthenticated("log in first")
    return who


def require_admin(req: falcon.Request) -> Principal:
    """Installation-wide administration: an admin, with a token that is not narrowed."""
    who = require_login(req)
    if not who.is_admin or who.scope is not None:
        raise Forbidden("only an administrator may do this")
    return who


def token_expiry(req: falcon.Request) -> dt.datetime | None:
    return req.context.token_expiry
