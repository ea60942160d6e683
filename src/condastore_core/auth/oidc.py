"""OpenID Connect, the protocol side: discovery, PKCE, code and device grants, ID tokens.

condastore is a confidential client of one OpenID provider an administrator
configured (settings ``oidc_*``). This module speaks to that provider and
decides whether what it answered can be believed; it keeps no state and knows
no HTTP server: pending logins and users are :mod:`condastore_core.service.sso`'s.

* Discovery reads ``<issuer>/.well-known/openid-configuration`` (cached for an
  hour) and refuses a document whose ``issuer`` is not exactly the configured
  one: a provider that calls itself by another name is not the one configured.
* ID tokens are verified with PyJWT against the provider's JWKS
  (:class:`jwt.PyJWKClient`): signature with an asymmetric algorithm the
  provider announces (never ``none`` or HMAC), issuer, audience (and ``azp``
  when there are several), expiry, and the login's nonce. A token signed with
  a key id the cached JWKS does not hold refetches the JWKS once (the provider
  rotated its keys), at most every ``jwks_refresh_cooldown`` seconds so forged
  key ids cannot make us hammer the provider.
* Every fetch goes through the channel gate (:class:`~condastore_core.channels.fetch.GatedSession`):
  URLs under the issuer are allowed as configured (an administrator named the
  issuer, as they name channels); endpoints the discovery document places
  elsewhere pass the gate like any URL (public hosts, or ``allowed_networks``).
  Answers are read up to :data:`MAX_RESPONSE_BYTES`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import jwt
import requests

from condastore_core.auth.rbac import Unauthenticated
from condastore_core.channels.fetch import GatedSession
from condastore_core.channels.gate import ChannelGate, ChannelRefused
from condastore_core.errors import CondastoreError

DISCOVERY_PATH = "/.well-known/openid-configuration"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
MAX_RESPONSE_BYTES = 1 << 20
#: Signature algorithms an ID token may use: public-key ones only.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
#: Clock difference tolerated between us and the provider (seconds).
LEEWAY_SECONDS = 60
MAX_GROUPS = 256
MAX_GROUP_LENGTH = 120  # a role binding subject is ``group:NAME`` in 128 characters


class SsoRefused(Unauthenticated):
    """The provider's answer cannot be believed, or the login was refused; says which check."""

    code = "SSO_REFUSED"


class ProviderError(CondastoreError):
    """The provider could not be reached or answered something that is not OpenID Connect."""

    code = "SSO_PROVIDER_ERROR"


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"

    def __repr__(self) -> str:  # the secret is never shown
        return f"OidcConfig(issuer={self.issuer!r}, client_id={self.client_id!r})"


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of the discovery document condastore uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    end_session_endpoint: str | None
    device_authorization_endpoint: str | None
    signing_algorithms: tuple[str, ...]
    token_auth_methods: tuple[str, ...]


@dataclass(frozen=True)
class Tokens:
    id_token: str
    access_token: str | None


@dataclass(frozen=True)
class Identity:
    """Who the provider vouched for: its ``issuer`` and ``subject``, and the claims we map."""

    issuer: str
    subject: str
    username: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class DeviceAuthorization:
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: int
    interval: int


class DevicePending(CondastoreError):
    """The user has not finished at the provider yet; poll again after ``interval`` seconds."""

    code = "AUTHORIZATION_PENDING"

    def __init__(self, interval: int) -> None:
        super().__init__(f"authorization pending; poll again in {interval} seconds")
        self.interval = interval


