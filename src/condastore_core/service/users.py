"""Users and their tokens: accounts, login, narrowed tokens, revocation.

Local accounts have scrypt password hashes. Other identity providers (OIDC,
JupyterHub) plug in as an :class:`Authenticator` that maps a login to a user
name; everything after that (tokens, RBAC) is the same.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from condastore_core.auth.passwords import hash_password, verify_password
from condastore_core.auth.rbac import (
    AccessPolicy,
    Forbidden,
    Principal,
    Role,
    RoleBinding,
    Unauthenticated,
    narrow,
)
from condastore_core.db.models import RoleBindingRecord, TokenRecord, User, utcnow
from condastore_core.errors import Conflict, InvalidRequest, NotFound
from condastore_core.service.context import Context
from condastore_core.service.namespaces import check_namespace_name, create_namespace

MIN_PASSWORD_LENGTH = 8


class Authenticator(Protocol):
    """Turns credentials into a user name, or None; local passwords are one such backend."""

    def authenticate(self, ctx: Context, username: str, password: str) -> str | None: ...


class LocalPasswords:
    def authenticate(self, ctx: Context, username: str, password: str) -> str | None:
        with ctx.sessions() as session:
            user = session.scalar(select(User).where(User.name == username))
        if user is None or user.disabled_at is not None or user.password_hash is None:
            verify_password(password, _dummy_hash())  # same time whether the user exists or not
            return None
        return user.name if verify_password(password, user.password_hash) else None


@functools.cache
def _dummy_hash() -> str:
    """A hash to check unknown users against, made on first use: scrypt costs ~0.1 s of CPU."""
    return hash_password("not a real password")


def find_user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name, User.disabled_at.is_(None)))
    if user is None:
        raise NotFound(f"user {name!r} does not exist")
    return user


def create_user(
    ctx: Context,
    name: str,
    password: str | None,
    *,
    admin: bool = False,
    groups: list[str] | None = None,
) -> User:
    """Create a user and their personal namespace (named after them, theirs to administer)."""
    check_namespace_name(name)
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    with ctx.sessions.begin() as session:
        user = User(
            name=name,
            password_hash=hash_password(password) if password is not None else None,
            is_admin=admin,
            groups=sorted(set(groups or [])),
        )
        session.add(user)
        try:
            session.flush()
        except IntegrityError:
            raise Conflict(f"user {name!r} already exists") from None
    create_namespace(ctx, name, exist_ok=True)
    return user


def get_user(ctx: Context, name: str) -> User:
    with ctx.sessions() as session:
        return find_user(session, name)


def list_users(ctx: Context) -> list[User]:
    with ctx.sessions() as session:
        return list(
            session.scalars(select(User).where(User.disabled_at.is_(None)).order_by(User.name))
        )


def delete_user(ctx: Context, name: str) -> None:
    """Disable the account and revoke its tokens; its rows stay for audit."""
    with ctx.sessions.begin() as session:
        user = find_user(session, name)
        user.disabled_at = utcnow()
        for token in session.scalars(select(TokenRecord).where(TokenRecord.user_id == user.id)):
            token.revoked_at = token.revoked_at or utcnow()


@dataclass(frozen=True)
class IssuedToken:
    token: str
    token_id: str
    expires_at: dt.datetime
    scope: tuple[str, ...] | None


def issue_token(
    ctx: Context,
    user_name: str,
    *,
    kind: str = "api",
    bindings: list[str] | None = None,
    lifetime: dt.timedelta | None = None,
    description: str = "",
    max_expiry: dt.datetime | None = None,
    within: tuple[RoleBinding, ...] | None = None,
) -> IssuedToken:
    """Sign a token for ``user_name``; ``bindings`` narrow it and may never exceed their rights.

    ``max_expiry`` (the expiry of the token used to ask) keeps a derived token
    from outliving its parent, and ``within`` (that token's narrowed bindings)
    from exceeding it.
    """
    settings = ctx.settings
    longest = dt.timedelta(seconds=settings.max_token_lifetime_seconds)
    lifetime = lifetime or dt.timedelta(seconds=settings.token_lifetime_seconds)
    if lifetime <= dt.timedelta(0):
        raise InvalidRequest("a token's lifetime must be positive")
    if lifetime > longest:
        raise InvalidRequest(f"a token may live at most {int(longest.total_seconds())} seconds")
    if max_expiry is not None:
        lifetime = min(lifetime, max_expiry - dt.datetime.now(dt.UTC))
    scope = None
    with ctx.sessions.begin() as session:
        user = find_user(session, user_name)
        if bindings is not None:
            try:
                requested = [RoleBinding.parse(b, f"user:{user.name}") for b in bindings]
            except ValueError as exc:
                raise InvalidRequest(str(exc)) from None
            own = [b for b in access_policy(ctx).bindings if b.subject in _subjects(user)]
            scope = [str(b) for b in narrow(own, requested, user.is_admin, user.name)]
            parents = within or ()
            for binding in requested if within is not None else ():
                if not any(binding.within(parent) for parent in parents):
                    raise Forbidden(
                        f"a token cannot grant {binding}: it exceeds this token's rights"
                    )
        elif within is not None:
            scope = [str(b) for b in within]
        token, claims = ctx.signer.issue(user.name, lifetime, kind=kind, scope=scope)
        session.add(
            TokenRecord(
                jti=claims.token_id,
                user_id=user.id,
                kind=kind,
                description=description[:256],
                scope=scope,
                issued_at=claims.issued_at,
                expires_at=claims.expires_at,
            )
        )
    return IssuedToken(token, claims.token_id, claims.expires_at, claims.scope)


def revoke_token(ctx: Context, token_id: str) -> None:
    with ctx.sessions.begin() as session:
        record = session.scalar(select(TokenRecord).where(TokenRecord.jti == token_id))
        if record is not None:
            record.revoked_at = record.revoked_at or utcnow()


def principal_for_token(ctx: Context, token: str) -> tuple[Principal, dt.datetime]:
    """Who a token speaks for, and until when; refuses revoked tokens and disabled users."""
    claims = ctx.signer.verify(token)
    with ctx.sessions() as session:
        record = session.scalar(select(TokenRecord).where(TokenRecord.jti == claims.token_id))
        if record is None or record.revoked_at is not None:
            raise Unauthenticated("the token was revoked; log in again")
        user = session.scalar(select(User).where(User.name == claims.user))
        if user is None or user.disabled_at is not None:
            raise Unauthenticated("the token's user no longer exists")
    scope = None
    if claims.scope is not None:
        scope = tuple(RoleBinding.parse(b, f"user:{user.name}") for b in claims.scope)
    principal = Principal(
        name=user.name,
        is_admin=user.is_admin,
        groups=frozenset(user.groups),
        scope=scope,
        token_id=claims.token_id,
    )
    return principal, claims.expires_at


def principal_for_basic(
    ctx: Context, value: str, authenticator: Authenticator
) -> tuple[Principal, dt.datetime | None]:
    """HTTP Basic credentials (base64 ``name:secret``): a password, or an API token.

    Returns the principal and, for a token, when it expires.
    """
    try:
        name, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("malformed Basic credentials") from None
    if secret.count(".") == 2:  # a JWT given as the password (registry clients)
        principal, expiry = principal_for_token(ctx, secret)
        if principal.name != name:
            raise Unauthenticated("the token belongs to another user")
        return principal, expiry
    if authenticator.authenticate(ctx, name, secret) is None:
        raise Unauthenticated("wrong user name or password")
    user = get_user(ctx, name)
    return Principal(name=user.name, is_admin=user.is_admin, groups=frozenset(user.groups)), None


def _subjects(user: User) -> set[str]:
    return Principal(name=user.name, groups=frozenset(user.groups)).subjects()


# -- role bindings ------------------------------------------------------------------


_ROLE_BINDINGS = select(
    RoleBindingRecord.pattern, RoleBindingRecord.role, RoleBindingRecord.subject
)


def access_policy(ctx: Context) -> AccessPolicy:
    """Every role binding: the stored ones plus the configured anonymous ones."""
    bindings = [RoleBinding.parse(text, "anonymous") for text in ctx.settings.anonymous_bindings]
    for pattern, role, subject in ctx.rows(_ROLE_BINDINGS):
        bindings.append(RoleBinding(pattern, Role.parse(role), subject))
    return AccessPolicy(bindings)


def list_role_bindings(ctx: Context) -> list[RoleBindingRecord]:
    with ctx.sessions() as session:
        return list(session.scalars(select(RoleBindingRecord).order_by(RoleBindingRecord.id)))


def add_role_binding(ctx: Context, subject: str, pattern: str, role: str) -> RoleBindingRecord:
    kind, _, name = subject.partition(":")
    if kind not in ("user", "group") or not name:
        raise InvalidRequest(f"subject must be user:NAME or group:NAME, not {subject!r}")
    try:
        binding = RoleBinding(pattern, Role.parse(role), subject)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    with ctx.sessions.begin() as session:
        row = session.scalar(
            select(RoleBindingRecord).where(
                RoleBindingRecord.subject == subject, RoleBindingRecord.pattern == pattern
            )
        )
        if row is None:
            row = RoleBindingRecord(subject=subject, pattern=pattern)
            session.add(row)
        row.role = str(binding.role)
        session.flush()
        return row


def delete_role_binding(ctx: Context, binding_id: int) -> None:
    with ctx.sessions.begin() as session:
        row = session.get(RoleBindingRecord, binding_id) if 0 < binding_id < 2**31 else None
        if row is None:
            raise NotFound(f"role binding {binding_id} does not exist")
        session.delete(row)
