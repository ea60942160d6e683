"""Single sign-on logins: pending logins, linking provider identities to users, their groups.

The protocol is :mod:`condastore_core.auth.oidc`'s; this module keeps what a
login needs between its steps in the database (``sso_logins``), so any server
of a cluster can finish a login another one started, and each pending login
is used once. Three kinds:

* ``browser``: the web UI's authorization code login; the handle is the OAuth
  ``state`` (also bound to the browser by a cookie, which the web layer checks).
* ``cli``: the same, started by ``condastore login --sso``; once the provider
  vouched for the user, the browser is sent to the CLI's loopback address with
  a one-time code, which only the holder of the CLI's PKCE verifier can redeem.
* ``device``: the device authorization grant; the CLI polls with its handle.

A provider identity (issuer + subject, never the user name alone) is linked to
one user. The first login links the user named by the username claim,
creating it when ``oidc_create_users`` allows, or refusing if that user is
already linked to another identity of the provider. The groups the provider
gives replace, at each login, the groups it gave the last time; groups an
administrator set by hand stay. Rights come from ``group:NAME`` role bindings
and are read on every request, so a group removed at the provider takes its
rights away at the next login.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from condastore_core.auth import oidc
from condastore_core.auth.oidc import Identity, OidcClient, SsoRefused
from condastore_core.auth.rbac import Principal, Unauthenticated
from condastore_core.db.models import SsoIdentity, SsoLogin, User, as_utc, utcnow
from condastore_core.errors import InvalidRequest
from condastore_core.service import users
from condastore_core.service.context import Context
from condastore_core.service.namespaces import check_namespace_name

#: How long a login may take at the provider.
LOGIN_TTL = dt.timedelta(minutes=10)
#: How long the CLI has to redeem its one-time code.
HANDOFF_TTL = dt.timedelta(minutes=2)


class PasswordLoginOff(Unauthenticated):
    """A password was offered where passwords are switched off (``password_login = false``)."""

    code = "PASSWORD_LOGIN_OFF"


class NoPasswords:
    """The authenticator while local passwords are switched off: refuses, saying so."""

    def authenticate(self, ctx: Context, username: str, password: str) -> str | None:
        raise PasswordLoginOff(
            "password login is switched off on this server: log in with single sign-on "
            "(the login page's link, or condastore login --sso), or use an API token"
        )


def _hash(handle: str) -> str:
    return hashlib.sha256(handle.encode()).hexdigest()


@dataclass(frozen=True)
class Started:
    handle: str
    authorization_url: str


@dataclass(frozen=True)
class Finished:
    user: str
    kind: str
    next_path: str | None
    #: cli: where to send the browser, with the one-time code.
    client_redirect: str | None = None
    client_state: str | None = None
    handoff_code: str | None = None


def begin(
    ctx: Context,
    client: OidcClient,
    redirect_uri: str,
    *,
    next_path: str | None = None,
    client_redirect: str | None = None,
    client_challenge: str | None = None,
    client_state: str | None = None,
) -> Started:
    """Record a pending login and return where to send the browser (the handle is ``state``)."""
    state, nonce, verifier = oidc.new_secret(), oidc.new_secret(), oidc.new_secret()
    url = client.authorization_url(redirect_uri, state, nonce, verifier)
    now = utcnow()
    with ctx.sessions.begin() as session:
        session.execute(delete(SsoLogin).where(SsoLogin.expires_at < now))
        session.add(
            SsoLogin(
                handle_hash=_hash(state),
                kind="cli" if client_redirect else "browser",
                nonce=nonce,
                code_verifier=verifier,
                next_path=next_path,
                client_redirect=client_redirect,
                client_challenge=client_challenge,
                client_state=client_state,
                created_at=now,
                expires_at=now + LOGIN_TTL,
            )
        )
    return Started(state, url)


def _take(ctx: Context, handle: str, kinds: tuple[str, ...]) -> SsoLogin:
    """The pending login of ``handle``, removed: a handle is good once."""
    with ctx.sessions.begin() as session:
        row = session.scalar(select(SsoLogin).where(SsoLogin.handle_hash == _hash(handle)))
        # Deleted by a statement whose count says who won: two requests racing with the
        # same handle cannot both use it.
        spent = row is not None and (
            session.execute(delete(SsoLogin).where(SsoLogin.id == row.id)).rowcount == 1  # type: ignore[attr-defined]
        )
        if row is None or not spent or row.kind not in kinds:
            raise SsoRefused(
                "this login is unknown or was already used (its state does not match); "
                "start the login again"
            )
        session.expunge(row)
    if as_utc(row.expires_at) < utcnow():
        raise SsoRefused("this login took too long; start it again")
    return row


def discard(ctx: Context, state: str) -> None:
    """Forget a pending login the provider ended without a code."""
    with ctx.sessions.begin() as session:
        session.execute(delete(SsoLogin).where(SsoLogin.handle_hash == _hash(state)))


def finish(
    ctx: Context,
    client: OidcClient,
    state: str,
    code: str,
    redirect_uri: str,
    *,
    browser_state: str | None,
) -> Finished:
    """Exchange the code, verify the ID token against the login's nonce, log the user in.

    ``browser_state`` is the state this browser started (its cookie): a browser
    login finishes only in the browser that started it, so nobody can slip
    their own login into someone else's browser.
    """
    row = _take(ctx, state, ("browser", "cli"))
    if row.kind == "browser" and not (browser_state and hmac.compare_digest(browser_state, state)):
        raise SsoRefused(
            "this login was not started in this browser (the state does not match); "
            "start the login again"
        )
    tokens = client.exchange_code(code, redirect_uri, row.code_verifier or "")
    identity = client.identity(tokens, row.nonce or "")
    name = log_in(ctx, identity)
    if row.kind != "cli":
        return Finished(name, row.kind, row.next_path)
    handoff = oidc.new_secret()
    now = utcnow()
    with ctx.sessions.begin() as session:
        session.add(
            SsoLogin(
                handle_hash=_hash(handoff),
                kind="handoff",
                client_challenge=row.client_challenge,
                user_name=name,
                created_at=now,
                expires_at=now + HANDOFF_TTL,
            )
        )
    return Finished(name, "cli", None, row.client_redirect, row.client_state, handoff)


def redeem(ctx: Context, code: str, code_verifier: str) -> str:
    """The user of a CLI login's one-time code, given the verifier of the CLI's challenge."""
    row = _take(ctx, code, ("handoff",))
    expected = row.client_challenge or ""
    if not hmac.compare_digest(oidc.pkce_challenge(code_verifier), expected):
        raise SsoRefused("the code verifier does not match this login's challenge")
    assert row.user_name is not None
    return row.user_name


@dataclass(frozen=True)
class DeviceStarted:
    handle: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: int
    interval: int


def begin_device(ctx: Context, client: OidcClient) -> DeviceStarted:
    grant = client.start_device()
    handle = oidc.new_secret()
    now = utcnow()
    with ctx.sessions.begin() as session:
        session.execute(delete(SsoLogin).where(SsoLogin.expires_at < now))
        session.add(
            SsoLogin(
                handle_hash=_hash(handle),
                kind="device",
                device_code=grant.device_code,
                interval=grant.interval,
                created_at=now,
                expires_at=now + dt.timedelta(seconds=min(grant.expires_in, 3600)),
            )
        )
    return DeviceStarted(
        handle,
        grant.user_code,
        grant.verification_uri,
        grant.verification_uri_complete,
        grant.expires_in,
        grant.interval,
    )


def poll_device(ctx: Context, client: OidcClient, handle: str) -> str:
    """The user once they approved at the provider; :class:`oidc.DevicePending` until then."""
    with ctx.sessions() as session:
        row = session.scalar(
            select(SsoLogin).where(SsoLogin.handle_hash == _hash(handle), SsoLogin.kind == "device")
        )
        if row is None or as_utc(row.expires_at) < utcnow():
            raise SsoRefused("this device login is unknown or expired; start it again")
        device_code, interval = row.device_code or "", row.interval or 5
    try:
        tokens = client.poll_device(device_code, interval)
    except oidc.DevicePending as pending:
        if pending.interval != interval:  # the provider asked us to slow down
            with ctx.sessions.begin() as session:
                session.execute(
                    update(SsoLogin)
                    .where(SsoLogin.handle_hash == _hash(handle))
                    .values(interval=pending.interval)
                )
        raise
    _take(ctx, handle, ("device",))  # approved: the handle is spent
    return log_in(ctx, client.identity(tokens, None))


def log_in(ctx: Context, identity: Identity) -> str:
    """The user ``identity`` is, linked (and created) as needed, with the provider's groups."""
    settings = ctx.settings
    try:
        name = check_namespace_name(identity.username)
    except InvalidRequest:
        raise SsoRefused(
            f"the provider's {settings.oidc_username_claim!r} claim {identity.username[:64]!r} "
            "is not a usable user name (lowercase letters, digits, '.', '_', '-'); "
            "an administrator can choose another claim (setting oidc_username_claim)"
        ) from None
    for attempt in range(2):
        try:
            return _link(ctx, identity, name, create=attempt == 0)
        except IntegrityError:
            continue  # the same user logged in twice at once; the second finds the first's rows
    raise SsoRefused("the login could not be recorded; try again")


