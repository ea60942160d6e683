"""Registry access: who is pulling or pushing, the token challenge, and RBAC per repository.

Repository ``team/app`` is environment ``app`` of namespace ``team`` for RBAC
(``team/tools/x`` is environment ``tools/x``; a one-part name is its own
namespace and environment). Pull needs viewer, push editor, delete admin.

A caller without credentials is challenged (401) for the whole scope the
operation needs: a push needs ``pull,push``, since clients read what is there
before they write. A registry token that lacks the action gets 403 with the
same challenge and ``error="insufficient_scope"`` (RFC 6750, section 3.1): a
client that keeps its token across a 401 (oras-py's token backend does) trades
it for a broader one on exactly that answer, while docker, podman and skopeo
ask for the scopes they need before the first request and never see it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import falcon

from condastore_core.auth.rbac import (
    ANONYMOUS_PRINCIPAL,
    Action,
    Principal,
    RoleBinding,
    Unauthenticated,
)
from condastore_core.errors import NotFound
from condastore_core.service import users
from condastore_core.service.context import Context
from condastore_core.service.registry import RegistryError

SERVICE = "condastore"
ACTIONS = {"pull": Action.READ, "push": Action.WRITE, "delete": Action.DELETE}
#: What a token must hold for each action; the challenge asks for all of it at once.
SCOPE_ACTIONS = {"pull": "pull", "push": "pull,push", "delete": "delete"}
#: The token scope of the repository list; a registry token holding it sees what its
#: user may pull.
CATALOG_SCOPE = "registry:catalog:*"
#: The user name of registry tokens issued to anonymous callers (a reserved name).
ANONYMOUS_TOKEN_USER = "anonymous"


def rbac_target(repository: str) -> tuple[str, str]:
    namespace, _, rest = repository.partition("/")
    return namespace, rest or namespace


@dataclass(frozen=True)
class Caller:
    principal: Principal
    #: Set for registry tokens: repository -> granted actions; RBAC is not asked again.
    granted: dict[str, set[str]] | None = None
    #: Registry tokens: whether the token holds the catalog scope.
    catalog: bool = False


def identify(ctx: Context, req: falcon.Request, authenticator: users.Authenticator) -> Caller:
    """The caller of a registry request; bad credentials are refused outright."""
    header = req.get_header("Authorization")
    if not header:
        return Caller(ANONYMOUS_PRINCIPAL)
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        claims = ctx.signer.verify(value)
        if claims.kind == "registry":
            granted: dict[str, set[str]] = {}
            catalog = False
            for entry in claims.access or ():
                if entry.get("type") == "repository":
                    granted.setdefault(entry["name"], set()).update(entry.get("actions", []))
                elif entry.get("type") == "registry" and entry.get("name") == "catalog":
                    catalog = bool(entry.get("actions"))
            scope = None
            if claims.scope is not None:  # the narrowed token it was traded for
                scope = tuple(RoleBinding.parse(b, f"user:{claims.user}") for b in claims.scope)
            return Caller(Principal(name=claims.user, scope=scope), granted, catalog)
        return Caller(users.principal_for_token(ctx, value)[0])
    if scheme.lower() == "basic":
        return Caller(users.principal_for_basic(ctx, value, authenticator, req.remote_addr)[0])
    raise Unauthenticated(f"unsupported authorization scheme {scheme!r}")


def allowed_actions(ctx: Context, principal: Principal, repository: str) -> set[str]:
    policy = users.access_policy(ctx)
    namespace, environment = rbac_target(repository)
    return {
        a for a, action in ACTIONS.items() if policy.can(principal, action, namespace, environment)
    }


def authorize(
    ctx: Context, req: falcon.Request, caller: Caller, repository: str, action: str
) -> None:
    """Allow ``action`` on ``repository`` or raise UNAUTHORIZED (with a challenge) or DENIED."""
    if caller.granted is not None:
        if action in caller.granted.get(repository, set()):
            return
        raise insufficient_scope(req, f"repository:{repository}:{SCOPE_ACTIONS[action]}")
    if action in allowed_actions(ctx, caller.principal, repository):
        return
    if caller.principal.anonymous:
        raise challenge(req, repository, action)
    raise RegistryError("DENIED", f"{caller.principal.name} may not {action} {repository}")


def pull_check(ctx: Context, caller: Caller) -> Callable[[str], bool]:
    """Whether the caller may pull a repository, for checks over many (mounts)."""
    if caller.granted is not None:
        granted = caller.granted
        return lambda repository: "pull" in granted.get(repository, set())
    policy = users.access_policy(ctx)
    principal = caller.principal
    return lambda repository: policy.can(principal, Action.READ, *rbac_target(repository))


def catalog_check(ctx: Context, req: falcon.Request, caller: Caller) -> Callable[[str], bool]:
    """Whether a repository shows in this caller's catalog: one they may pull.

    Anonymous callers are challenged first (as the reference registry does), so
    clients present their credentials; a registry token must hold the catalog
    scope and then stands for its user, as capped as the token it was traded for.
    """
    if caller.granted is None:
        if caller.principal.anonymous:
            raise Challenge(challenge_header(req, CATALOG_SCOPE), "authentication required to list")
        return pull_check(ctx, caller)
    if not caller.catalog:
        raise insufficient_scope(req, CATALOG_SCOPE)
    principal = ANONYMOUS_PRINCIPAL
    if caller.principal.name != ANONYMOUS_TOKEN_USER:
        try:
            user = users.get_user(ctx, caller.principal.name or "")
        except NotFound:
            raise Unauthenticated("the token's user no longer exists") from None
        principal = Principal(
            name=user.name,
            is_admin=user.is_admin,
            groups=frozenset(user.groups),
            scope=caller.principal.scope,
        )
    return pull_check(ctx, Caller(principal))


def challenge_header(req: falcon.Request, scope: str | None = None, error: str = "") -> str:
    realm = f"{req.prefix}/auth/token"
    header = f'Bearer realm="{realm}",service="{SERVICE}"'
    header += f',scope="{scope}"' if scope else ""
    return header + (f',error="{error}"' if error else "")


class Challenge(RegistryError):
    """An error answered with a ``WWW-Authenticate`` challenge: 401, or 403 for a token
    whose scope falls short."""

    def __init__(self, header: str, message: str, code: str = "UNAUTHORIZED") -> None:
        super().__init__(code, message)
        self.header = header


def challenge(req: falcon.Request, repository: str, action: str) -> Challenge:
    # The whole scope in one quoted parameter, ``pull,push``, as the token spec
    # shows it: oras-py reads a quoted value whole, commas included, and asks for
    # exactly it; containers/image (skopeo, podman) and docker ask for the scopes
    # they work out themselves and read only the realm and service from here.
    return Challenge(
        challenge_header(req, f"repository:{repository}:{SCOPE_ACTIONS[action]}"),
        f"authentication required to {action} {repository}",
    )


def insufficient_scope(req: falcon.Request, scope: str) -> Challenge:
    return Challenge(
        challenge_header(req, scope, error="insufficient_scope"),
        f"the token does not grant {scope}; ask the token endpoint for it",
        code="DENIED",
    )
