"""Token signing keys shared by every server: any server verifies any server's tokens.

Servers behind a load balancer share nothing but the database (and Redis and
the object store): each has its own data directory here, as on two machines.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time

import jwt
import pytest
import requests
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from condastore_core.auth.keys import (
    UNKNOWN_KID_INTERVAL,
    DatabaseKeyRing,
    FileKeyRing,
    load_or_create_key,
)
from condastore_core.auth.rbac import Unauthenticated
from condastore_core.auth.tokens import ALGORITHM, ISSUER, TokenSigner
from condastore_core.layout import signing_key_path
from condastore_core.service import users
from condastore_core.service.context import Context
from condastore_core.settings import load_settings
from condastore_web.app import create_app
from condastore_web.cli import main as cli
from tests.support.live_server import live_server

PASSWORD = "a long enough password"


def server_context(tmp_path, database_url, name: str) -> Context:
    """One server's context: its own data directory, the shared database."""
    settings = load_settings(
        {"data_dir": tmp_path / name, "database_url": database_url, "tarball": False},
        environ={},
    )
    return Context.from_settings(settings)


def test_tokens_from_one_server_are_accepted_by_another(tmp_path, database_url):
    one = server_context(tmp_path, database_url, "server-1")
    two = server_context(tmp_path, database_url, "server-2")
    users.create_user(one, "ada", PASSWORD, admin=True)
    with live_server(create_app(one)) as url_one, live_server(create_app(two)) as url_two:
        login = requests.post(
            f"{url_one}/api/v1/auth/login", json={"username": "ada", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        api_token = login.json()["token"]
        for url in (url_one, url_two):
            r = requests.get(
                f"{url}/api/v1/namespaces", headers={"Authorization": f"Bearer {api_token}"}
            )
            assert r.status_code == 200, (url, r.text)

        basic = base64.b64encode(f"ada:{PASSWORD}".encode()).decode()
        issued = requests.get(
            f"{url_two}/auth/token",
            params={"service": "condastore", "scope": "repository:ada/app:pull"},
            headers={"Authorization": f"Basic {basic}"},
        )
        registry_token = issued.json()["token"]
        for url in (url_one, url_two):
            r = requests.get(f"{url}/v2/", headers={"Authorization": f"Bearer {registry_token}"})
            assert r.status_code == 200, (url, r.text)


def test_rotation_reaches_every_server_and_old_tokens_keep_working(tmp_path, database_url):
    one = server_context(tmp_path, database_url, "server-1")
    two = server_context(tmp_path, database_url, "server-2")
    users.create_user(one, "ada", PASSWORD, admin=True)
    old = users.issue_token(one, "ada").token
    old_kid = jwt.get_unverified_header(old)["kid"]

    result = CliRunner().invoke(
        cli,
        ["keys", "rotate", "--data-dir", str(tmp_path / "admin")],
        env={"CONDASTORE_DATABASE_URL": database_url},
    )
    assert result.exit_code == 0, result.output
    new_kid = result.output.split("key ")[1].split(";")[0]
    assert new_kid != old_kid

    three = server_context(tmp_path, database_url, "server-3")  # starts after the rotation
    new = users.issue_token(three, "ada").token
    assert jwt.get_unverified_header(new)["kid"] == new_kid
    for ctx in (one, two, three):
        assert ctx.signer.verify(old).user == "ada"
    time.sleep(UNKNOWN_KID_INTERVAL)  # a process looks for new keys at most once a second
    for ctx in (one, two, three):
        assert ctx.signer.verify(new).user == "ada"  # one and two meet the new key here
    assert one.signer.issue("ada", dt.timedelta(hours=1), kind="api")[0]


def test_keys_whose_tokens_have_all_expired_are_dropped(tmp_path, database_url):
    ctx = server_context(tmp_path, database_url, "server")
    first = ctx.signer.issue("ada", dt.timedelta(hours=1), kind="api")[0]
    ring = DatabaseKeyRing(ctx.engine)
    ring.rotate(keep_for=dt.timedelta(days=1))
    assert ctx.signer.verify(first).user == "ada"  # its successor is younger than a day
    ring.rotate(keep_for=dt.timedelta(0))
    fresh = server_context(tmp_path, database_url, "fresh")
    with pytest.raises(Unauthenticated):
        fresh.signer.verify(first)


def test_the_key_file_of_an_older_installation_is_taken_over(tmp_path, database_url):
    data_dir = tmp_path / "server"
    legacy = FileKeyRing(signing_key_path(data_dir))
    # An older token carries no key id: every key of the ring is tried.
    key = load_or_create_key(signing_key_path(data_dir))
    now = int(dt.datetime.now(dt.UTC).timestamp())
    payload = {"iss": ISSUER, "sub": "ada", "jti": "x" * 32, "iat": now, "exp": now + 60}
    without_kid = jwt.encode(payload, key, algorithm=ALGORITHM)
    with_kid = TokenSigner(legacy).issue("ada", dt.timedelta(hours=1), kind="api")[0]
    ctx = server_context(tmp_path, database_url, "server")
    assert ctx.signer.verify(without_kid).user == "ada"
    assert ctx.signer.verify(with_kid).user == "ada"


def test_a_configured_key_file_is_the_only_key(tmp_path, database_url):
    settings = load_settings(
        {
            "data_dir": tmp_path / "d",
            "database_url": database_url,
            "signing_key_path": str(tmp_path / "secret.pem"),
        },
        environ={},
    )
    ctx = Context.from_settings(settings)
    token = ctx.signer.issue("ada", dt.timedelta(hours=1), kind="api")[0]
    assert (tmp_path / "secret.pem").stat().st_mode & 0o777 == 0o600
    other = server_context(tmp_path, database_url, "other")  # keys from the database instead
    with pytest.raises(Unauthenticated):
        other.signer.verify(token)
    result = CliRunner().invoke(
        cli,
        ["keys", "rotate", "--data-dir", str(tmp_path / "d")],
        env={
            "CONDASTORE_DATABASE_URL": database_url,
            "CONDASTORE_SIGNING_KEY_PATH": str(tmp_path / "secret.pem"),
        },
    )
    assert result.exit_code != 0 and "replace that file" in result.output


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda kid, payload: jwt.encode(
                payload, Ed25519PrivateKey.generate(), algorithm=ALGORITHM, headers={"kid": kid}
            ),
            id="our-kid-another-key",
        ),
        pytest.param(
            lambda kid, payload: f"{_b64({'alg': 'none', 'kid': kid})}.{_b64(payload)}.",
            id="alg-none",
        ),
        pytest.param(
            lambda kid, payload: jwt.encode(payload, "secret", algorithm="HS256"), id="hs256"
        ),
        pytest.param(
            lambda kid, payload: f"{_b64({'alg': ALGORITHM, 'kid': 7})}.{_b64(payload)}.AAAA",
            id="kid-not-a-string",
        ),
        pytest.param(lambda kid, payload: "not.a.token", id="garbage"),
        pytest.param(
            lambda kid, payload: f"{_b64({'alg': ALGORITHM, 'kid': 'x' * 5000})}.{_b64(payload)}.x",
            id="huge-unknown-kid",
        ),
    ],
)
def test_forged_tokens_are_refused(tmp_path, database_url, make):
    ctx = server_context(tmp_path, database_url, "server")
    genuine = ctx.signer.issue("ada", dt.timedelta(hours=1), kind="api")[0]
    kid = jwt.get_unverified_header(genuine)["kid"]
    now = int(dt.datetime.now(dt.UTC).timestamp())
    payload = {"iss": ISSUER, "sub": "ada", "jti": "y" * 32, "iat": now, "exp": now + 60}
    with pytest.raises(Unauthenticated):
        ctx.signer.verify(make(kid, payload))
