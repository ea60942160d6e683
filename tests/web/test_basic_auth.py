"""HTTP Basic on the API and the registry: passwords, tokens as passwords, caching, throttling."""

from __future__ import annotations

import base64
import http.client
import json
import statistics
import time
import urllib.parse
from dataclasses import replace

import pytest

from condastore_core.auth.credentials import FailureThrottle, VerifiedCredentials
from condastore_core.service import users
from condastore_core.service.context import Context
from condastore_web.app import create_app
from tests.support.live_server import live_server

PASSWORD = "a long password"


class CountingPasswords(users.LocalPasswords):
    """The local password backend, counting how often it is asked (each ask runs scrypt)."""

    def __init__(self) -> None:
        self.calls = 0

    def authenticate(self, ctx, username, password):
        self.calls += 1
        return super().authenticate(ctx, username, password)


def basic(name: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()


class Connection:
    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)

    def get(self, path: str, authorization: str | None = None):
        headers = {"Authorization": authorization} if authorization else {}
        self.conn.request("GET", path, headers=headers)
        resp = self.conn.getresponse()
        resp.body = resp.read()
        return resp

    def login(self, name: str, password: str):
        body = json.dumps({"username": name, "password": password}).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        self.conn.request("POST", "/api/v1/auth/login", body=body, headers=headers)
        resp = self.conn.getresponse()
        resp.body = resp.read()
        return resp


@pytest.fixture
def counting():
    return CountingPasswords()


@pytest.fixture
def server(ctx, counting):
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    users.create_user(ctx, "bob", PASSWORD)
    with live_server(create_app(ctx, counting)) as url:
        yield Connection(url)


def test_a_password_with_two_dots_is_a_password(ctx, server):
    dotted = "my.pass.word"
    users.create_user(ctx, "dot", dotted)
    for path in ("/api/v1/auth/me", "/v2/"):
        assert server.get(path, basic("dot", dotted)).status == 200, path
        assert server.get(path, basic("dot", "not.my.password")).status == 401, path


def test_a_token_still_works_as_a_basic_password(ctx, server):
    token = users.issue_token(ctx, "ada").token
    assert server.get("/api/v1/auth/me", basic("ada", token)).status == 200
    assert server.get("/v2/", basic("ada", token)).status == 200
    assert server.get("/api/v1/auth/me", basic("bob", token)).status == 401  # not bob's


def test_a_basic_client_pays_for_scrypt_once(ctx, server, counting):
    for _ in range(5):
        assert server.get("/api/v1/auth/me", basic("ada", PASSWORD)).status == 200
        assert server.get("/v2/", basic("ada", PASSWORD)).status == 200
    assert counting.calls == 1
    assert server.get("/v2/", basic("ada", "a wrong password")).status == 401
    assert counting.calls == 2  # a wrong password is never served from the cache


def test_a_password_change_or_a_disabled_account_ends_cached_credentials_everywhere(
    ctx, server, counting
):
    # A second process: its own context and cache, the same database.
    other_ctx = Context.from_settings(ctx.settings)
    with live_server(create_app(other_ctx, counting)) as other_url:
        other = Connection(other_url)
        for conn in (server, other):
            assert conn.get("/api/v1/auth/me", basic("ada", PASSWORD)).status == 200
        users.set_password(ctx, "ada", "a new long password")
        for conn in (server, other):
            assert conn.get("/api/v1/auth/me", basic("ada", PASSWORD)).status == 401
            assert conn.get("/v2/", basic("ada", PASSWORD)).status == 401
            assert conn.get("/api/v1/auth/me", basic("ada", "a new long password")).status == 200
        users.delete_user(other_ctx, "ada")
        for conn in (server, other):
            assert conn.get("/api/v1/auth/me", basic("ada", "a new long password")).status == 401
    other_ctx.engine.dispose()


