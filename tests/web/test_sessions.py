"""Web sessions: the login form without JavaScript, CSRF bound to the session, safe ``next``
targets, stale session cookies that lead back to the login form, and cookie flags."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import requests

from condastore_core.service import users
from condastore_web.api.sessions import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from condastore_web.app import create_app
from tests.support.live_server import live_server

PASSWORD = "a long password"


@pytest.fixture
def site(ctx):
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    users.create_user(ctx, "mallory", PASSWORD)
    with live_server(create_app(ctx)) as url:
        yield url


def form_login(url: str, session: requests.Session | None = None, **fields: str):
    data = {"username": "ada", "password": PASSWORD, **fields}
    return (session or requests).post(
        f"{url}/ui/login", data=data, allow_redirects=False, timeout=10
    )


def logged_in(url: str, name: str = "ada") -> requests.Session:
    s = requests.Session()
    r = form_login(url, s, username=name)
    assert r.status_code == 303, r.text[:300]
    return s


def test_a_plain_form_post_logs_in_and_redirects_to_next(site):
    s = requests.Session()
    r = form_login(site, s, next="/ui/builds?status=FAILED")
    assert r.status_code == 303
    assert r.headers["Location"] == "/ui/builds?status=FAILED"
    assert s.cookies.get(SESSION_COOKIE) and s.cookies.get(CSRF_COOKIE)
    page = s.get(f"{site}/ui/builds", timeout=10)
    assert page.status_code == 200 and "ada" in page.text and "log out" in page.text


def test_the_login_form_posts_without_javascript(site):
    page = requests.get(f"{site}/ui/login?next=/ui/builds", timeout=10).text
    assert '<form class="card" method="post" action="/ui/login"' in page
    assert 'name="next" value="/ui/builds"' in page
    assert "onsubmit" not in page


def test_a_wrong_password_shows_the_form_again_with_the_reason(site):
    r = form_login(site, password="wrong")
    assert r.status_code == 401
    assert "wrong user name or password" in r.text and 'name="password"' in r.text
    assert SESSION_COOKIE not in r.cookies


def test_another_sites_page_cannot_log_the_browser_in(site):
    r = requests.post(
        f"{site}/ui/login",
        data={"username": "ada", "password": PASSWORD},
        headers={"Origin": "http://elsewhere.example"},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 403 and SESSION_COOKIE not in r.cookies
    r = requests.post(
        f"{site}/ui/login",
        data={"username": "ada", "password": PASSWORD},
        headers={"Origin": site},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 303 and SESSION_COOKIE in r.cookies


def test_an_oversized_login_form_is_refused(site):
    r = requests.post(
        f"{site}/ui/login",
        data={"username": "ada", "password": "x" * 20_000},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 413 and SESSION_COOKIE not in r.cookies


def test_login_answers_on_slash_login_too(site):
    r = requests.get(f"{site}/login?next=/ui/builds", allow_redirects=False, timeout=10)
    assert r.status_code in (301, 302, 303, 307, 308)
    assert r.headers["Location"] == "/ui/login?next=/ui/builds"


@pytest.mark.parametrize(
    "target",
    [
        "http://elsewhere.example/",
        "https://elsewhere.example/ui/builds",
        "//elsewhere.example/ui/",
        "/\\elsewhere.example",
        "\\\\elsewhere.example",
        "/%2F/elsewhere.example",
        "%2F%2Felsewhere.example",
        "/%5Celsewhere.example",
        "/ui/..//elsewhere.example",
        "/ui/%2e%2e//elsewhere.example",
        "/%252F%252Felsewhere.example",
        "javascript:alert(1)",
        " //elsewhere.example",
        "/ui/\r\nSet-Cookie: x=y",
        "/api/v1/tokens",
    ],
)
def test_next_only_leads_to_pages_of_this_site(site, target):
    r = form_login(site, next=target)
    assert r.status_code == 303
    assert r.headers["Location"] == "/ui/environments"
    page = requests.get(f"{site}/ui/login", params={"next": target}, timeout=10).text
    assert "elsewhere" not in page and "javascript:" not in page


def test_csrf_token_is_bound_to_the_session(site):
    ada, mallory = logged_in(site, "ada"), logged_in(site, "mallory")
    body = {"name": "x1", "password": PASSWORD}
    assert ada.post(f"{site}/api/v1/users", json=body, timeout=10).status_code == 403
    # Another session's token (a cookie an attacker planted, or their own) is refused.
    planted = {CSRF_HEADER: mallory.cookies[CSRF_COOKIE]}
    ada.cookies.set(CSRF_COOKIE, mallory.cookies[CSRF_COOKIE])
    r = ada.post(f"{site}/api/v1/users", json=body, headers=planted, timeout=10)
    assert r.status_code == 403 and CSRF_HEADER in r.json()["error"]["message"]
    # Any value planted as both cookie and header is refused: it must derive from the session.
    ada.cookies.set(CSRF_COOKIE, "chosen-by-attacker")
    r = ada.post(
        f"{site}/api/v1/users", json=body, headers={CSRF_HEADER: "chosen-by-attacker"}, timeout=10
    )
    assert r.status_code == 403
    # The page carries the session's own token, and it works.
    token = logged_in_token(ada, site)
    r = ada.post(f"{site}/api/v1/users", json=body, headers={CSRF_HEADER: token}, timeout=10)
    assert r.status_code == 201, r.text


def logged_in_token(s: requests.Session, url: str) -> str:
    page = s.get(f"{url}/ui/environments", timeout=10).text
    marker = '<meta name="csrf-token" content="'
    assert marker in page
    return page.split(marker, 1)[1].split('"', 1)[0]


@pytest.mark.parametrize("how", ["revoked", "expired"])
def test_a_stale_session_cookie_leads_to_the_login_form(site, ctx, how):
    s = logged_in(site)
    if how == "revoked":
        who, _ = users.principal_for_token(ctx, s.cookies[SESSION_COOKIE])
        users.revoke_token(ctx, who.token_id)
    else:
        token, _ = ctx.signer.issue("ada", dt.timedelta(seconds=-60), kind="session")
        s.cookies.set(SESSION_COOKIE, token, domain="127.0.0.1", path="/")
    stale = s.cookies[SESSION_COOKIE]
    r = s.get(f"{site}/ui/login", timeout=10, allow_redirects=False)
    assert r.status_code == 200 and 'name="password"' in r.text
    assert SESSION_COOKIE not in s.cookies  # the answer cleared it
    s.cookies.set(SESSION_COOKIE, stale, domain="127.0.0.1", path="/")  # another tab still sends it
    r = s.get(f"{site}/ui/builds/1", timeout=10, allow_redirects=False)
    assert r.status_code == 303
    assert r.headers["Location"] == "/ui/login?next=/ui/builds/1"
    s.cookies.set(SESSION_COOKIE, stale, domain="127.0.0.1", path="/")
    r = form_login(site, s)  # logging in again works while the stale cookie is sent
    assert r.status_code == 303
    assert "log out" in s.get(f"{site}/ui/environments", timeout=10).text


def test_cookies_are_secure_over_https_only_when_the_proxy_is_trusted(ctx, tmp_path):
    users.create_user(ctx, "ada", PASSWORD)
    forwarded = {"X-Forwarded-Proto": "https"}
    with live_server(create_app(ctx)) as url:
        plain = requests.post(
            f"{url}/ui/login",
            data={"username": "ada", "password": PASSWORD},
            headers=forwarded,
            allow_redirects=False,
            timeout=10,
        )
    assert "secure" not in plain.headers["Set-Cookie"].lower()
    ctx.settings = dataclasses.replace(ctx.settings, trust_proxy_headers=True)
    with live_server(create_app(ctx)) as url:
        r = requests.post(
            f"{url}/ui/login",
            data={"username": "ada", "password": PASSWORD},
            headers=forwarded,
            allow_redirects=False,
            timeout=10,
        )
        api = requests.post(
            f"{url}/api/v1/auth/login",
            json={"username": "ada", "password": PASSWORD},
            headers=forwarded,
            timeout=10,
        )
    for answer in (r, api):
        cookies = answer.raw.headers.getlist("Set-Cookie")
        assert len(cookies) == 2 and all("Secure" in c for c in cookies), cookies
        assert any("HttpOnly" in c for c in cookies if c.startswith(SESSION_COOKIE))
