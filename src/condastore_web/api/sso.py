"""Single sign-on routes: the browser's way to the OpenID provider and back, and the CLI's.

Browser: ``/ui/login/sso`` records a pending login and sends the browser to
the provider; ``/ui/login/callback`` takes the browser back, checks that the
``state`` is the one this browser started (a cookie holds it, so a callback
URL made for someone else's login is refused), and starts a session.

CLI (``condastore login --sso``), under ``/api/v1/auth/sso``: ``device`` and
``device/token`` run the device authorization grant (the server polls the
provider; the CLI polls the server with a secret handle); ``cli`` starts a
browser login whose result the callback sends to the CLI's loopback address
as a one-time code, which ``token`` exchanges for a condastore token given the
CLI's PKCE verifier. Either way the CLI ends with a condastore token, like a
password login.

``logout`` ends the condastore session and answers where the browser ends
its provider session, when the provider offers that (``end_session_endpoint``).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlencode, urlsplit

import falcon
from pydantic import Field

from condastore_core.auth.oidc import DevicePending, OidcClient, OidcConfig, SsoRefused
from condastore_core.auth.rbac import Principal
from condastore_core.channels.gate import gate_for
from condastore_core.errors import InvalidRequest, NotFound
from condastore_core.service import sso, users
from condastore_core.service.context import Context
from condastore_core.settings import Settings
from condastore_web.api.access import require_login
from condastore_web.api.accounts import token_json
from condastore_web.api.bodies import Body, read_body
from condastore_web.api.sessions import (
    LOGIN_PAGE,
    end_session,
    is_https,
    safe_next,
    start_session,
)

SSO_START = "/ui/login/sso"
CALLBACK = "/ui/login/callback"
STATE_COOKIE = "condastore_sso_state"
#: The CLI's loopback listener: http on a loopback address, a port, a plain path.
_LOOPBACK_PATH = re.compile(r"^/[A-Za-z0-9._~/-]{0,64}$")


def client_for(settings: Settings) -> OidcClient | None:
    """The configured provider's client, or None when single sign-on is off."""
    if not settings.oidc_issuer:
        return None
    config = OidcConfig(
        issuer=settings.oidc_issuer,
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret,
        scopes=settings.oidc_scopes,
        username_claim=settings.oidc_username_claim,
        groups_claim=settings.oidc_groups_claim,
    )
    return OidcClient(config, gate_for(settings))


def form_targets(settings: Settings) -> list[str]:
    """Origins a page's form may lead to besides this site: the provider's, for its logout."""
    if not settings.oidc_issuer:
        return []
    parts = urlsplit(settings.oidc_issuer)
    return [f"{parts.scheme}://{parts.netloc}"]


def login_options(ctx: Context) -> dict[str, bool]:
    """What the login page offers."""
    return {"sso": bool(ctx.settings.oidc_issuer), "password_login": ctx.settings.password_login}


def after_logout(
    ctx: Context, req: falcon.Request, who: Principal, client: OidcClient | None = None
) -> str:
    """Where the browser goes once its session ended: the provider's logout, where it has one.

    A user who came through single sign-on also leaves the provider's session
    (its ``end_session_endpoint``), which sends the browser back to the login page.
    """
    client = client if client is not None else client_for(ctx.settings)
    if client is not None and sso.has_identity(ctx, who):
        target = client.logout_url(_base(ctx, req) + LOGIN_PAGE)
        if target:
            return str(target)
    return LOGIN_PAGE


def _base(ctx: Context, req: falcon.Request) -> str:
    return req.forwarded_prefix if ctx.settings.trust_proxy_headers else req.prefix


def _redirect_uri(ctx: Context, req: falcon.Request) -> str:
    return _base(ctx, req) + CALLBACK


class _Resource:
    def __init__(self, ctx: Context, client: OidcClient | None) -> None:
        self.ctx = ctx
        self._client = client

    @property
    def client(self) -> OidcClient:
        if self._client is None:
            raise NotFound("single sign-on is not configured on this server")
        return self._client


class SsoStart(_Resource):
    """``GET /ui/login/sso?next=``: to the provider, with this browser bound to the login."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        started = sso.begin(
            self.ctx,
            self.client,
            _redirect_uri(self.ctx, req),
            next_path=safe_next(req.get_param("next")),
        )
        resp.set_cookie(
            STATE_COOKIE,
            started.handle,
            max_age=int(sso.LOGIN_TTL.total_seconds()),
            secure=is_https(self.ctx, req),
            http_only=True,
            same_site="Lax",  # sent on the provider's top-level redirect back
            path=CALLBACK,
        )
        raise falcon.HTTPSeeOther(started.authorization_url)


class SsoCallback(_Resource):
    """``GET /ui/login/callback?code&state``: the provider sends the browser back here."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        state = req.get_param("state") or ""
        resp.unset_cookie(STATE_COOKIE, path=CALLBACK)
        if not state or len(state) > 256:
            raise SsoRefused("the provider's answer carries no state; start the login again")
        error = req.get_param("error")
        code = req.get_param("code")
        if error or not code:
            sso.discard(self.ctx, state)
            description = (req.get_param("error_description") or "")[:300]
            reason = f"{(error or 'no code')[:100]}" + (f" ({description})" if description else "")
            raise SsoRefused(f"the identity provider did not log you in: {reason}")
        finished = sso.finish(
            self.ctx,
            self.client,
            state,
            code[:4096],
            _redirect_uri(self.ctx, req),
            browser_state=next(iter(req.get_cookie_values(STATE_COOKIE) or []), None),
        )
        if finished.kind == "cli":
            query = urlencode({"code": finished.handoff_code, "state": finished.client_state})
            raise falcon.HTTPSeeOther(f"{finished.client_redirect}?{query}")
        start_session(self.ctx, req, resp, finished.user)
        raise falcon.HTTPSeeOther(safe_next(finished.next_path))


