"""Registry access: who is pulling or pushing, the token challenge, and RBAC per repository.

Repository ``team/app`` is environment ``app`` of namespace ``team`` for RBAC
(``team/tools/x`` is environment ``tools/x``; a one-part name is its own
namespace and environment). Pull needs viewer, push editor, delete admin.
"""

from __future__ import annotations

from dataclasses import dataclass

import falcon

from condastore_core.auth.rbac import ANONYMOUS_PRINCIPAL, Action, Principal, Unauthenticated
from condastore_core.service import users
from condastore_core.service.context import Context
from condastore_core.service.registry import RegistryError

SERVICE = "condastore"
ACTIONS = {"pull": Action.READ, "push": Action.WRITE, "delete": Action.DELETE}


def rbac_target(repository: str) -> tuple[str, str]:
    namespace, _, rest = repository.partition("/")
    return namespace, rest or namespace


@dataclass(frozen=True)
class Caller:
    principal: Principal
    #: Set for registry tokens: repository -> granted actions; RBAC is not asked again.
    granted: dict[str, set[str]] | None = None


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
            for entry in claims.access or ():
                if entry.get("type") == "repository":
                    granted.setdefault(entry["name"], set()).update(entry.get("actions", []))
            return Caller(Principal(name=claims.user), granted)
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
        raise challenge(req, repository, action)
    if action in allowed_actions(ctx, caller.principal, repository):
        return
    if caller.principal.anonymous:
        raise challenge(req, repository, action)
    raise RegistryError("DENIED", f"{caller.principal.name} may not {action} {repository}")


def challenge_header(req: falcon.Request, scope: str | None = None) -> str:
    realm = f"{req.prefix}/auth/token"
    header = f'Bearer realm="{realm}",service="{SERVICE}"'
    return header + (f',scope="{scope}"' if scope else "")


class Challenge(RegistryError):
    def __init__(self, header: str, message: str) -> None:
        super().__init__("UNAUTHORIZED", message)
        self.header = header


def challenge(req: falcon.Request, repository: str, action: str) -> Challenge:
    # One action per scope: some clients split the header at every comma. A push
    # token also carries pull where RBAC allows it (see the token endpoint).
    return Challenge(
        challenge_header(req, f"repository:{repository}:{action}"),
        f"authentication required to {action} {repository}",
    )
