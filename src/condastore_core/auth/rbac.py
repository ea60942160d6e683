"""Role-based access control over ``namespace/environment`` patterns.

A :class:`RoleBinding` grants a role on a pattern (``*/*``, ``team-*/*``,
``alice/*``) to a subject (``user:alice``, ``group:devs``, ``anonymous``, or
``authenticated``). A principal's role on an environment is the highest role
any of its bindings grants there; a narrowed token further caps it by its own
bindings (it can only ever lose rights). Every user is admin of the namespace
named after them.

Roles are ordered: viewer < editor < admin.

* viewer: read environments, builds, artifacts; pull images
* editor: also create/update environments, rebuild, cancel, roll back; push
* admin:  also delete, manage namespaces, role bindings and settings
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from condastore_core.errors import CondastoreError


class Forbidden(CondastoreError):
    code = "FORBIDDEN"


class Unauthenticated(CondastoreError):
    code = "UNAUTHORIZED"


class Role(enum.IntEnum):
    VIEWER = 1
    EDITOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {text!r}: use viewer, editor or admin") from None

    def __str__(self) -> str:
        return self.name.lower()


class Action(enum.Enum):
    """What a request does; each needs a minimum role."""

    READ = Role.VIEWER
    WRITE = Role.EDITOR
    DELETE = Role.ADMIN
    ADMIN = Role.ADMIN


_PATTERN = re.compile(r"^[A-Za-z0-9._*?\[\]-]+/[A-Za-z0-9._*?\[\]-]+$")
ANONYMOUS = "anonymous"
AUTHENTICATED = "authenticated"


@dataclass(frozen=True)
class RoleBinding:
    pattern: str
    role: Role
    subject: str = AUTHENTICATED

    def __post_init__(self) -> None:
        if not _PATTERN.match(self.pattern):
            raise ValueError(
                f"invalid pattern {self.pattern!r}: expected NAMESPACE-GLOB/ENVIRONMENT-GLOB"
            )

    @classmethod
    def parse(cls, text: str, subject: str = AUTHENTICATED) -> RoleBinding:
        """``'team-*/*=editor'`` -> binding."""
        pattern, sep, role = text.partition("=")
        if not sep:
            raise ValueError(f"invalid binding {text!r}: expected PATTERN=ROLE")
        return cls(pattern.strip(), Role.parse(role), subject)

    def __str__(self) -> str:
        return f"{self.pattern}={self.role}"

    def matches(self, namespace: str, environment: str | None) -> bool:
        """Does this binding cover ``namespace/environment``?

        ``environment=None`` asks about the namespace itself, which only a
        binding covering all of its environments (``ns/*``) does.
        """
        ns_glob, env_glob = self.pattern.split("/", 1)
        if not fnmatchcase(namespace, ns_glob):
            return False
        if environment is None:
            return env_glob == "*"
        return fnmatchcase(environment, env_glob)

    def within(self, other: RoleBinding) -> bool:
        """True when this binding grants nothing ``other`` does not (for narrowing tokens)."""
        if self.role > other.role:
            return False
        ns, env = self.pattern.split("/", 1)
        ons, oenv = other.pattern.split("/", 1)
        return _glob_within(ns, ons) and _glob_within(env, oenv)


def _glob_within(inner: str, outer: str) -> bool:
    """Conservative: every name ``inner`` matches is matched by ``outer``."""
    if outer == "*" or inner == outer:
        return True
    if any(c in inner for c in "*?["):
        # inner is a pattern: accept only a prefix pattern inside a prefix pattern.
        if outer.endswith("*") and not any(c in outer[:-1] for c in "*?["):
            return inner.startswith(outer[:-1]) and not any(
                c in inner[: len(outer) - 1] for c in "*?["
            )
        return False
    return fnmatchcase(inner, outer)


@dataclass(frozen=True)
class Principal:
    """Someone making a request, with everything needed to decide what they may do."""

    name: str | None  # None: anonymous
    is_admin: bool = False
    groups: frozenset[str] = frozenset()
    #: When set (a narrowed token), rights are capped to these bindings.
    scope: tuple[RoleBinding, ...] | None = None
    token_id: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.name is None

    def subjects(self) -> set[str]:
        if self.name is None:
            return {ANONYMOUS}
        return {ANONYMOUS, AUTHENTICATED, f"user:{self.name}"} | {f"group:{g}" for g in self.groups}


ANONYMOUS_PRINCIPAL = Principal(name=None)


@dataclass
class AccessPolicy:
    """All role bindings; answers "what role has this principal here?"."""

    bindings: list[RoleBinding] = field(default_factory=list)

    def role_for(
        self, principal: Principal, namespace: str, environment: str | None = None
    ) -> Role | None:
        role = self._base_role(principal, namespace, environment)
        if role is None or principal.scope is None:
            return role
        capped = [b.role for b in principal.scope if b.matches(namespace, environment)]
        return min(role, max(capped)) if capped else None

    def _base_role(
        self, principal: Principal, namespace: str, environment: str | None
    ) -> Role | None:
        if principal.is_admin:
            return Role.ADMIN
        best: Role | None = None
        if principal.name is not None and namespace == principal.name:
            best = Role.ADMIN  # the personal namespace
        subjects = principal.subjects()
        for b in self.bindings:
            if b.subject in subjects and b.matches(namespace, environment):
                best = b.role if best is None else max(best, b.role)
        return best

    def can(
        self, principal: Principal, action: Action, namespace: str, environment: str | None = None
    ) -> bool:
        role = self.role_for(principal, namespace, environment)
        return role is not None and role >= action.value

    def require(
        self, principal: Principal, action: Action, namespace: str, environment: str | None = None
    ) -> None:
        """Raise Unauthenticated (anonymous) or Forbidden unless allowed."""
        if self.can(principal, action, namespace, environment):
            return
        target = namespace if environment is None else f"{namespace}/{environment}"
        if principal.anonymous:
            raise Unauthenticated(f"log in to {action.name.lower()} {target}")
        raise Forbidden(f"{principal.name} may not {action.name.lower()} {target}")

    def can_see_any(self, principal: Principal, namespace: str) -> bool:
        """Whether a namespace shows in lists: any read right inside it."""
        if self.role_for(principal, namespace, None) is not None:
            return True
        subjects = principal.subjects()
        candidates: Iterable[RoleBinding] = (
            b
            for b in self.bindings
            if b.subject in subjects and fnmatchcase(namespace, b.pattern.split("/", 1)[0])
        )
        if principal.scope is not None:
            return any(candidates) and any(
                fnmatchcase(namespace, s.pattern.split("/", 1)[0]) for s in principal.scope
            )
        return any(candidates)


def narrow(
    granted: Sequence[RoleBinding],
    requested: Sequence[RoleBinding],
    holder_is_admin: bool,
    holder_name: str,
) -> tuple[RoleBinding, ...]:
    """Check that a token's requested bindings stay within what its holder has.

    ``granted`` are the holder's own bindings (plus their personal namespace);
    admins may request anything. Raises Forbidden on any escalation.
    """
    if holder_is_admin:
        return tuple(requested)
    own = [*granted, RoleBinding(f"{holder_name}/*", Role.ADMIN, f"user:{holder_name}")]
    for req in requested:
        if not any(req.within(g) for g in own):
            raise Forbidden(f"a token cannot grant {req}: it exceeds your own rights")
    return tuple(requested)
