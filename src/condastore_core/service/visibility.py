"""What a principal may see in lists, as a SQL filter plus an exact check.

Role-binding globs become SQL ``LIKE`` patterns that select a superset
(``[abc]`` turns into "any one character"); the exact RBAC check then drops
what the superset let through, so pagination stays in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, false, or_, true

from condastore_core.auth.rbac import AccessPolicy, Action, Principal, RoleBinding


def glob_to_like(glob: str) -> str:
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append("%")
        elif c == "?":
            out.append("_")
        elif c == "[":
            end = glob.find("]", i + 1)
            out.append("_" if end != -1 else "[")
            i = end if end != -1 else i
        elif c in "%_\\":
            out.append("\\" + c)
        else:
            out.append(c)
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class Visibility:
    policy: AccessPolicy
    principal: Principal

    def _patterns(self, bindings: list[RoleBinding]) -> list[tuple[str, str]]:
        return [tuple(b.pattern.split("/", 1)) for b in bindings]  # type: ignore[misc]

    def clause(self, namespace_col: Any, environment_col: Any | None = None) -> Any:
        """A SQL condition true for every row the principal might read (and some more)."""

        def match(patterns: list[tuple[str, str]]) -> Any:
            terms = []
            for ns_glob, env_glob in patterns:
                term = namespace_col.like(glob_to_like(ns_glob), escape="\\")
                if environment_col is not None and env_glob != "*":
                    term = and_(term, environment_col.like(glob_to_like(env_glob), escape="\\"))
                terms.append(term)
            return or_(*terms) if terms else false()

        principal = self.principal
        if principal.is_admin:
            own: Any = true()
        else:
            subjects = principal.subjects()
            patterns = self._patterns([b for b in self.policy.bindings if b.subject in subjects])
            if principal.name is not None:
                patterns.append((principal.name, "*"))
            own = match(patterns)
        if principal.scope is None:
            return own
        return and_(own, match(self._patterns(list(principal.scope))))

    def can_read(self, namespace: str, environment: str | None = None) -> bool:
        if environment is None:
            return self.policy.can_see_any(self.principal, namespace)
        return self.policy.can(self.principal, Action.READ, namespace, environment)
