"""The management page: your tokens and password, the namespaces you administer and their bindings.

Administrators see every namespace; a namespace's owner (an ``admin`` binding
on it, as every user has on their own) sees and manages that namespace. The
forms post to ``/ui/do/...`` (``ui/forms.py``) and work without JavaScript.
"""

from __future__ import annotations

import falcon

from condastore_core.auth.rbac import Action
from condastore_core.service import accounts, namespaces
from condastore_core.service.context import Context
from condastore_web.api.access import access_policy, principal
from condastore_web.api.access import visibility as visible
from condastore_web.api.sessions import login_url
from condastore_web.ui.render import render

#: How many namespaces, tokens and bindings one page shows.
PAGE = 200


class ManagePage:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        who = principal(req)
        if who.anonymous:
            raise falcon.HTTPFound(login_url(req.relative_uri))
        policy = access_policy(self.ctx, req)
        names = sorted(
            n.name
            for n in namespaces.list_namespaces(
                self.ctx, limit=PAGE, visible=visible(self.ctx, req)
            ).items
        )
        owned = [n for n in names if policy.can(who, Action.ADMIN, n, None)]
        bindings = {
            n: accounts.list_role_bindings(self.ctx, namespace=n, limit=PAGE).items for n in owned
        }
        tokens = accounts.list_tokens(self.ctx, str(who.name), limit=PAGE).items
        render(
            req,
            resp,
            "manage.html",
            owned=owned,
            bindings=bindings,
            tokens=tokens,
            current_token=who.token_id,
            is_admin=who.is_admin and who.scope is None,
        )
