"""Signed API tokens: JWTs signed with an Ed25519 key that lives in the data directory.

The key is created once (exclusively, mode 0600) and then only read, so every
process of an installation (gunicorn workers, RQ workers, the CLI) verifies
the same tokens. A token names its user (``sub``), its id (``jti``, for
revocation), its expiry and, when narrowed, the bindings it is capped to.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from condastore_core.auth.rbac import Unauthenticated

ISSUER = "condastore"
ALGORITHM = "EdDSA"


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The installation's signing key; created on first use, never replaced."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race: use its key
            data = path.read_bytes()
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            data = pem
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


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
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self._public = key.public_key()

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
        return jwt.encode(payload, self._key, algorithm=ALGORITHM), claims

    def verify(self, token: str) -> TokenClaims:
        """The claims of a valid token; raises Unauthenticated for forged or expired ones."""
        try:
            payload = jwt.decode(
                token,
                self._public,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired; log in again") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("the token is not valid") from None
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
