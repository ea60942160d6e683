"""Namespaces: the folders environments live in (a user's own, a team's, ``default``)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from condastore_core.db.models import Environment, Namespace, utcnow
from condastore_core.errors import Conflict, InvalidRequest, NotFound
from condastore_core.service.context import Context
from condastore_core.service.pagination import Page, paginate
from condastore_core.service.reserved import check_not_reserved
from condastore_core.service.visibility import Visibility
from condastore_core.spec import NAME_PATTERN

MAX_NAMESPACE_LENGTH = 64


def check_namespace_name(name: str) -> str:
    if len(name) > MAX_NAMESPACE_LENGTH or not NAME_PATTERN.match(name):
        raise InvalidRequest(
            f"invalid namespace name {name!r}: use lowercase letters, digits and single "
            f"'.', '_' or '-' between them (at most {MAX_NAMESPACE_LENGTH} characters)"
        )
    return name


def find_namespace(session: Session, name: str) -> Namespace:
    ns = session.scalar(
        select(Namespace).where(Namespace.name == name, Namespace.deleted_at.is_(None))
    )
    if ns is None:
        raise NotFound(f"namespace {name!r} does not exist")
    return ns


def create_namespace(ctx: Context, name: str, *, exist_ok: bool = False) -> Namespace:
    """Every way a namespace comes to be (the API, a new user, a watched directory) is here."""
    check_not_reserved(check_namespace_name(name), "namespace")
    try:
        return _create_namespace(ctx, name, exist_ok=exist_ok)
    except IntegrityError:  # created meanwhile, by another process starting up, say
        if not exist_ok:
            raise Conflict(f"namespace {name!r} already exists") from None
        return get_namespace(ctx, name)


def _create_namespace(ctx: Context, name: str, *, exist_ok: bool) -> Namespace:
    with ctx.sessions.begin() as session:
        ns = session.scalar(select(Namespace).where(Namespace.name == name))
        if ns is not None and ns.deleted_at is None:
            if exist_ok:
                return ns
            raise Conflict(f"namespace {name!r} already exists")
        if ns is not None:  # re-created after a delete: the audit rows stay with it
            ns.deleted_at = None
            return ns
        ns = Namespace(name=name)
        session.add(ns)
        session.flush()  # a concurrent insert of the same name fails here
        return ns


def get_namespace(ctx: Context, name: str) -> Namespace:
    with ctx.sessions() as session:
        return find_namespace(session, name)


def list_namespaces(
    ctx: Context,
    *,
    limit: int | None = None,
    cursor: str | None = None,
    visible: Visibility | None = None,
) -> Page[Namespace]:
    with ctx.sessions() as session:
        stmt = select(Namespace).where(Namespace.deleted_at.is_(None))
        if visible is None:
            return paginate(session, stmt, Namespace.id, limit, cursor)
        stmt = stmt.where(visible.clause(Namespace.name))
        page = paginate(session, stmt, Namespace.id, limit, cursor)
        return Page([n for n in page.items if visible.can_read(n.name)], page.next_cursor)


def delete_namespace(ctx: Context, name: str) -> None:
    """Soft-delete an empty namespace; one that still holds environments is refused."""
    with ctx.sessions.begin() as session:
        ns = find_namespace(session, name)
        live = session.scalar(
            select(Environment.name).where(
                Environment.namespace_id == ns.id, Environment.deleted_at.is_(None)
            )
        )
        if live is not None:
            raise Conflict(f"namespace {name!r} still holds environments (for example {live!r})")
        ns.deleted_at = utcnow()
