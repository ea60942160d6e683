"""Policies stored per level (global ``""``, ``namespace``, ``namespace/environment``)."""

from __future__ import annotations

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from condastore_core.channels import ChannelGate
from condastore_core.db.models import Build, BuildStatus, Environment, PolicyRecord, utcnow
from condastore_core.errors import InvalidRequest
from condastore_core.policy import Policy, merge
from condastore_core.service.context import Context
from condastore_core.service.namespaces import check_namespace_name, find_namespace


def check_scope(scope: str) -> str:
    """``""``, ``namespace`` or ``namespace/environment``."""
    if scope:
        for part in scope.split("/", 1):
            check_namespace_name(part)
    return scope


def effective_policy(session: Session, namespace: str, environment: str) -> Policy:
    scopes = ["", namespace, f"{namespace}/{environment}"]
    rows = {
        r.scope: Policy(**r.policy)
        for r in session.scalars(select(PolicyRecord).where(PolicyRecord.scope.in_(scopes)))
    }
    return merge(*(rows.get(s) for s in scopes))


def namespace_gate(ctx: Context, namespace: str, environment: str = "") -> ChannelGate:
    """The server's channel gate, narrowed by the policies of ``namespace`` (and environment)."""
    with ctx.sessions() as session:
        policy = effective_policy(session, namespace, environment)
    return ctx.solver.gate.narrowed(policy.allowed_channels)


def get_policy(ctx: Context, scope: str) -> Policy:
    check_scope(scope)
    with ctx.sessions() as session:
        row = session.scalar(select(PolicyRecord).where(PolicyRecord.scope == scope))
        return Policy(**row.policy) if row is not None else Policy()


def list_policies(ctx: Context) -> list[tuple[str, Policy]]:
    """Every stored policy by scope (global first), as the admin page shows them."""
    with ctx.sessions() as session:
        rows = session.scalars(select(PolicyRecord).order_by(PolicyRecord.scope)).all()
        return [(r.scope, Policy(**r.policy)) for r in rows if r.policy]


def set_policy(ctx: Context, scope: str, data: dict) -> Policy:
    """Store the policy of ``scope``; its namespace must exist (a typo would never apply)."""
    check_scope(scope)
    try:
        policy = Policy(**data)
    except ValidationError as exc:
        raise InvalidRequest(f"invalid policy: {exc.errors()[0]['msg']}") from None
    with ctx.sessions.begin() as session:
        if scope:
            find_namespace(session, scope.partition("/")[0])
        row = session.scalar(select(PolicyRecord).where(PolicyRecord.scope == scope))
        if row is None:
            row = PolicyRecord(scope=scope, policy={})
            session.add(row)
        row.policy = policy.model_dump(exclude_none=True, mode="json")
        row.updated_at = utcnow()
    return policy


def enforce_retention(session: Session, env: Environment) -> list[int]:
    """Soft-delete the oldest completed builds beyond ``max_builds_kept`` (never the current)."""
    keep = effective_policy(session, env.namespace.name, env.name).max_builds_kept
    if keep is None:
        return []
    completed = session.scalars(
        select(Build)
        .where(
            Build.environment_id == env.id,
            Build.status == BuildStatus.COMPLETED,
            Build.deleted_at.is_(None),
        )
        .order_by(Build.id.desc())
    ).all()
    dropped = []
    for build in completed[keep:]:
        if build.id != env.current_build_id:
            build.deleted_at = utcnow()
            dropped.append(build.id)
    return dropped
