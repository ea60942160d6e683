"""``GET /auth/token``: the token endpoint docker, podman, skopeo and oras ask after a 401.

The caller authenticates with Basic (password or API token), a Bearer API
token, or not at all; the token grants, per requested repository, the
requested actions that RBAC allows them, and nothing else.
"""

from __future__ import annotations

import datetime as dt

import falcon

from condastore_core.auth.rbac import ANONYMOUS_PRINCIPAL
from condastore_core.service import users
from condastore_core.service.context import Context
from condastore_core.service.registry import RegistryError, check_name
from condastore_registry.access import ANONYMOUS_TOKEN_USER, CATALOG_SCOPE, allowed_actions

TOKEN_LIFETIME = dt.timedelta(minutes=5)


def parse_scope(scope: str) -> tuple[str, set[str]] | None:
    """``repository:team/app:pull,push`` -> (``team/app``, {pull, push}); other types: None."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if kind != "repository" or not name:
        return None
    check_name(name)
    return name, {a for a in actions.split(",") if a in ("pull", "push", "delete")}


class TokenResource:
    def __init__(self, ctx: Context, authenticator: users.Authenticator) -> None:
        self.ctx = ctx
        self.authenticator = authenticator

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = ANONYMOUS_PRINCIPAL
        header = req.get_header("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            principal = users.principal_for_basic(
                self.ctx, value.strip(), self.authenticator, req.remote_addr
            )[0]
        elif scheme.lower() == "bearer":
            principal = users.principal_for_token(self.ctx, value.strip())[0]
        access = []
        for scope in req.get_param_as_list("scope") or []:
            for one in scope.split(" "):
                if one == CATALOG_SCOPE:  # the catalog is filtered by what the user may pull
                    access.append({"type": "registry", "name": "catalog", "actions": ["*"]})
                    continue
                parsed = parse_scope(one) if one else None
                if parsed is None:
                    continue
                name, wanted = parsed
                if "push" in wanted:  # pushing means reading what is there too
                    wanted = wanted | {"pull"}
                granted = wanted & allowed_actions(self.ctx, principal, name)
                access.append({"type": "repository", "name": name, "actions": sorted(granted)})
        # A narrowed caller's registry token stays as narrow (the catalog reads it).
        narrowed = [str(b) for b in principal.scope] if principal.scope is not None else None
        token, claims = self.ctx.signer.issue(
            principal.name or ANONYMOUS_TOKEN_USER,
            TOKEN_LIFETIME,
            kind="registry",
            access=access,
            scope=narrowed,
        )
        resp.media = {
            "token": token,
            "access_token": token,
            "expires_in": int(TOKEN_LIFETIME.total_seconds()),
            "issued_at": claims.issued_at.isoformat().replace("+00:00", "Z"),
        }


__all__ = ["RegistryError", "TokenResource"]
