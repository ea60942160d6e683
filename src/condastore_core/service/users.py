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
import hmac
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Row, bindparam, select
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
from condastore_core.auth.tokens import TokenClaims
from condastore_core.db.models import RoleBindingRecord, TokenRecord, User, utcnow
from condastore_core.errors import Conflict, InvalidRequest, NotFound, TooManyRequests
from condastore_core.service.context import Context
from condastore_core.service.namespaces import check_namespace_name, create_namespace
from condastore_core.service.reserved import check_not_reserved

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
    check_not_reserved(check_namespace_name(name), "user")
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
    return _principal_for_claims(ctx, ctx.signer.verify(token))


def _principal_for_claims(ctx: Context, claims: TokenClaims) -> tuple[Principal, dt.datetime]:
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


#: Built once: what a Basic request needs of its user, read on every request (cached or not).
_BASIC_USER = select(
    User.name, User.password_hash, User.disabled_at, User.is_admin, User.groups
).where(User.name == bindparam("name"))


def principal_for_basic(
    ctx: Context, value: str, authenticator: Authenticator, address: str | None = None
) -> tuple[Principal, dt.datetime | None]:
    """HTTP Basic credentials (base64 ``name:secret``): a password, or an API token.

    Returns the principal and, for a token, when it expires. The secret is a
    token only when it is a JWT signed by us; anything else, dots or not, is a
    password. A verified password is remembered briefly (``ctx.credentials``,
    checked against the user's current password hash on every request), so a
    Basic client costs scrypt once, not per request. Failures are throttled
    per user and per ``address`` before scrypt runs.
    """
    try:
        name, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("malformed Basic credentials") from None
    token_error: Unauthenticated | None = None
    if secret.count(".") == 2:  # perhaps a JWT given as the password (registry clients)
        try:
            claims = ctx.signer.verify(secret)
        except Unauthenticated as exc:
            token_error = exc  # not ours (or expired): it may still be a password
        else:
            principal, expiry = _principal_for_claims(ctx, claims)
            if principal.name != name:
                raise Unauthenticated("the token belongs to another user")
            return principal, expiry
    user = ctx.first(_BASIC_USER, {"name": name})
    key = ctx.credentials.key(name, secret)
    cached = ctx.credentials.get(key)
    if cached is not None:
        if _still_verified(ctx, user, cached[1]):
            return _basic_principal(user), None  # type: ignore[arg-type]
        ctx.credentials.drop(key)  # the password changed or the account was disabled
    try:
        check_password(ctx, authenticator, name, secret, address)
    except Unauthenticated:
        raise token_error or Unauthenticated("wrong user name or password") from None
    if user is None or user.disabled_at is not None:  # another identity backend's user
        user = ctx.first(_BASIC_USER, {"name": name})
        if user is None or user.disabled_at is not None:
            raise Unauthenticated(f"user {name!r} does not exist")
    # The stamp is of the hash read before the check: if the password changes meanwhile,
    # the next request finds another hash and checks the password again.
    ctx.credentials.put(key, user.name, ctx.credentials.stamp(user.password_hash))
    return _basic_principal(user), None


def _still_verified(ctx: Context, user: Row | None, stamp: bytes) -> bool:
    """The account is enabled and its password hash is the one the entry was verified with."""
    if user is None or user.disabled_at is not None:
        return False
    return hmac.compare_digest(stamp, ctx.credentials.stamp(user.password_hash))


def _basic_principal(user: Row) -> Principal:
    return Principal(name=user.name, is_admin=user.is_admin, groups=frozenset(user.groups))


def check_password(
    ctx: Context, authenticator: Authenticator, name: str, password: str, address: str | None
) -> str:
    """The user ``authenticator`` finds for these credentials, throttled.

    Past ``login_failures_per_user`` (or ``_per_address``) failures in the
    window, TooManyRequests is raised before the password is checked, so a
    flood of wrong passwords costs no scrypt.
    """
    _throttle(ctx, name, address)
    user = authenticator.authenticate(ctx, name, password)
    if user is None:
        _record_failure(ctx, name, address)
        raise Unauthenticated("wrong user name or password")
    return user


def _throttle(ctx: Context, name: str, address: str | None) -> None:
    limits, failures = ctx.settings, ctx.login_failures
    waits = [failures.retry_after(f"user:{name}", limits.login_failures_per_user)]
    if address:
        waits.append(failures.retry_after(f"address:{address}", limits.login_failures_per_address))
    wait = max((w for w in waits if w is not None), default=None)
    if wait is not None:
        raise TooManyRequests(f"too many failed logins; retry in {wait} seconds", wait)


def _record_failure(ctx: Context, name: str, address: str | None) -> None:
    ctx.login_failures.record(f"user:{name}")
    if address:
        ctx.login_failures.record(f"address:{address}")


def set_password(ctx: Context, name: str, password: str) -> None:
    """Change a user's password; Basic credentials verified with the old one stop working."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    with ctx.sessions.begin() as session:
        find_user(session, name).password_hash = hash_password(password)


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
