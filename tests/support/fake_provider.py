"""An OpenID provider of our own making, whose keys the tests hold: for forged ID tokens.

It serves a real discovery document, a JWKS (``keys`` may change while it
runs: a key rotation) and a token endpoint that answers any code with
``next_id_token``, so a test can drive condastore's callback with a token
signed however it likes. The real provider of the other tests is
``identity_provider.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import falcon
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.live_server import live_server

CLIENT = "condastore"


def new_key(kid: str) -> tuple[rsa.RSAPrivateKey, dict]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return key, {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


def id_token(key, kid: str, issuer: str, **claims) -> str:  # type: ignore[no-untyped-def]
    """An RS256 ID token for ``CLIENT``; a claim given as None is left out."""
    now = int(time.time())
    payload = {
        "iss": issuer,
        "sub": "subject-1",
        "aud": CLIENT,
        "iat": now,
        "exp": now + 300,
        "nonce": "the nonce",
        **claims,
    }
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


class FakeProvider:
    def __init__(self) -> None:
        self.keys: list[dict] = []
        self.jwks_fetches = 0
        self.issuer = ""
        self.jwks_uri: str | None = None
        self.claimed_issuer: str | None = None
        self.next_id_token = ""

    @classmethod
    @contextmanager
    def serving(cls) -> Iterator[FakeProvider]:
        fake = cls()
        app = falcon.App()
        app.add_route("/.well-known/openid-configuration", fake, suffix="discovery")
        app.add_route("/jwks", fake, suffix="jwks")
        app.add_route("/token", fake, suffix="token")
        with live_server(app) as url:
            fake.issuer = url
            yield fake

    def on_get_discovery(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {
            "issuer": self.claimed_issuer or self.issuer,
            "authorization_endpoint": f"{self.issuer}/auth",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": self.jwks_uri or f"{self.issuer}/jwks",
            "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"],
        }

    def on_get_jwks(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.jwks_fetches += 1
        resp.media = {"keys": self.keys}

    def on_post_token(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"id_token": self.next_id_token, "token_type": "Bearer"}
