"""``/permission/`` and ``/token/``: who the caller is, and tokens narrowed by role bindings.

conda-store names rights by ``namespace/environment`` patterns with roles
``viewer``, ``editor`` (``developer`` is its older name) and ``admin``, which
are condastore's role bindings as they are. Tokens are condastore's own
(``Authorization: Bearer``), so every route here and of our own API accepts them.
"""

from __future__ import annotations

import datetime as dt

import falcon

from condastore_core.auth.rbac import Forbidden, Principal, Role, RoleBinding
from condastore_core.errors import InvalidRequest
from condastore_core.service import users
from condastore_core.service.context import Context
from condastore_web.api.access import access_policy, principal, require_login, token_expiry
from condastore_web.compat.envelope import Body, ok, read_body
from condastore_web.compat.shapes import time

#: conda-store's permissions of each role (``conda_store_server/server/auth.py``).
VIEWER = ["environment::read", "namespace-role-mapping::read", "namespace::read"]
EDITOR = sorted(
    {
        *VIEWER,
        "build::cancel",
        "environment:create",
        "environment::update",
        "environment::solve",
        "setting::read",
    }
)
ADMIN = sorted(
    {
        *EDITOR,
        "build::delete",
        "environment::delete",
        "namespace::create",
        "namespace::delete",
        "namespace::update",
        "namespace-role-mapping::create",
        "namespace-role-mapping::update",
        "namespace-role-mapping::delete",
        "setting::update",
    }
)
PERMISSIONS = {Role.VIEWER: VIEWER, Role.EDITOR: EDITOR, Role.ADMIN: ADMIN}
DEFAULT_NAMESPACE = "default"


def parse_role(text: str) -> Role:
    """A conda-store role name; ``developer`` is what it called ``editor`` before."""
    try:
        return Role.parse("editor" if text.strip().lower() == "developer" else text)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def entity_roles(ctx: Context, req: falcon.Request) -> dict[str, list[str]]:
    """The caller's role on each pattern: their bindings, or their token's narrower ones."""
    who = principal(req)
    if who.scope is not None:
        bindings = list(who.scope)
    else:
        subjects = who.subjects()
        bindings = [b for b in access_policy(ctx, req).bindings if b.subject in subjects]
        if who.is_admin:
            bindings.append(RoleBinding("*/*", Role.ADMIN))
        if who.name is not None:
            bindings.append(RoleBinding(f"{who.name}/*", Role.ADMIN))
    best: dict[str, Role] = {}
    for b in bindings:
        best[b.pattern] = max(best.get(b.pattern, b.role), b.role)
    return {pattern: [str(role)] for pattern, role in sorted(best.items())}


def primary_namespace(who: Principal) -> str:
    return who.name or DEFAULT_NAMESPACE


class Permission:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        who = principal(req)
        roles = entity_roles(self.ctx, req)
        ok(
            resp,
            {
                "authenticated": not who.anonymous,
                "primary_namespace": primary_namespace(who),
                "entity_permissions": {
                    pattern: PERMISSIONS[parse_role(names[0])] for pattern, names in roles.items()
                },
                "entity_roles": roles,
                "expiration": time(token_expiry(req)),
            },
        )


class TokenRequest(Body):
    primary_namespace: str | None = None
    expiration: dt.datetime | None = None
    role_bindings: dict[str, list[str]] | None = None


class Token:
    """``POST /token/``: a token no broader and no longer-lived than the caller's own.

    conda-store answers 400 to a request that exceeds the caller's rights; so
    does this route, with condastore's reason.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        who = require_login(req)
        body = read_body(req, TokenRequest)
        bindings = None
        if body.role_bindings:
            bindings = [
                f"{pattern}={max(parse_role(r) for r in roles)}"
                for pattern, roles in sorted(body.role_bindings.items())
                if roles
            ]
        lifetime = None
        if body.expiration is not None:
            expiration = body.expiration
            if expiration.tzinfo is None:
                expiration = expiration.replace(tzinfo=dt.UTC)
            lifetime = expiration - dt.datetime.now(dt.UTC)
            expiry = token_expiry(req)
            if expiry is not None and expiration > expiry:
                raise InvalidRequest(
                    "Requested expiration of token is greater than current permissions"
                )
        try:
            issued = users.issue_token(
                self.ctx,
                who.name,  # type: ignore[arg-type]
                bindings=bindings,
                lifetime=lifetime,
                description="conda-store client",
                max_expiry=token_expiry(req),
                within=who.scope,
            )
        except Forbidden as exc:
            raise InvalidRequest(
                f"Requested role_bindings are not a subset of current permissions: {exc.message}"
            ) from None
        ok(resp, {"token": issued.token})