def new_secret() -> str:
    """A random URL-safe value for state, nonce, PKCE verifiers and handles (256 bits)."""
    return secrets.token_urlsafe(32)


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of ``verifier`` (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _issuer_key(url: str) -> str:
    return url.rstrip("/")


class OidcClient:
    """One configured provider; safe to share between threads."""

    def __init__(
        self,
        config: OidcConfig,
        gate: ChannelGate,
        *,
        metadata_ttl: float = 3600,
        jwks_refresh_cooldown: float = 30,
        timeout: float = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.gate = gate.with_configured(config.issuer)
        self.metadata_ttl = metadata_ttl
        self.jwks_refresh_cooldown = jwks_refresh_cooldown
        self.timeout = timeout
        self.clock = clock
        self._lock = threading.Lock()
        self._metadata: tuple[float, ProviderMetadata] | None = None
        self._jwks: _GatedJWKClient | None = None

    # -- fetching -----------------------------------------------------------------

    def _request(self, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
        """Status and JSON body of one request to the provider, through the gate."""
        session = GatedSession(self.gate)
        try:
            response = session.request(method, url, timeout=self.timeout, stream=True, **kwargs)
            with response:
                body = response.raw.read(MAX_RESPONSE_BYTES + 1, decode_content=True)
        except ChannelRefused:
            raise
        except requests.RequestException as exc:
            raise ProviderError(
                f"the identity provider could not be reached: {type(exc).__name__}"
            ) from None
        finally:
            session.close()
        if len(body) > MAX_RESPONSE_BYTES:
            raise ProviderError(
                f"the identity provider's answer exceeds {MAX_RESPONSE_BYTES} bytes"
            )
        try:
            data = requests.models.complexjson.loads(body) if body else None
        except ValueError:
            data = None
        if response.status_code < 500 and isinstance(data, dict):
            return response.status_code, data
        raise ProviderError(
            f"the identity provider answered {response.status_code} without a JSON object"
        )

    def metadata(self) -> ProviderMetadata:
        """The provider's discovery document, cached for ``metadata_ttl`` seconds."""
        with self._lock:
            if self._metadata is not None and self._metadata[0] > self.clock():
                return self._metadata[1]
        url = _issuer_key(self.config.issuer) + DISCOVERY_PATH
        status, doc = self._request("GET", url)
        if status != 200:
            raise ProviderError(f"the discovery document answered {status}")
        if _issuer_key(str(doc.get("issuer", ""))) != _issuer_key(self.config.issuer):
            raise SsoRefused(
                f"the provider at {self.config.issuer} names another issuer "
                f"({str(doc.get('issuer'))[:200]!r}); it is not the configured provider"
            )
        try:
            meta = ProviderMetadata(
                issuer=str(doc["issuer"]),
                authorization_endpoint=str(doc["authorization_endpoint"]),
                token_endpoint=str(doc["token_endpoint"]),
                jwks_uri=str(doc["jwks_uri"]),
                userinfo_endpoint=_optional(doc, "userinfo_endpoint"),
                end_session_endpoint=_optional(doc, "end_session_endpoint"),
                device_authorization_endpoint=_optional(doc, "device_authorization_endpoint"),
                signing_algorithms=tuple(
                    str(a) for a in doc.get("id_token_signing_alg_values_supported") or ["RS256"]
                ),
                token_auth_methods=tuple(
                    str(a)
                    for a in doc.get("token_endpoint_auth_methods_supported")
                    or ["client_secret_basic"]
                ),
            )
        except KeyError as exc:
            raise ProviderError(f"the discovery document lacks {exc.args[0]!r}") from None
        with self._lock:
            self._metadata = (self.clock() + self.metadata_ttl, meta)
            if self._jwks is None or self._jwks.uri != meta.jwks_uri:
                self._jwks = _GatedJWKClient(meta.jwks_uri, self, self.jwks_refresh_cooldown)
        return meta

    # -- the authorization code grant ----------------------------------------------

    def authorization_url(
        self, redirect_uri: str, state: str, nonce: str, code_verifier: str
    ) -> str:
        meta = self.metadata()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.config.client_id,
                "redirect_uri": redirect_uri,
                "scope": " ".join(self.config.scopes),
                "state": state,
                "nonce": nonce,
                "code_challenge": pkce_challenge(code_verifier),
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in meta.authorization_endpoint else "?"
        return f"{meta.authorization_endpoint}{separator}{query}"

    def exchange_code(self, code: str, redirect_uri: str, code_verifier: str) -> Tokens:
        return self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            }
        )

    # -- the device authorization grant (RFC 8628) ----------------------------------

    def supports_device_flow(self) -> bool:
        return self.metadata().device_authorization_endpoint is not None

    def start_device(self) -> DeviceAuthorization:
        meta = self.metadata()
        if meta.device_authorization_endpoint is None:
            raise ProviderError("the identity provider offers no device authorization")
        form = {"scope": " ".join(self.config.scopes)}
        status, data = self._request(
            "POST", meta.device_authorization_endpoint, **self._client_auth(meta, form)
        )
        if status != 200:
            raise ProviderError(f"the device authorization was refused: {_oauth_error(data)}")
        try:
            return DeviceAuthorization(
                device_code=str(data["device_code"]),
                user_code=str(data["user_code"]),
                verification_uri=str(data["verification_uri"]),
                verification_uri_complete=_optional(data, "verification_uri_complete"),
                expires_in=int(data.get("expires_in", 600)),
                interval=max(1, int(data.get("interval", 5))),
            )
        except (KeyError, TypeError, ValueError):
            raise ProviderError("the device authorization answer is incomplete") from None

    def poll_device(self, device_code: str, interval: int) -> Tokens:
        """The tokens once the user approved; :class:`DevicePending` until then."""
        return self._token_request(
            {"grant_type": DEVICE_GRANT, "device_code": device_code}, pending_interval=interval
        )

    def _token_request(self, form: dict[str, str], pending_interval: int | None = None) -> Tokens:
        meta = self.metadata()
        status, data = self._request("POST", meta.token_endpoint, **self._client_auth(meta, form))
        if status != 200:
            error = data.get("error")
            if pending_interval is not None and error == "authorization_pending":
                raise DevicePending(pending_interval)
            if pending_interval is not None and error == "slow_down":
                raise DevicePending(pending_interval + 5)
            raise SsoRefused(f"the identity provider refused the login: {_oauth_error(data)}")
        id_token = data.get("id_token")
        if not isinstance(id_token, str):
            raise SsoRefused("the identity provider sent no ID token (is 'openid' a scope?)")
        access = data.get("access_token")
        return Tokens(id_token, access if isinstance(access, str) else None)

    def _client_auth(self, meta: ProviderMetadata, form: dict[str, str]) -> dict[str, Any]:
        """The request's form and client authentication, basic unless only post is offered."""
        cfg = self.config
        if "client_secret_basic" not in meta.token_auth_methods and (
            "client_secret_post" in meta.token_auth_methods
        ):
            return {
                "data": {**form, "client_id": cfg.client_id, "client_secret": cfg.client_secret}
            }
        # RFC 6749 2.3.1: both are form-encoded before they are joined.
        auth = (quote(cfg.client_id, safe=""), quote(cfg.client_secret, safe=""))
        return {"data": {**form, "client_id": cfg.client_id}, "auth": auth}

    # -- ID tokens -----------------------------------------------------------------

    def verify_id_token(self, id_token: str, nonce: str | None) -> dict[str, Any]:
        """The claims of ``id_token`` if every check passes; :class:`SsoRefused` naming the one
        that failed otherwise. ``nonce`` None (the device grant) skips the nonce check."""
        meta = self.metadata()
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.InvalidTokenError:
            raise SsoRefused("the ID token is not a JWT") from None
        algorithm = header.get("alg")
        allowed = ASYMMETRIC_ALGORITHMS.intersection(meta.signing_algorithms)
        if algorithm not in allowed:
            raise SsoRefused(
                f"the ID token is signed with {str(algorithm)[:20]!r}, "
                f"not one of {', '.join(sorted(allowed)) or 'no usable algorithm'}"
            )
        key = self._signing_key(header.get("kid"))
        try:
            claims = jwt.decode(
                id_token,
                key,
                algorithms=[algorithm],
                audience=self.config.client_id,
                issuer=meta.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.ExpiredSignatureError:
            raise SsoRefused("the ID token has expired") from None
        except jwt.InvalidAudienceError:
            raise SsoRefused("the ID token was issued to another client") from None
        except jwt.InvalidIssuerError:
            raise SsoRefused("the ID token comes from another issuer") from None
        except jwt.InvalidSignatureError:
            raise SsoRefused("the ID token's signature does not verify") from None
        except jwt.InvalidTokenError as exc:
            raise SsoRefused(f"the ID token is not valid: {exc}") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.config.client_id:
            raise SsoRefused("the ID token was issued to another client")
        if nonce is not None:
            given = claims.get("nonce")
            if not isinstance(given, str) or not hmac.compare_digest(given, nonce):
                raise SsoRefused("the ID token's nonce does not match this login")
        return claims

    def _signing_key(self, kid: object) -> Any:
        if not isinstance(kid, str) or not kid:
            raise SsoRefused("the ID token names no signing key")
        jwks = self._jwks
        assert jwks is not None  # set with the metadata
        try:
            return jwks.get_signing_key(kid).key
        except jwt.PyJWKClientConnectionError:
            raise ProviderError("the identity provider's keys could not be fetched") from None
        except jwt.PyJWKClientError:
            raise SsoRefused(
                "the ID token is signed with a key the provider does not publish"
            ) from None

    # -- identities ----------------------------------------------------------------

    def identity(self, tokens: Tokens, nonce: str | None) -> Identity:
        """Verify the ID token and map its claims (completed from userinfo when it lacks them)."""
        claims = self.verify_id_token(tokens.id_token, nonce)
        cfg = self.config
        wanted = (cfg.username_claim, cfg.groups_claim)
        meta = self.metadata()
        if any(c not in claims for c in wanted) and meta.userinfo_endpoint and tokens.access_token:
            status, info = self._request(
                "GET",
                meta.userinfo_endpoint,
                headers={"Authorization": f"Bearer {tokens.access_token}"},
            )
            if status == 200 and info.get("sub") == claims["sub"]:
                claims = {**{k: info[k] for k in wanted if k in info}, **claims}
        username = claims.get(cfg.username_claim)
        if not isinstance(username, str) or not username:
            raise SsoRefused(f"the identity provider gave no {cfg.username_claim!r} claim")
        return Identity(
            issuer=meta.issuer,
            subject=str(claims["sub"]),
            username=username,
            groups=_groups(claims.get(cfg.groups_claim)),
        )

    def logout_url(self, post_logout_redirect_uri: str) -> str | None:
        """Where the browser ends its provider session, when the provider offers it."""
        endpoint = self.metadata().end_session_endpoint
        if endpoint is None:
            return None
        query = urlencode(
            {
                "client_id": self.config.client_id,
                "post_logout_redirect_uri": post_logout_redirect_uri,
            }
        )
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


def _groups(value: object) -> tuple[str, ...]:
    """Group names usable as ``group:NAME``: strings of printable characters, bounded.

    Anything else is left out: a group condastore cannot name grants nothing.
    """
    items: Sequence[object] = [value] if isinstance(value, str) else value or []  # type: ignore[assignment]
    if not isinstance(items, (list, tuple)):
        return ()
    names = {
        g
        for g in items
        if isinstance(g, str) and 0 < len(g) <= MAX_GROUP_LENGTH and g.isprintable()
    }
    return tuple(sorted(names)[:MAX_GROUPS])


def _optional(doc: dict, key: str) -> str | None:
    value = doc.get(key)
    return str(value) if isinstance(value, str) and value else None


def _oauth_error(data: dict) -> str:
    error = str(data.get("error", "unknown error"))[:100]
    description = data.get("error_description")
    return f"{error} ({str(description)[:300]})" if description else error


class _GatedJWKClient(jwt.PyJWKClient):
    """PyJWT's JWKS client (cache, refetch on an unknown key id), fetching through the gate."""

    def __init__(self, uri: str, owner: OidcClient, cooldown: float) -> None:
        super().__init__(uri, cache_jwk_set=True, lifespan=3600, cooldown_duration=cooldown)
        self._owner = owner

    def fetch_data(self) -> Any:
        try:
            status, data = self._owner._request("GET", self.uri)
        except ProviderError as exc:
            raise jwt.PyJWKClientConnectionError(exc.message) from None
        if status != 200:
            raise jwt.PyJWKClientConnectionError(f"the JWKS answered {status}")
        if self.jwk_set_cache is not None:
            self.jwk_set_cache.put(data)  # type: ignore[arg-type]
        self._last_successful_fetch = time.monotonic()
        return data