class SsoInfo:
    """``GET /api/v1/auth/sso``: what this server offers, for the CLI to choose its way."""

    def __init__(self, ctx: Context, client: OidcClient | None) -> None:
        self.ctx = ctx
        self.client = client

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {
            "enabled": self.client is not None,
            "device": self.client is not None and self.client.supports_device_flow(),
            "password_login": self.ctx.settings.password_login,
        }


class CliStart(Body):
    redirect_uri: str = Field(max_length=256)
    code_challenge: str = Field(min_length=43, max_length=128)
    state: str = Field(min_length=16, max_length=128)


class CliToken(Body):
    code: str = Field(max_length=256)
    code_verifier: str = Field(min_length=43, max_length=128)


class DeviceToken(Body):
    handle: str = Field(max_length=256)


def check_loopback(uri: str) -> str:
    """``uri`` when it is an http address on this machine's loopback, with a port."""
    parts = urlsplit(uri)
    try:
        host_ok = (
            parts.hostname == "localhost" or ipaddress.ip_address(parts.hostname or "").is_loopback
        )
        port = parts.port
    except ValueError:
        host_ok, port = False, None
    if (
        parts.scheme != "http"
        or not host_ok
        or port is None
        or parts.username is not None
        or parts.password is not None
        or parts.query
        or parts.fragment
        or not _LOOPBACK_PATH.match(parts.path or "/")
    ):
        raise InvalidRequest(
            "redirect_uri must be http://127.0.0.1:PORT/PATH (the CLI's loopback listener)"
        )
    return uri


class SsoCli(_Resource):
    """``POST /api/v1/auth/sso/cli``: a browser login whose result goes to the CLI's loopback."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_body(req, CliStart)
        started = sso.begin(
            self.ctx,
            self.client,
            _redirect_uri(self.ctx, req),
            client_redirect=check_loopback(body.redirect_uri),
            client_challenge=body.code_challenge,
            client_state=body.state,
        )
        resp.media = {"authorization_url": started.authorization_url}


def _cli_token(ctx: Context, name: str) -> dict[str, Any]:
    issued = users.issue_token(ctx, name, kind="session", description="single sign-on (CLI)")
    return {**token_json(issued), "user": name}


class SsoToken(_Resource):
    """``POST /api/v1/auth/sso/token``: the CLI's one-time code and verifier -> a token."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_body(req, CliToken)
        self.client  # noqa: B018 (refuses when single sign-on is off)
        resp.media = _cli_token(self.ctx, sso.redeem(self.ctx, body.code, body.code_verifier))


class SsoDevice(_Resource):
    """``POST /api/v1/auth/sso/device``: start a device login; the user code is for the user."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        started = sso.begin_device(self.ctx, self.client)
        resp.media = {
            "handle": started.handle,
            "user_code": started.user_code,
            "verification_uri": started.verification_uri,
            "verification_uri_complete": started.verification_uri_complete,
            "expires_in": started.expires_in,
            "interval": started.interval,
        }


class SsoDeviceToken(_Resource):
    """``POST /api/v1/auth/sso/device/token``: 202 while the user is at the provider."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_body(req, DeviceToken)
        try:
            name = sso.poll_device(self.ctx, self.client, body.handle)
        except DevicePending as pending:
            resp.status = falcon.HTTP_202
            resp.media = {"status": "pending", "interval": pending.interval}
            return
        resp.media = _cli_token(self.ctx, name)


class SsoLogout(_Resource):
    """``POST /api/v1/auth/sso/logout``: end the session; answer where the browser goes next."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        who = require_login(req)
        if who.token_id is not None:
            users.revoke_token(self.ctx, who.token_id)
        end_session(resp)
        resp.media = {"next": after_logout(self.ctx, req, who, self._client)}


def mount(app: falcon.App, ctx: Context, api: str) -> None:
    client = client_for(ctx.settings)
    app.add_route(SSO_START, SsoStart(ctx, client))
    app.add_route(CALLBACK, SsoCallback(ctx, client))
    app.add_route(f"{api}/auth/sso", SsoInfo(ctx, client))
    app.add_route(f"{api}/auth/sso/cli", SsoCli(ctx, client))
    app.add_route(f"{api}/auth/sso/token", SsoToken(ctx, client))
    app.add_route(f"{api}/auth/sso/device", SsoDevice(ctx, client))
    app.add_route(f"{api}/auth/sso/device/token", SsoDeviceToken(ctx, client))
    app.add_route(f"{api}/auth/sso/logout", SsoLogout(ctx, client))
