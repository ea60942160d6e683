"""``/api/v1/auth``, ``/tokens``, ``/users``, ``/role-bindings``, ``/policies``.

Users are managed by administrators; a token by its owner (or an administrator);
role bindings confined to one namespace (``team/*``) by that namespace's
administrators as well, the way they manage everything else in it.
"""

from __future__ import annotations

import datetime as dt

import falcon
from pydantic import Field

from condastore_core.auth.rbac import Action, Forbidden
from condastore_core.errors import Conflict, InvalidRequest, NotFound
from condastore_core.service import accounts, policies, users
from condastore_core.service.context import Context
from condastore_web.api.access import (
    require,
    require_admin,
    require_login,
    token_expiry,
)
from condastore_web.api.bodies import Body, read_body
from condastore_web.api.common import int_param
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


class UserUpdate(Body):
    disabled: bool | None = None
    admin: bool | None = None


class PasswordChange(Body):
    password: str = Field(max_length=1024)


class PolicyUpdate(Body):
    scope: str = Field(default="", max_length=256)
    policy: dict


def user_json(user) -> dict:  # type: ignore[no-untyped-def]
    return {
        "name": user.name,
        "is_admin": user.is_admin,
        "groups": list(user.groups),
        "disabled": user.disabled_at is not None,
    }


def _time(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat().replace("+00:00", "Z")


def token_record_json(record) -> dict:  # type: ignore[no-untyped-def]
    return {
        "token_id": record.jti,
        "kind": record.kind,
        "description": record.description,
        "scope": record.scope,
        "issued_at": _time(record.issued_at),
        "expires_at": _time(record.expires_at),
        "revoked": record.revoked_at is not None,
    }


def binding_json(row) -> dict:  # type: ignore[no-untyped-def]
    return {"id": row.id, "subject": row.subject, "pattern": row.pattern, "role": row.role}


def may_manage_binding(ctx: Context, req: falcon.Request, pattern: str) -> None:
    """Administrators manage every binding; a namespace's administrators those confined to it."""
    who = require_login(req)
    if who.is_admin and who.scope is None:
        return
    namespace = accounts.binding_namespace(pattern)
    if namespace is None:
        raise Forbidden("only an administrator may bind roles across namespaces")
    require(
        ctx, req, Action.ADMIN, namespace, hidden=Forbidden(f"you do not administer {namespace!r}")
    )


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
    """``POST /tokens``: a token for the caller, narrowed to bindings, never broader or longer.

    ``GET /tokens``: the caller's live tokens (an administrator may ask for ``?user=``'s).
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        who = require_login(req)
        owner = req.get_param("user") or who.name
        if owner != who.name:
            require_admin(req)
        page = accounts.list_tokens(
            self.ctx,
            owner,  # type: ignore[arg-type]
            limit=int_param(req, "limit"),
            cursor=req.get_param("cursor"),
            include_revoked=req.get_param_as_bool("all", default=False),
        )
        resp.media = {
            "items": [token_record_json(t) for t in page.items],
            "next_cursor": page.next_cursor,
        }

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


class TokenItem:
    """``DELETE /tokens/{token_id}``: revoked by its owner or an administrator."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_delete(self, req: falcon.Request, resp: falcon.Response, token_id: str) -> None:
        who = require_login(req)
        try:
            owner = accounts.token_owner(self.ctx, token_id)
        except NotFound:
            owner = None
        if owner != who.name and not (who.is_admin and who.scope is None):
            raise NotFound(f"token {token_id!r} does not exist")
        accounts.revoke(self.ctx, token_id)
        resp.status = falcon.HTTP_204


class UserCollection:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        require_admin(req)
        page = accounts.list_users(
            self.ctx, limit=int_param(req, "limit"), cursor=req.get_param("cursor")
        )
        resp.media = {"items": [user_json(u) for u in page.items], "next_cursor": page.next_cursor}

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

    def on_patch(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        """``{"disabled": true|false}``: disable (tokens revoked) or enable an account."""
        who = require_admin(req)
        body = read_body(req, UserUpdate)
        if body.disabled and name == who.name:
            raise Conflict("you cannot disable your own account")
        if body.admin is not None:
            raise InvalidRequest("administrators are made with `condastore user add --admin`")
        user = accounts.set_disabled(self.ctx, name, bool(body.disabled))
        resp.media = user_json(user)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        who = require_admin(req)
        if name == who.name:
            raise Conflict("you cannot delete your own account")
        accounts.delete_user(self.ctx, name)
        resp.status = falcon.HTTP_204


class UserPassword:
    """``PUT /users/{name}/password``: an administrator, or the user with an unnarrowed token."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        who = require_login(req)
        if who.name != name or who.scope is not None:
            require_admin(req)
        body = read_body(req, PasswordChange)
        users.set_password(self.ctx, name, body.password)
        resp.status = falcon.HTTP_204


class RoleBindingCollection:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Every binding for an administrator; ``?namespace=`` for that namespace's."""
        namespace = req.get_param("namespace")
        who = require_login(req)
        if namespace and not (who.is_admin and who.scope is None):
            require(self.ctx, req, Action.ADMIN, namespace, hidden=hidden_namespace(namespace))
        elif not namespace:
            require_admin(req)
        page = accounts.list_role_bindings(
            self.ctx,
            namespace=namespace,
            limit=int_param(req, "limit"),
            cursor=req.get_param("cursor"),
        )
        resp.media = {
            "items": [binding_json(r) for r in page.items],
            "next_cursor": page.next_cursor,
        }

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_body(req, RoleBindingCreate)
        may_manage_binding(self.ctx, req, body.pattern)
        row = users.add_role_binding(self.ctx, body.subject, body.pattern, body.role)
        resp.media = binding_json(row)
        resp.status = falcon.HTTP_201


class RoleBindingItem:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_delete(self, req: falcon.Request, resp: falcon.Response, binding_id: int) -> None:
        require_login(req)
        try:
            row = accounts.get_role_binding(self.ctx, binding_id)
        except NotFound:
            require_admin(req)  # who may not see every binding learns nothing of ids
            raise
        may_manage_binding(self.ctx, req, row.pattern)
        users.delete_role_binding(self.ctx, binding_id)
        resp.status = falcon.HTTP_204


def hidden_namespace(namespace: str) -> str:
    return f"namespace {namespace!r} does not exist"


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
