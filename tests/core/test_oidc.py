"""ID token verification against a provider of our own making: keys we hold sign forged tokens.

The fake provider serves a real discovery document and JWKS over HTTP on
loopback; the client under test fetches them as it would from any provider.
"""

from __future__ import annotations

import time

import jwt
import pytest

from condastore_core.auth.oidc import OidcClient, OidcConfig, SsoRefused, Tokens, _groups
from condastore_core.channels.gate import ChannelRefused, gate_for
from condastore_core.settings import load_settings
from tests.support.fake_provider import FakeProvider, id_token, new_key

CLIENT = "condastore"


@pytest.fixture
def provider():
    with FakeProvider.serving() as fake:
        yield fake


def oidc_client(issuer: str) -> OidcClient:
    gate = gate_for(load_settings({}, environ={}))  # loopback refused but for the issuer
    return OidcClient(OidcConfig(issuer, CLIENT, "secret"), gate, jwks_refresh_cooldown=0)


@pytest.fixture
def signing(provider):
    key, jwk = new_key("k1")
    provider.keys = [jwk]
    return key


def test_a_valid_id_token_is_accepted(provider, signing):
    claims = oidc_client(provider.issuer).verify_id_token(
        id_token(signing, "k1", provider.issuer), "the nonce"
    )
    assert claims["sub"] == "subject-1"


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"nonce": "another nonce"}, "nonce does not match"),
        ({"nonce": None}, "nonce does not match"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "has expired"),
        ({"aud": "another-client"}, "issued to another client"),
        ({"aud": [CLIENT, "another-client"]}, "issued to another client"),
        ({"aud": [CLIENT, "another-client"], "azp": "another-client"}, "another client"),
        ({"iss": "http://127.0.0.1:1"}, "comes from another issuer"),
        ({"sub": None}, "not valid"),
    ],
)
def test_forged_id_tokens_are_refused_naming_the_check(provider, signing, claims, message):
    token = id_token(signing, "k1", provider.issuer, **claims)
    with pytest.raises(SsoRefused, match=message):
        oidc_client(provider.issuer).verify_id_token(token, "the nonce")


def test_a_token_signed_with_another_key_is_refused(provider, signing):
    other, _ = new_key("k1")  # the published key id, but not the published key
    with pytest.raises(SsoRefused, match="signature does not verify"):
        oidc_client(provider.issuer).verify_id_token(
            id_token(other, "k1", provider.issuer), "the nonce"
        )


def test_a_token_naming_an_unpublished_key_is_refused(provider, signing):
    other, _ = new_key("k-unknown")
    with pytest.raises(SsoRefused, match="does not publish"):
        oidc_client(provider.issuer).verify_id_token(
            id_token(other, "k-unknown", provider.issuer), "the nonce"
        )


def test_symmetric_and_unsigned_tokens_are_refused(provider, signing):
    """HS256 keyed with the public key's text (the classic confusion), and alg none."""
    now = int(time.time())
    payload = {"iss": provider.issuer, "sub": "x", "aud": CLIENT, "iat": now, "exp": now + 60}
    forged = [
        jwt.encode(
            payload, "a shared secret of thirty-two bytes", algorithm="HS256", headers={"kid": "k1"}
        ),
        jwt.encode(payload, None, algorithm="none", headers={"kid": "k1"}),
    ]
    client = oidc_client(provider.issuer)
    for token in forged:
        with pytest.raises(SsoRefused, match="not one of RS256"):
            client.verify_id_token(token, None)


def test_keys_rotated_at_the_provider_are_fetched_again(provider, signing):
    client = oidc_client(provider.issuer)
    client.verify_id_token(id_token(signing, "k1", provider.issuer), "the nonce")
    assert provider.jwks_fetches == 1
    new, jwk = new_key("k2")
    provider.keys = [jwk]  # the provider rotated: k1 is gone, k2 signs
    claims = client.verify_id_token(id_token(new, "k2", provider.issuer), "the nonce")
    assert claims["sub"] == "subject-1"
    assert provider.jwks_fetches == 2
    # a known key needs no fetch
    client.verify_id_token(id_token(new, "k2", provider.issuer), "the nonce")
    assert provider.jwks_fetches == 2


def test_unknown_key_ids_refetch_at_most_once_per_cooldown(provider, signing):
    client = OidcClient(
        OidcConfig(provider.issuer, CLIENT, "secret"),
        gate_for(load_settings({}, environ={})),
        jwks_refresh_cooldown=300,
    )
    client.verify_id_token(id_token(signing, "k1", provider.issuer), "the nonce")
    other, _ = new_key("forged")
    for _ in range(5):
        with pytest.raises(SsoRefused):
            client.verify_id_token(id_token(other, "forged", provider.issuer), "the nonce")
    assert provider.jwks_fetches == 1


def test_a_provider_calling_itself_by_another_name_is_refused(provider, signing):
    provider.claimed_issuer = "https://login.example.org"
    with pytest.raises(SsoRefused, match="names another issuer"):
        oidc_client(provider.issuer).metadata()


def test_endpoints_outside_the_issuer_pass_the_channel_gate(provider, signing):
    """The issuer is allowed as configured; a JWKS elsewhere on loopback is not."""
    provider.jwks_uri = "http://127.0.0.2:9/jwks"
    client = oidc_client(provider.issuer)
    with pytest.raises(ChannelRefused, match="may not be fetched"):
        client.verify_id_token(id_token(signing, "k1", provider.issuer), "the nonce")


def test_userinfo_is_not_asked_when_the_id_token_has_the_claims(provider, signing):
    token = id_token(signing, "k1", provider.issuer, preferred_username="ada", groups=["a"])
    identity = oidc_client(provider.issuer).identity(Tokens(token, None), "the nonce")
    assert (identity.username, identity.groups, identity.subject) == ("ada", ("a",), "subject-1")


def test_groups_condastore_cannot_name_are_left_out():
    assert _groups(["devs", "", "x" * 500, 3, "tab\there", "ops"]) == ("devs", "ops")
    assert _groups("solo") == ("solo",)
    assert _groups({"not": "a list"}) == ()
