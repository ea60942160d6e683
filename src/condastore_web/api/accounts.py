"""``/api/v1/auth``, ``/tokens``, ``/users``, ``/role-bindings``, ``/policies``."""

from __future__ import annotations

import datetime as dt

import falcon
from pydantic import Field

from condastore_core.auth.rbac import Action
from condastore_core.service import policies, users
from condastore_core.service.context import Context
from condastore_web.api.access import require, require_admin, require_login, token_expiry
from condastore_web.api.bodies import Body, read_body
from condastore_web.api.sessions import end_session, start_session


class Login(Body):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class TokenRequest(Body):
    bindings: list[str] | None = None
    expires_in: int | None = Field(default=None, ge=1, le=10**9)
    description: str = Field(default="", max_length=256)


class UserCreate(Body):
    name: str = Field(max_length=64)
    password: str | None = Field(default=None, max_length=1024)
    admin: bool = False
    groups: list[str] = []


class RoleBindingCreate(Body):
    subject: str = Field(max_length=128)
    pattern: str = Field(max_length=256)
    role: str = Field(max_length=16)


class PolicyUpdate(Body):
    scope: str = Field(default="", max_length=256)
    policy: dict


def user_json(user) -> dict:  # type: ignore[no-untyped-def]
    return {"name": user.name, "is_admin": user.is_admin, "groups": list(user.groups)}


def token_json(issued: users.IssuedToken) -> dict:
    return {
        "token": issued.token,
        "token_id": issued.token_id,
        "expires_at": issued.expires_at.isoformat().replace("+00:00", "Z"),
        "scope": list(issued.scope) if issued.scope is not None else None,
    }


class LoginResource:
    def __init__(self, ctx: Context, authenticator: users.Authenticator) -> None:
        self.ctx = ctx
        self.authenticator = authenticator

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_body(req, Login)
        name = users.check_password(
            self.ctx, self.authenticator, body.username, body.password, req.remote_addr
        )
        issued = start_session(self.ctx, req, resp, name)
        resp.media = {**token_json(issued), "user": name}


class LogoutResource:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        who = require_login(req)
        if who.token_id is not None:
            users.revoke_token(self.ctx, who.token_id)
        end_session(resp)
        resp.status = falcon.HTTP_204


class MeResource:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        who = require_login(req)
        resp.media = {
            "name": who.name,
            "is_admin": who.is_admin,
            "groups": sorted(who.groups),
            "scope": [str(b) for b in who.scope] if who.scope is not None else None,
        }


class TokenCollection:
    """``POST /tokens``: a token for the caller, narrowed to bindings, never broader or longer."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        who = require_login(req)
        body = read_body(req, TokenRequest)
        issued = users.issue_token(
            self.ctx,
            who.name,  # type: ignore[arg-type]
            bindings=body.bindings,
            lifetime=dt.timedelta(seconds=body.expires_in) if body.expires_in else None,
            description=body.description,
            max_expiry=token_expiry(req),
            within=who.scope,
        )
        resp.media = token_json(issued)
        resp.status = falcon.HTTP_201


class UserCollection:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        require_admin(req)
        resp.media = {"items": [user_json(u) for u in users.list_users(self.ctx)]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        require_admin(req)
        body = read_body(req, UserCreate)
        user = users.create_user(
            self.ctx, body.name, body.password, admin=body.admin, groups=body.groups
        )
        resp.media = user_json(user)
        resp.status = falcon.HTTP_201


class UserItem:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        require_admin(req)
        users.delete_user(self.ctx, name)
        resp.status = falcon.HTTP_204


class RoleBindingCollection:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        require_admin(req)
        resp.media = {
            "items": [
                {"id": r.id, "subject": r.subject, "pattern": r.pattern, "role": r.role}
                for r in users.list_role_bindings(self.ctx)
            ]
        }

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        require_admin(req)
        body = read_body(req, RoleBindingCreate)
        row = users.add_role_binding(self.ctx, body.subject, body.pattern, body.role)
        resp.media = {
            "id": row.id,
            "subject": row.subject,
            "pattern": row.pattern,
            "role": row.role,
        }
        resp.status = falcon.HTTP_201


class RoleBindingItem:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_delete(self, req: falcon.Request, resp: falcon.Response, binding_id: int) -> None:
        require_admin(req)
        users.delete_role_binding(self.ctx, binding_id)
        resp.status = falcon.HTTP_204


class PolicyResource:
    """``GET /policies?scope=ns[/env]`` and ``PUT /policies``; the global scope is ``""``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _check(self, req: falcon.Request, scope: str, action: Action) -> None:
        policies.check_scope(scope)
        if not scope:
            require_admin(req) if action is Action.ADMIN else require_login(req)
            return
        ns, _, env = scope.partition("/")
        require(self.ctx, req, action, ns, env or None, hidden=f"namespace {ns!r} does not exist")

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        scope = req.get_param("scope", default="")
        self._check(req, scope, Action.READ)
        policy = policies.get_policy(self.ctx, scope)
        resp.media = {"scope": scope, "policy": policy.model_dump(exclude_none=True, mode="json")}

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_body(req, PolicyUpdate)
        self._check(req, body.scope, Action.ADMIN)
        policy = policies.set_policy(self.ctx, body.scope, body.policy)
        resp.media = {
            "scope": body.scope,
            "policy": policy.model_dump(exclude_none=True, mode="json"),
        }
