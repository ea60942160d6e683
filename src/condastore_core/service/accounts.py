"""Managing accounts: users listed, disabled and enabled; tokens listed and revoked; bindings paged.

``users.py`` creates accounts and turns credentials into principals; this module
is what an administrator (or a token's owner) does with them afterwards, one
page at a time, as the CLI and the admin pages show them.
"""

from __future__ import annotations

from sqlalchemy import select

from condastore_core.db.models import RoleBindingRecord, TokenRecord, User, utcnow
from condastore_core.errors import Conflict, NotFound
from condastore_core.service.context import Context
from condastore_core.service.pagination import Page, paginate


def _any_user(session, name: str) -> User:  # type: ignore[no-untyped-def]
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"user {name!r} does not exist")
    return user


def list_users(
    ctx: Context,
    *,
    limit: int | None = None,
    cursor: str | None = None,
    include_disabled: bool = True,
) -> Page[User]:
    with ctx.sessions() as session:
        stmt = select(User)
        if not include_disabled:
            stmt = stmt.where(User.disabled_at.is_(None))
        return paginate(session, stmt, User.id, limit, cursor)


def set_disabled(ctx: Context, name: str, disabled: bool) -> User:
    """Disable (its tokens revoked, its logins refused) or enable an account; rows are kept."""
    with ctx.sessions.begin() as session:
        user = _any_user(session, name)
        if disabled:
            user.disabled_at = user.disabled_at or utcnow()
            for token in session.scalars(
                select(TokenRecord).where(
                    TokenRecord.user_id == user.id, TokenRecord.revoked_at.is_(None)
                )
            ):
                token.revoked_at = utcnow()
        else:
            user.disabled_at = None
        session.flush()
        return user


def delete_user(ctx: Context, name: str) -> None:
    """Disable the account for good: its tokens revoked and its role bindings removed.

    The row stays (builds name who submitted them), so the name is not reused.
    """
    set_disabled(ctx, name, True)
    with ctx.sessions.begin() as session:
        for row in session.scalars(
            select(RoleBindingRecord).where(RoleBindingRecord.subject == f"user:{name}")
        ):
            session.delete(row)


def list_tokens(
    ctx: Context,
    user: str,
    *,
    limit: int | None = None,
    cursor: str | None = None,
    include_revoked: bool = False,
) -> Page[TokenRecord]:
    """``user``'s tokens, newest first (API tokens and browser sessions alike)."""
    with ctx.sessions() as session:
        owner = _any_user(session, user)
        stmt = select(TokenRecord).where(TokenRecord.user_id == owner.id)
        if not include_revoked:
            stmt = stmt.where(TokenRecord.revoked_at.is_(None), TokenRecord.expires_at > utcnow())
        return paginate(session, stmt, TokenRecord.id, limit, cursor)


def token_owner(ctx: Context, token_id: str) -> str:
    """The name of the user a token (by its id) was issued to."""
    with ctx.sessions() as session:
        row = session.execute(
            select(User.name)
            .join(TokenRecord, TokenRecord.user_id == User.id)
            .where(TokenRecord.jti == token_id)
        ).first()
    if row is None:
        raise NotFound(f"token {token_id!r} does not exist")
    return str(row[0])


def revoke(ctx: Context, token_id: str) -> None:
    with ctx.sessions.begin() as session:
        record = session.scalar(select(TokenRecord).where(TokenRecord.jti == token_id))
        if record is None:
            raise NotFound(f"token {token_id!r} does not exist")
        if record.revoked_at is not None:
            raise Conflict(f"token {token_id!r} is already revoked")
        record.revoked_at = utcnow()


def list_role_bindings(
    ctx: Context,
    *,
    namespace: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Page[RoleBindingRecord]:
    """Bindings, newest first; with ``namespace``, those whose pattern names it exactly."""
    with ctx.sessions() as session:
        stmt = select(RoleBindingRecord)
        if namespace:
            stmt = stmt.where(
                (RoleBindingRecord.pattern == namespace)
                | RoleBindingRecord.pattern.startswith(f"{namespace}/", autoescape=True)
            )
        return paginate(session, stmt, RoleBindingRecord.id, limit, cursor)


def binding_namespace(pattern: str) -> str | None:
    """The one namespace a pattern is confined to (``team/*``), or None (``team-*/*``, ``*``)."""
    namespace = pattern.partition("/")[0]
    if not namespace or any(c in namespace for c in "*?[]"):
        return None
    return namespace


def get_role_binding(ctx: Context, binding_id: int) -> RoleBindingRecord:
    with ctx.sessions() as session:
        row = session.get(RoleBindingRecord, binding_id) if 0 < binding_id < 2**31 else None
        if row is None:
            raise NotFound(f"role binding {binding_id} does not exist")
        return row
