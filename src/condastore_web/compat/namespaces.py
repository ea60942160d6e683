"""``/namespace/``: list, show, create, delete, and who else may work in a namespace.

conda-store's namespace role mappings ("the entities of namespace B get role R
in namespace A") are condastore role bindings of user B on ``A/*``: every user's
primary namespace is the one named after them. Managing them takes the admin
role on the namespace, as every change to it does here. Namespace metadata is
not kept by condastore: an empty one is accepted, any other refused.
"""

from __future__ import annotations

from typing import Any

import falcon

from condastore_core.auth.rbac import Action, Forbidden
from condastore_core.db.models import RoleBindingRecord
from condastore_core.errors import InvalidRequest, NotFound
from condastore_core.service import namespaces, users
from condastore_core.service.context import Context
from condastore_web.api.access import require, visibility
from condastore_web.compat.auth import parse_role
from condastore_web.compat.envelope import (
    WALK_LIMIT,
    Body,
    ack,
    ok,
    paginated,
    param,
    read_body,
    walk,
)
from condastore_web.compat.shapes import namespace, namespace_brief

MISSING = "namespace does not exist"


def guard(ctx: Context, req: falcon.Request, action: Action, name: str) -> None:
    require(ctx, req, action, name, hidden=NotFound(MISSING))
    namespaces.get_namespace(ctx, name)  # answers 404 for what does not exist


def mappings(ctx: Context, name: str) -> list[RoleBindingRecord]:
    """The user bindings that cover exactly the whole namespace."""
    return [
        r
        for r in users.list_role_bindings(ctx)
        if r.pattern == f"{name}/*" and r.subject.startswith("user:")
    ]


def mapping(name: str, row: RoleBindingRecord) -> dict[str, Any]:
    return {
        "id": row.id,
        "namespace": name,
        "other_namespace": row.subject.removeprefix("user:"),
        "role": row.role,
    }


def refuse_metadata(metadata: dict[str, Any] | None) -> None:
    if metadata:
        raise InvalidRequest("namespace metadata is not kept by this server")


class NamespaceList:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        seen = visibility(self.ctx, req)
        rows = walk(
            lambda cursor: namespaces.list_namespaces(
                self.ctx, limit=WALK_LIMIT, cursor=cursor, visible=seen
            )
        )
        paginated(req, resp, rows, namespace_brief, {"name": lambda n: n.name}, ["name"])


class NamespaceUpdate(Body):
    metadata: dict[str, Any] | None = None
    role_mappings: dict[str, list[str]] | None = None


class NamespaceItem:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, namespace_name: str) -> None:
        guard(self.ctx, req, Action.READ, namespace_name)
        ns = namespaces.get_namespace(self.ctx, namespace_name)
        roles = [
            {"id": r.id, "entity": r.subject.removeprefix("user:"), "role": r.role}
            for r in mappings(self.ctx, namespace_name)
        ]
        ok(resp, namespace(ns, roles))

    def on_post(self, req: falcon.Request, resp: falcon.Response, namespace_name: str) -> None:
        namespaces.check_namespace_name(namespace_name)
        refused = Forbidden(f"you may not create namespace {namespace_name!r}")
        require(self.ctx, req, Action.ADMIN, namespace_name, hidden=refused)
        namespaces.create_namespace(self.ctx, namespace_name)
        ack(resp)

    def on_put(self, req: falcon.Request, resp: falcon.Response, namespace_name: str) -> None:
        """Replace the namespace's role mappings (``{other_namespace: [role]}``)."""
        guard(self.ctx, req, Action.ADMIN, namespace_name)
        body = read_body(req, NamespaceUpdate)
        refuse_metadata(body.metadata)
        if body.role_mappings is not None:
            wanted = {
                other.split("/", 1)[0]: max(parse_role(r) for r in roles)
                for other, roles in body.role_mappings.items()
                if roles
            }
            for row in mappings(self.ctx, namespace_name):
                if row.subject.removeprefix("user:") not in wanted:
                    users.delete_role_binding(self.ctx, row.id)
            for other, role in wanted.items():
                users.add_role_binding(self.ctx, f"user:{other}", f"{namespace_name}/*", str(role))
        ack(resp)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, namespace_name: str) -> None:
        guard(self.ctx, req, Action.ADMIN, namespace_name)
        namespaces.delete_namespace(self.ctx, namespace_name)
        ack(resp)


class NamespaceMetadata(Body):
    metadata: dict[str, Any] | None = None


class Metadata:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_put(self, req: falcon.Request, resp: falcon.Response, namespace_name: str) -> None:
        guard(self.ctx, req, Action.ADMIN, namespace_name)
        refuse_metadata(read_body(req, NamespaceMetadata).metadata)
        ack(resp)


class Roles:
    """``/namespace/{ns}/roles``: every mapping of the namespace; delete them all."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, namespace_name: str) -> None:
        guard(self.ctx, req, Action.READ, namespace_name)
        ok(resp, [mapping(namespace_name, r) for r in mappings(self.ctx, namespace_name)])

    def on_delete(self, req: falcon.Request, resp: falcon.Response, namespace_name: str) -> None:
        guard(self.ctx, req, Action.ADMIN, namespace_name)
        for row in mappings(self.ctx, namespace_name):
            users.delete_role_binding(self.ctx, row.id)
        ack(resp)


class RoleChange(Body):
    other_namespace: str
    role: str


class RoleRemoval(Body):
    other_namespace: str


class Role:
    """``/namespace/{ns}/role``: one other namespace's role here."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, namespace_name: str) -> None:
        guard(self.ctx, req, Action.READ, namespace_name)
        other = param(req, "other_namespace")
        if not other:
            raise InvalidRequest("query parameter 'other_namespace' is required")
        for row in mappings(self.ctx, namespace_name):
            if row.subject == f"user:{other}":
                ok(resp, mapping(namespace_name, row))
                return
        raise NotFound("failed to find role")

    def on_post(self, req: falcon.Request, resp: falcon.Response, namespace_name: str) -> None:
        guard(self.ctx, req, Action.ADMIN, namespace_name)
        body = read_body(req, RoleChange)
        role = parse_role(body.role)
        users.add_role_binding(
            self.ctx, f"user:{body.other_namespace}", f"{namespace_name}/*", str(role)
        )
        ack(resp)

    on_put = on_post

    def on_delete(self, req: falcon.Request, resp: falcon.Response, namespace_name: str) -> None:
        guard(self.ctx, req, Action.ADMIN, namespace_name)
        body = read_body(req, RoleRemoval)
        for row in mappings(self.ctx, namespace_name):
            if row.subject == f"user:{body.other_namespace}":
                users.delete_role_binding(self.ctx, row.id)
        ack(resp)
