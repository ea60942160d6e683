"""Single sign-on against a real OpenID provider (node-oidc-provider) on loopback.

The provider's own pages are filled in with ``requests`` here (Chromium does
the same in ``tests/ui/test_sso_browser.py``). The installation keeps the
channel gate's defaults, which refuse loopback: the provider is reached only
because it is the configured issuer.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from condastore_core.auth.oidc import OidcClient, OidcConfig, SsoRefused
from condastore_core.auth.rbac import Action, Principal
from condastore_core.channels.gate import gate_for
from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.service import namespaces, users
from condastore_core.service.context import Context
from condastore_core.settings import load_settings
from condastore_web.api.sso import client_for
from condastore_web.app import create_app
from tests.support.fake_provider import FakeProvider, id_token, new_key
from tests.support.identity_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    client,
    identity_provider,
    provider_install,
    submit_forms,
)
from tests.support.live_server import live_server
from tests.support.net import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
#: Another application registered at the same provider.
OTHER_CLIENT = client("http://127.0.0.1:9", "other-app", "other secret")


@pytest.fixture(scope="module")
def install():
    return provider_install()


class Site:
    def __init__(self, url, ctx, provider):
        self.url, self.ctx, self.provider = url, ctx, provider

    def rights(self, name: str, namespace: str = "team") -> bool:
        user = users.get_user(self.ctx, name)
        who = Principal(name=user.name, groups=frozenset(user.groups))
        return users.access_policy(self.ctx).can(who, Action.WRITE, namespace, "env")


def make_site(tmp_path, install, **settings):
    port = free_port()
    values = {
        "data_dir": tmp_path / "data",
        "tarball": False,
        "oidc_issuer": f"http://127.0.0.1:{port}",
        "oidc_client_id": CLIENT_ID,
        "oidc_client_secret": CLIENT_SECRET,
        "oidc_scopes": ("openid", "profile", "groups"),
        **settings,
    }
    ctx = Context.from_settings(load_settings(values, environ={}))
    ctx.jobs = InProcessQueue(ctx)
    namespaces.create_namespace(ctx, "team")
    users.add_role_binding(ctx, "group:devs", "team/*", "editor")
    return ctx, port


@pytest.fixture
def site(tmp_path, install):
    ctx, port = make_site(tmp_path, install)
    with (
        live_server(create_app(ctx)) as url,
        identity_provider(install, tmp_path, port, [client(url), OTHER_CLIENT]) as provider,
    ):
        yield Site(url, ctx, provider)
    ctx.jobs.shutdown()


def browser_login(site: Site, login: str, session: requests.Session | None = None):
    """Log in through /ui/login/sso as ``login``; returns the session and the last answer."""
    session = session or requests.Session()
    start = session.get(f"{site.url}/ui/login/sso?next=/ui/builds", allow_redirects=False)
    assert start.status_code == 303, start.text
    answer = submit_forms(session, start, login, stop_at=f"{site.url}/ui/login/callback")
    callback = answer.headers["Location"]
    final = session.get(callback, allow_redirects=False)
    return session, final, callback


def test_first_login_creates_the_user_with_the_provider_groups(site):
    site.provider.set_groups("grace", ["devs", "readers"])
    session, final, _ = browser_login(site, "grace")
    assert final.status_code == 303, final.text
    assert final.headers["Location"] == "/ui/builds"
    me = session.get(f"{site.url}/api/v1/auth/me").json()
    assert me["name"] == "grace"
    assert me["groups"] == ["devs", "readers"]
    assert site.rights("grace")


def test_a_group_removed_at_the_provider_takes_its_rights_at_the_next_login(site):
    users.create_user(site.ctx, "ken", None, groups=["local-admins"])  # pre-registered
    site.provider.set_groups("ken", ["devs"])
    browser_login(site, "ken")
    assert site.rights("ken")
    assert users.get_user(site.ctx, "ken").groups == ["devs", "local-admins"]

    site.provider.set_groups("ken", ["other"])
    session, final, _ = browser_login(site, "ken")
    assert final.status_code == 303
    assert not site.rights("ken")
    # the provider's groups are replaced, the administrator's stay
    assert users.get_user(site.ctx, "ken").groups == ["local-admins", "other"]
    me = session.get(f"{site.url}/api/v1/auth/me").json()
    assert me["groups"] == ["local-admins", "other"]


def test_a_tampered_state_is_refused(site):
    session = requests.Session()
    start = session.get(f"{site.url}/ui/login/sso", allow_redirects=False)
    answer = submit_forms(session, start, "eve", stop_at=f"{site.url}/ui/login/callback")
    parts = urlsplit(answer.headers["Location"])
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    tampered = {**query, "state": query["state"][:-2] + "xx"}
    refused = session.get(f"{site.url}/ui/login/callback?{urlencode(tampered)}")
    assert refused.status_code == 401
    assert "state does not match" in refused.text
    assert "condastore_session" not in session.cookies


def test_a_callback_from_another_browser_is_refused(site):
    """Login CSRF: someone's own callback URL, opened in the victim's browser, logs no one in."""
    _, _, callback = browser_login(site, "mallory", requests.Session())
    # browser_login used that callback already; a fresh one is made for the attacker
    attacker = requests.Session()
    start = attacker.get(f"{site.url}/ui/login/sso", allow_redirects=False)
    answer = submit_forms(attacker, start, "mallory", stop_at=f"{site.url}/ui/login/callback")
    victim = requests.Session()
    refused = victim.get(answer.headers["Location"], allow_redirects=False)
    assert refused.status_code == 401
    assert "not started in this browser" in refused.text
    replayed = requests.get(callback, allow_redirects=False)
    assert replayed.status_code == 401
    assert "already used" in replayed.text, replayed.text


def test_the_provider_refusing_the_login_is_shown(site):
    session = requests.Session()
    start = session.get(f"{site.url}/ui/login/sso", allow_redirects=False)
    state = parse_qs(urlsplit(start.headers["Location"]).query)["state"][0]
    answer = session.get(
        f"{site.url}/ui/login/callback",
        params={"state": state, "error": "access_denied", "error_description": "no <b>"},
    )
    assert answer.status_code == 401
    assert "access_denied (no &lt;b&gt;)" in answer.text


def test_only_pre_registered_users_may_log_in_when_so_configured(tmp_path, install):
    ctx, port = make_site(tmp_path, install, oidc_create_users=False)
    users.create_user(ctx, "known", None)
    with (
        live_server(create_app(ctx)) as url,
        identity_provider(install, tmp_path, port, [client(url)]) as provider,
    ):
        site = Site(url, ctx, provider)
        _, final, _ = browser_login(site, "stranger")
        assert final.status_code == 401
        assert "not registered here" in final.text
        _, final, _ = browser_login(site, "known")
        assert final.status_code == 303
    ctx.jobs.shutdown()


def test_an_issuer_that_names_itself_otherwise_is_refused(tmp_path, install):
    """The provider answers at localhost but calls itself 127.0.0.1: not the configured one."""
    ctx, port = make_site(tmp_path, install)
    ctx.settings = dataclasses.replace(ctx.settings, oidc_issuer=f"http://localhost:{port}")
    with (
        live_server(create_app(ctx)) as url,
        identity_provider(install, tmp_path, port, [client(url)]),
    ):
        answer = requests.get(f"{url}/ui/login/sso", allow_redirects=False)
    assert answer.status_code == 401
    assert "names another issuer" in answer.text
    ctx.jobs.shutdown()


def test_logout_ends_the_provider_session_too(site):
    session, _, _ = browser_login(site, "lin")
    csrf = session.cookies["condastore_csrf"]
    answer = session.post(f"{site.url}/api/v1/auth/sso/logout", headers={"X-CSRF-Token": csrf})
    target = answer.json()["next"]
    assert target.startswith(f"{site.provider.issuer}/session/end")
    assert "condastore_session" not in session.cookies
    assert session.get(f"{site.url}/api/v1/auth/me").status_code == 401
    # the provider asks to confirm, then sends the browser back to our login page
    back = submit_forms(session, session.get(target, allow_redirects=False), "lin")
    assert back.url.startswith(f"{site.url}/ui/login") or "signed out" in back.text.lower()
    # logging in again needs the provider's login page again: its session ended
    start = session.get(f"{site.url}/ui/login/sso", allow_redirects=False)
    page = session.get(start.headers["Location"], allow_redirects=True)
    assert 'name="login"' in page.text, page.text


def test_password_login_can_be_switched_off(tmp_path, install):
    ctx, _ = make_site(tmp_path, install, password_login=False)
    users.create_user(ctx, "pat", "a long password")
    with live_server(create_app(ctx)) as url:
        refused = requests.post(
            f"{url}/api/v1/auth/login", json={"username": "pat", "password": "a long password"}
        )
        page = requests.get(f"{url}/ui/login").text
        basic = requests.get(f"{url}/api/v1/auth/me", auth=("pat", "a long password"))
    assert refused.status_code == 401
    assert "password login is switched off" in refused.json()["error"]["message"]
    assert basic.status_code == 401
    assert 'name="password"' not in page
    assert 'href="/ui/login/sso' in page
    ctx.jobs.shutdown()


def _cli(url: str, credentials, *args: str) -> subprocess.Popen:
    env = {**os.environ, "CONDASTORE_CREDENTIALS": str(credentials)}
    env.pop("CONDASTORE_TOKEN", None)
    return subprocess.Popen(
        [sys.executable, "-m", "condastore_web", "login", "--sso", "--url", url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _lines_until(proc: subprocess.Popen, marker: str) -> list[str]:
    lines: list[str] = []
    timer = threading.Timer(60, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line.strip())
            if marker in line:
                return lines
    finally:
        timer.cancel()
    raise AssertionError(f"no {marker!r} in the CLI's output: {lines} {proc.stderr.read()}")  # type: ignore[union-attr]


def _stored_token_works(url: str, credentials, name: str) -> None:
    import json

    token = json.loads(credentials.read_text())["tokens"][url]
    me = requests.get(f"{url}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["name"] == name
    # registry clients keep using condastore tokens: HTTP Basic with the token as password
    basic = requests.get(f"{url}/api/v1/auth/me", auth=(name, token))
    assert basic.json()["name"] == name


def test_cli_logs_in_with_the_device_flow(site, tmp_path):
    site.provider.set_groups("dev", ["devs"])
    credentials = tmp_path / "credentials.json"
    proc = _cli(site.url, credentials)
    lines = _lines_until(proc, "enter the code")
    uri = lines[-2].removeprefix("To log in, open ")
    code = lines[-1].removeprefix("and enter the code ")
    assert uri == f"{site.provider.issuer}/device"
    session = requests.Session()
    done = submit_forms(session, session.get(uri, allow_redirects=False), "dev", user_code=code)
    assert done.status_code == 200, done.text
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert f"logged in to {site.url} as dev" in out
    _stored_token_works(site.url, credentials, "dev")
    assert site.rights("dev")


def test_cli_logs_in_through_a_loopback_redirect(site, tmp_path):
    credentials = tmp_path / "credentials.json"
    proc = _cli(site.url, credentials, "--browser")
    lines = _lines_until(proc, f"{site.provider.issuer}/auth?")
    session = requests.Session()
    first = session.get(lines[-1], allow_redirects=False)
    done = submit_forms(session, first, "loop", stop_at="http://127.0.0.1:0")
    assert "You are logged in" in done.text, done.text
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    _stored_token_works(site.url, credentials, "loop")


def test_cli_one_time_codes_need_the_cli_verifier(site):
    """Another program on the machine that sees the loopback redirect cannot use its code."""
    api = f"{site.url}/api/v1/auth/sso"
    started = requests.post(
        f"{api}/cli",
        json={
            "redirect_uri": "http://127.0.0.1:9/callback",
            "code_challenge": "A" * 43,
            "state": "s" * 20,
        },
    ).json()
    session = requests.Session()
    first = session.get(started["authorization_url"], allow_redirects=False)
    answer = submit_forms(session, first, "thief", stop_at="http://127.0.0.1:9/")
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    refused = requests.post(f"{api}/token", json={"code": code, "code_verifier": "B" * 43})
    assert refused.status_code == 401
    assert "code verifier does not match" in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    "redirect",
    [
        "http://evil.example/callback",
        "https://127.0.0.1:8000/callback",
        "http://127.0.0.1/callback",
        "http://user@127.0.0.1:8000/callback",
        "http://127.0.0.1:8000/callback?x=1",
        "http://10.0.0.1:8000/callback",
    ],
)
def test_cli_redirects_go_only_to_loopback(site, redirect):
    answer = requests.post(
        f"{site.url}/api/v1/auth/sso/cli",
        json={"redirect_uri": redirect, "code_challenge": "A" * 43, "state": "s" * 20},
    )
    assert answer.status_code == 400
    assert "loopback" in answer.json()["error"]["message"]


def test_an_id_token_issued_to_another_client_is_refused(site):
    """A real ID token of the same provider, issued to another application, logs no one in."""
    other = OidcClient(
        OidcConfig(site.provider.issuer, "other-app", "other secret", ("openid",)),
        gate_for(site.ctx.settings),
    )
    redirect = "http://127.0.0.1:9/ui/login/callback"
    session = requests.Session()
    start = session.get(
        other.authorization_url(redirect, "state-of-the-other-app", "n0nce", "v" * 43),
        allow_redirects=False,
    )
    answer = submit_forms(session, start, "grace", stop_at=redirect)
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    tokens = other.exchange_code(code, redirect, "v" * 43)
    assert other.verify_id_token(tokens.id_token, "n0nce")["sub"] == "grace"
    ours = client_for(site.ctx.settings)
    with pytest.raises(SsoRefused, match="issued to another client"):
        ours.verify_id_token(tokens.id_token, "n0nce")


def test_single_sign_on_routes_say_when_it_is_not_configured(tmp_path):
    ctx = Context.from_settings(load_settings({"data_dir": tmp_path / "data"}, environ={}))
    with live_server(create_app(ctx)) as url:
        page = requests.get(f"{url}/ui/login/sso", allow_redirects=False)
        device = requests.post(f"{url}/api/v1/auth/sso/device")
        offered = requests.get(f"{url}/api/v1/auth/sso").json()
        login_page = requests.get(f"{url}/ui/login").text
    assert page.status_code == 404
    assert "single sign-on is not configured" in page.text
    assert device.json()["error"]["message"] == "single sign-on is not configured on this server"
    assert offered == {"enabled": False, "device": False, "password_login": True}
    assert "/ui/login/sso" not in login_page
    assert 'name="password"' in login_page


def test_the_client_secret_is_never_shown(tmp_path):
    settings = load_settings(
        {"oidc_issuer": "https://id.example.org", "oidc_client_secret": "hush-hush"}, environ={}
    )
    assert "hush-hush" not in repr(settings)
    assert "hush-hush" not in repr(client_for(settings).config)  # type: ignore[union-attr]


@pytest.fixture
def forging_site(tmp_path):
    """condastore whose provider is one of our own: the tests decide what ID token it sends."""
    with FakeProvider.serving() as fake:
        key, jwk = new_key("k1")
        fake.keys = [jwk]
        settings = {
            "data_dir": tmp_path / "data",
            "oidc_issuer": fake.issuer,
            "oidc_client_id": "condastore",
            "oidc_client_secret": "secret",
        }
        ctx = Context.from_settings(load_settings(settings, environ={}))
        with live_server(create_app(ctx)) as url:
            yield url, fake, key


def _forged(fake, key, nonce: str, case: str) -> str:
    now = int(time.time())
    claims = {"nonce": nonce, "preferred_username": "forger"}
    if case == "wrong nonce":
        claims["nonce"] = "a nonce of another login"
    elif case == "expired":
        claims.update(exp=now - 3600, iat=now - 7200)
    elif case == "another client":
        claims["aud"] = "another-client"
    elif case == "unknown issuer":
        claims["iss"] = "https://id.example.org"
    if case == "wrongly signed":
        key, _ = new_key("k1")  # the published key id, not the published key
    return id_token(key, "k1", fake.issuer, **claims)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("valid", None),
        ("wrong nonce", "nonce does not match this login"),
        ("expired", "the ID token has expired"),
        ("wrongly signed", "signature does not verify"),
        ("another client", "issued to another client"),
        ("unknown issuer", "comes from another issuer"),
    ],
)
def test_the_callback_refuses_forged_id_tokens(forging_site, case, message):
    url, fake, key = forging_site
    session = requests.Session()
    start = session.get(f"{url}/ui/login/sso", allow_redirects=False)
    query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["Location"]).query).items()}
    fake.next_id_token = _forged(fake, key, query["nonce"], case)
    answer = session.get(
        f"{url}/ui/login/callback",
        params={"code": "any", "state": query["state"]},
        allow_redirects=False,
    )
    if message is None:
        assert answer.status_code == 303, answer.text
        assert session.get(f"{url}/api/v1/auth/me").json()["name"] == "forger"
    else:
        assert answer.status_code == 401
        assert message in answer.text
        assert "condastore_session" not in session.cookies
