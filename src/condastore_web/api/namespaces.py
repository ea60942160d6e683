"""``/api/v1/namespaces``: list, create, show, delete."""

from __future__ import annotations

import falcon

from condastore_core.auth.rbac import Action, Forbidden
from condastore_core.service import namespaces
from condastore_core.service.context import Context
from condastore_web.api import serialize
from condastore_web.api.access import require, visibility
from condastore_web.api.bodies import NamespaceCreate, read_body
from condastore_web.api.common import int_param


def hidden(namespace: str) -> str:
    return f"namespace {namespace!r} does not exist"


class NamespaceCollection:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = namespaces.list_namespaces(
            self.ctx,
            limit=int_param(req, "limit"),
            cursor=req.get_param("cursor"),
            visible=visibility(self.ctx, req),
        )
        resp.media = serialize.page(page, serialize.namespace)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_body(req, NamespaceCreate)
        namespaces.check_namespace_name(body.name)
        refused = Forbidden(f"you may not create namespace {body.name!r}")
        require(self.ctx, req, Action.ADMIN, body.name, hidden=refused)
        resp.media = serialize.namespace(namespaces.create_namespace(self.ctx, body.name))
        resp.status = falcon.HTTP_201


class NamespaceItem:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, namespace: str) -> None:
        require(self.ctx, req, Action.READ, namespace, hidden=hidden(namespace))
        resp.media = serialize.namespace(namespaces.get_namespace(self.ctx, namespace))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, namespace: str) -> None:
        require(self.ctx, req, Action.ADMIN, namespace, hidden=hidden(namespace))
        namespaces.delete_namespace(self.ctx, namespace)
        resp.status = falcon.HTTP_204
