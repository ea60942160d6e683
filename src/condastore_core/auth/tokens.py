"""Signed API tokens: JWTs signed with Ed25519 keys from the installation's key ring.

Every process of an installation (servers, workers, the CLI) verifies the
same tokens: the keys come from the database or a shared file (see
:mod:`condastore_core.auth.keys`), and a token names the key that signed it.
A token names its user (``sub``), its id (``jti``, for revocation), its
expiry and, when narrowed, the bindings it is capped to.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from dataclasses import dataclass

import jwt

from condastore_core.auth.keys import KeyRing
from condastore_core.auth.rbac import Unauthenticated

ISSUER = "condastore"
ALGORITHM = "EdDSA"


@dataclass(frozen=True)
class TokenClaims:
    user: str
    token_id: str
    kind: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    scope: tuple[str, ...] | None
    #: Registry tokens: the granted ``[{"type", "name", "actions"}]``.
    access: tuple[dict, ...] | None = None


class TokenSigner:
    def __init__(self, keys: KeyRing) -> None:
        self._keys = keys

    def issue(
        self,
        user: str,
        lifetime: dt.timedelta,
        *,
        kind: str,
        scope: list[str] | None = None,
        access: list[dict] | None = None,
    ) -> tuple[str, TokenClaims]:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        claims = TokenClaims(
            user,
            uuid.uuid4().hex,
            kind,
            now,
            now + lifetime,
            (tuple(scope) if scope is not None else None),
        )
        payload = {
            "iss": ISSUER,
            "sub": user,
            "jti": claims.token_id,
            "kind": kind,
            "iat": int(now.timestamp()),
            "exp": int(claims.expires_at.timestamp()),
        }
        if scope is not None:
            payload["scope"] = list(scope)
        if access is not None:
            payload["access"] = access
            claims = dataclasses.replace(claims, access=tuple(access))
        kid, key = self._keys.signing_key()
        return jwt.encode(payload, key, algorithm=ALGORITHM, headers={"kid": kid}), claims

    def verify(self, token: str) -> TokenClaims:
        """The claims of a valid token; raises Unauthenticated for forged or expired ones."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            raise Unauthenticated("the token is not valid") from None
        # Tokens made before keys had ids name none: every key of the ring is tried.
        for public in self._keys.public_keys(kid if isinstance(kid, str) else None):
            try:
                payload = jwt.decode(
                    token,
                    public,
                    algorithms=[ALGORITHM],
                    issuer=ISSUER,
                    options={"require": ["exp", "iat", "sub", "jti"]},
                )
                break
            except jwt.ExpiredSignatureError:
                raise Unauthenticated("the token has expired; log in again") from None
            except jwt.InvalidTokenError:
                continue
        else:
            raise Unauthenticated("the token is not valid")
        scope = payload.get("scope")
        return TokenClaims(
            user=payload["sub"],
            token_id=payload["jti"],
            kind=payload.get("kind", "api"),
            issued_at=dt.datetime.fromtimestamp(payload["iat"], dt.UTC),
            expires_at=dt.datetime.fromtimestamp(payload["exp"], dt.UTC),
            scope=tuple(scope) if scope is not None else None,
            access=tuple(payload["access"]) if "access" in payload else None,
        )