def test_failed_logins_are_throttled_per_user_and_per_address(ctx, server, counting):
    ctx.settings = replace(ctx.settings, login_failures_per_user=3, login_failures_per_address=5)
    for _ in range(3):
        assert server.get("/v2/", basic("bob", "a wrong password")).status == 401
    asked = counting.calls
    started = time.perf_counter()
    r = server.get("/v2/", basic("bob", PASSWORD))  # even the right password waits now
    assert r.status == 429
    assert time.perf_counter() - started < 0.05  # refused before scrypt
    assert counting.calls == asked
    assert r.getheader("Content-Type").startswith("application/json")
    assert b"TOOMANYREQUESTS" in r.body
    assert 1 <= int(r.getheader("Retry-After")) <= 60
    r = server.get("/api/v1/auth/me", basic("bob", PASSWORD))
    assert r.status == 429 and 1 <= int(r.getheader("Retry-After")) <= 60
    r = server.login("bob", PASSWORD)  # the login form is throttled alike
    assert r.status == 429 and r.getheader("Retry-After")
    # ada is not bob: she may still log in, until this address has failed too often
    assert server.get("/api/v1/auth/me", basic("ada", PASSWORD)).status == 200
    for _ in range(2):
        assert server.get("/v2/", basic("ada", "a wrong password")).status == 401
    r = server.get("/v2/", basic("nobody", "a wrong password"))
    assert r.status == 429  # five failures from this address
    assert server.get("/v2/", basic("ada", PASSWORD)).status == 200  # verified before: cached


def test_the_throttle_forgets_failures_after_its_window():
    now = [1000.0]
    throttle = FailureThrottle(limit=2, window=60, clock=lambda: now[0])
    throttle.record("user:bob")
    now[0] += 30
    throttle.record("user:bob")
    assert throttle.retry_after("user:bob") == 30  # the first failure leaves the window then
    now[0] += 30
    assert throttle.retry_after("user:bob") is None


def test_the_cache_keeps_no_password_and_entries_expire():
    now = [0.0]
    cache = VerifiedCredentials(ttl_seconds=60, max_entries=2, clock=lambda: now[0])
    key = cache.key("ada", "a long password")
    assert b"a long password" not in key and key != VerifiedCredentials().key("ada", PASSWORD)
    assert cache.key("a:b", "c") != cache.key("a", "b:c")
    cache.put(key, "ada", cache.stamp("hash"))
    assert cache.get(key) == ("ada", cache.stamp("hash"))
    now[0] += 61
    assert cache.get(key) is None
    for name in ("a", "b", "c"):
        cache.put(cache.key(name, "x"), name, b"")
    assert cache.get(cache.key("a", "x")) is None  # bounded: the oldest went first


def _per_request(conn: Connection, path: str, authorization: str, n: int = 60) -> float:
    """The median time of one request, best of three rounds (the machine is shared)."""
    rounds = []
    for _ in range(3):
        times = []
        for _ in range(n):
            started = time.perf_counter()
            assert conn.get(path, authorization).status == 200
            times.append(time.perf_counter() - started)
        rounds.append(statistics.median(times))
    return min(rounds)


def test_a_cached_basic_credential_costs_at_most_twice_a_bearer_token(ctx, server):
    token = users.issue_token(ctx, "ada").token
    password = basic("ada", PASSWORD)
    server.get("/api/v1/auth/me", password)  # verified once
    answer = server.get("/auth/token?scope=repository:ada/app:pull", password)
    registry_token = json.loads(answer.body)
    cases = [
        ("/api/v1/auth/me", token),
        ("/v2/", token),
        ("/v2/", registry_token["token"]),  # claims only: no database at all
    ]
    for path, bearer_token in cases:
        bearer = _per_request(server, path, f"Bearer {bearer_token}")
        cached = _per_request(server, path, password)
        print(f"{path}: basic {cached * 1e3:.2f} ms, bearer {bearer * 1e3:.2f} ms")
        assert cached <= 2 * bearer, (path, cached, bearer)