def _link(ctx: Context, identity: Identity, name: str, *, create: bool) -> str:
    settings = ctx.settings
    with ctx.sessions.begin() as session:
        link = session.scalar(
            select(SsoIdentity).where(
                SsoIdentity.issuer == identity.issuer, SsoIdentity.subject == identity.subject
            )
        )
        if link is not None:
            user = session.get(User, link.user_id)
        else:
            user = session.scalar(select(User).where(User.name == name))
            if user is not None:
                other = session.scalar(
                    select(SsoIdentity).where(
                        SsoIdentity.user_id == user.id, SsoIdentity.issuer == identity.issuer
                    )
                )
                if other is not None:
                    raise SsoRefused(
                        f"user {name!r} belongs to another account of the identity provider"
                    )
            elif not settings.oidc_create_users:
                raise SsoRefused(
                    f"user {name!r} is not registered here; "
                    "an administrator must add the user before they can log in"
                )
        if user is not None and user.disabled_at is not None:
            raise SsoRefused(f"user {user.name!r} is disabled")
    if user is None:
        if not create:
            raise SsoRefused("the login could not be recorded; try again")
        users.create_user(ctx, name, None)
    with ctx.sessions.begin() as session:
        if user is None:
            user = session.scalar(select(User).where(User.name == name))
            assert user is not None
        else:
            user = session.get(User, user.id)
            assert user is not None
        if link is None:
            link = SsoIdentity(
                issuer=identity.issuer, subject=identity.subject, user_id=user.id, groups=[]
            )
            session.add(link)
        else:
            link = session.merge(link)
        given = set(identity.groups)
        by_hand = set(user.groups) - set(link.groups or [])
        user.groups = sorted(by_hand | given)
        link.groups = sorted(given)
        link.last_login_at = utcnow()
        return user.name


def has_identity(ctx: Context, who: Principal) -> bool:
    """Whether ``who`` logs in through the provider (their logout also ends its session)."""
    with ctx.sessions() as session:
        found = session.scalar(
            select(SsoIdentity.id)
            .join(User, User.id == SsoIdentity.user_id)
            .where(User.name == who.name)
            .limit(1)
        )
    return found is not None
