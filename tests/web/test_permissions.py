"""Who may do what: every route against every kind of caller, with the status each gets.

Columns: anonymous, viewer of team/*, editor of team/*, another user, an admin's
token narrowed to team/*=viewer, an expired token, a revoked token, a token
signed with another key, and an installation admin. Callers that may not read
something get 404, as if it did not exist (401 when anonymous). A route added
to the app without a row here fails the test.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
import yaml
from falcon import inspect, testing
from sqlalchemy import select

from condastore_core.auth.keys import FileKeyRing
from condastore_core.auth.tokens import TokenSigner
from condastore_core.db.models import User
from condastore_core.service import environments, namespaces, users
from condastore_core.spec import EnvironmentSpec
from condastore_web import compat
from condastore_web.app import create_app
from tests.support.gate import gate_env
from tests.support.packages import PackageDef

ROLES = [
    "anonymous",
    "viewer",
    "editor",
    "other",
    "narrowed",
    "expired",
    "revoked",
    "forged",
    "admin",
]
PASSWORD = "a long password"
SPEC = "name: {name}\nchannels: ['{channel}']\ndependencies: [hello]\n"

# (method, route template, concrete path, body): statuses in ROLES order. "{build}" and
# "{binding}" are filled in from the fixture.
TABLE = [
    ("GET", "/api/v1", "/api/v1", None, "200 200 200 200 200 401 401 401 200"),
    (
        "POST",
        "/api/v1/solve",
        "/api/v1/solve",
        "solve:solved",
        "401 200 200 200 200 401 401 401 200",
    ),
    (
        "GET",
        "/api/v1/packages",
        "/api/v1/packages?q=hello&channel={channel}",
        None,
        "401 200 200 200 200 401 401 401 200",
    ),
    (
        "GET",
        "/api/v1/namespaces",
        "/api/v1/namespaces",
        None,
        "200 200 200 200 200 401 401 401 200",
    ),
    (
        "POST",
        "/api/v1/namespaces",
        "/api/v1/namespaces",
        {"name": "fresh"},
        "401 403 403 403 403 401 401 401 201",
    ),
    (
        "GET",
        "/api/v1/namespaces/{namespace}",
        "/api/v1/namespaces/team",
        None,
        "401 200 200 404 200 401 401 401 200",
    ),
    (
        "DELETE",
        "/api/v1/namespaces/{namespace}",
        "/api/v1/namespaces/empty",
        None,
        "401 404 404 404 404 401 401 401 204",
    ),
    (
        "GET",
        "/api/v1/environments",
        "/api/v1/environments",
        None,
        "200 200 200 200 200 401 401 401 200",
    ),
    (
        "POST",
        "/api/v1/environments",
        "/api/v1/environments",
        "spec:app2",
        "401 403 202 404 403 401 401 401 202",
    ),
    (
        "GET",
        "/api/v1/environments/{namespace}/{name}",
        "/api/v1/environments/team/app",
        None,
        "401 200 200 404 200 401 401 401 200",
    ),
    (
        "DELETE",
        "/api/v1/environments/{namespace}/{name}",
        "/api/v1/environments/team/gone",
        None,
        "401 403 403 404 403 401 401 401 204",
    ),
    (
        "PUT",
        "/api/v1/environments/{namespace}/{name}/current",
        "/api/v1/environments/team/app/current",
        {"build_id": "{build}"},
        "401 403 200 404 403 401 401 401 200",
    ),
    (
        "GET",
        "/api/v1/environments/{namespace}/{name}/diff",
        "/api/v1/environments/team/app/diff?from={build}&to={build}",
        None,
        "401 200 200 404 200 401 401 401 200",
    ),
    (
        "GET",
        "/api/v1/environments/{namespace}/{name}/artifacts/{kind}",
        "/api/v1/environments/team/app/artifacts/lockfile",
        None,
        "401 200 200 404 200 401 401 401 200",
    ),
    ("GET", "/api/v1/builds", "/api/v1/builds", None, "200 200 200 200 200 401 401 401 200"),
    (
        "GET",
        "/api/v1/builds/{build_id}",
        "/api/v1/builds/{build}",
        None,
        "401 200 200 404 200 401 401 401 200",
    ),
    (
        "GET",
        "/api/v1/builds/{build_id}/packages",
        "/api/v1/builds/{build}/packages",
        None,
        "401 200 200 404 200 401 401 401 200",
    ),
    (
        "GET",
        "/api/v1/builds/{build_id}/log",
        "/api/v1/builds/{build}/log",
        None,
        "401 200 200 404 200 401 401 401 200",
    ),
    (
        "GET",
        "/api/v1/builds/{build_id}/artifacts/{kind}",
        "/api/v1/builds/{build}/artifacts/explicit",
        None,
        "401 200 200 404 200 401 401 401 200",
    ),
    (
        "POST",
        "/api/v1/builds/{build_id}/artifacts/{kind}",
        "/api/v1/builds/{build}/artifacts/tarball",
        None,
        "401 403 202 404 403 401 401 401 202",
    ),
    (
        "POST",
        "/api/v1/builds/{build_id}/cancel",
        "/api/v1/builds/{build}/cancel",
        None,
        "401 403 409 404 403 401 401 401 409",
    ),
    (
        "POST",
        "/api/v1/builds/{build_id}/rebuild",
        "/api/v1/builds/{build}/rebuild",
        None,
        "401 403 202 404 403 401 401 401 202",
    ),
    (
        "POST",
        "/api/v1/auth/login",
        "/api/v1/auth/login",
        {"username": "ada", "password": PASSWORD},
        "200 200 200 200 200 401 401 401 200",
    ),
    (
        "POST",
        "/api/v1/auth/logout",
        "/api/v1/auth/logout",
        None,
        "401 204 204 204 204 401 401 401 204",
    ),
    # single sign-on is not configured in this installation
    ("GET", "/api/v1/auth/sso", "/api/v1/auth/sso", None, "200 200 200 200 200 401 401 401 200"),
    (
        "POST",
        "/api/v1/auth/sso/cli",
        "/api/v1/auth/sso/cli",
        {"redirect_uri": "http://127.0.0.1:9/cb", "code_challenge": "c" * 43, "state": "s" * 16},
        "404 404 404 404 404 401 401 401 404",
    ),
    (
        "POST",
        "/api/v1/auth/sso/token",
        "/api/v1/auth/sso/token",
        {"code": "a code", "code_verifier": "v" * 43},
        "404 404 404 404 404 401 401 401 404",
    ),
    (
        "POST",
        "/api/v1/auth/sso/device",
        "/api/v1/auth/sso/device",
        None,
        "404 404 404 404 404 401 401 401 404",
    ),
    (
        "POST",
        "/api/v1/auth/sso/device/token",
        "/api/v1/auth/sso/device/token",
        {"handle": "a handle"},
        "404 404 404 404 404 401 401 401 404",
    ),
    (
        "POST",
        "/api/v1/auth/sso/logout",
        "/api/v1/auth/sso/logout",
        None,
        "401 200 200 200 200 401 401 401 200",
    ),
    ("GET", "/api/v1/auth/me", "/api/v1/auth/me", None, "401 200 200 200 200 401 401 401 200"),
    ("POST", "/api/v1/tokens", "/api/v1/tokens", {}, "401 201 201 201 201 401 401 401 201"),
    ("GET", "/api/v1/users", "/api/v1/users", None, "401 403 403 403 403 401 401 401 200"),
    ("GET", "/api/v1/watched", "/api/v1/watched", None, "401 403 403 403 403 401 401 401 200"),
    (
        "POST",
        "/api/v1/channels/refresh",
        "/api/v1/channels/refresh",
        {"channels": ["{channel}"]},
        "401 403 403 403 403 401 401 401 200",
    ),
    (
        "POST",
        "/api/v1/users",
        "/api/v1/users",
        {"name": "newcomer", "password": PASSWORD},
        "401 403 403 403 403 401 401 401 201",
    ),
    ("GET", "/api/v1/tokens", "/api/v1/tokens", None, "401 200 200 200 200 401 401 401 200"),
    (
        "DELETE",
        "/api/v1/tokens/{token_id}",
        "/api/v1/tokens/{token}",
        None,
        "401 404 404 404 404 401 401 401 204",
    ),
    (
        "PATCH",
        "/api/v1/users/{name}",
        "/api/v1/users/victim",
        {"disabled": False},
        "401 403 403 403 403 401 401 401 200",
    ),
    (
        "PUT",
        "/api/v1/users/{name}/password",
        "/api/v1/users/victim/password",
        {"password": PASSWORD},
        "401 403 403 403 403 401 401 401 204",
    ),
    (
        "DELETE",
        "/api/v1/users/{name}",
        "/api/v1/users/victim",
        None,
        "401 403 403 403 403 401 401 401 204",
    ),
    (
        "GET",
        "/api/v1/role-bindings",
        "/api/v1/role-bindings",
        None,
        "401 403 403 403 403 401 401 401 200",
    ),
    (
        "POST",
        "/api/v1/role-bindings",
        "/api/v1/role-bindings",
        {"subject": "user:otto", "pattern": "elsewhere/*", "role": "viewer"},
        "401 403 403 403 403 401 401 401 201",
    ),
    (
        "DELETE",
        "/api/v1/role-bindings/{binding_id}",
        "/api/v1/role-bindings/{binding}",
        None,
        "401 403 403 403 403 401 401 401 204",
    ),
    (
        "GET",
        "/api/v1/policies",
        "/api/v1/policies?scope=team",
        None,
        "401 200 200 404 200 401 401 401 200",
    ),
    (
        "PUT",
        "/api/v1/policies",
        "/api/v1/policies",
        {"scope": "team", "policy": {}},
        "401 403 403 404 403 401 401 401 200",
    ),
]


@pytest.fixture
def world(ctx, make_test_channel, tmp_path):
    """A team namespace with a built environment, users of every kind, and a way to call as each."""
    channel = make_test_channel([PackageDef("hello", "1.0")])
    for name in ("team", "empty"):
        namespaces.create_namespace(ctx, name)
    for name, admin in (
        ("ada", True),
        ("vera", False),
        ("ed", False),
        ("otto", False),
        ("victim", False),
    ):
        users.create_user(ctx, name, PASSWORD, admin=admin)
    users.add_role_binding(ctx, "user:vera", "team/*", "viewer")
    users.add_role_binding(ctx, "user:ed", "team/*", "editor")
    binding = users.add_role_binding(ctx, "user:otto", "scratch/*", "viewer")
    spec = EnvironmentSpec.from_dict(
        {"name": "app", "channels": [channel], "dependencies": ["hello"]}
    )
    build = environments.submit(ctx, "team", spec)
    environments.submit(ctx, "team", spec.model_copy(update={"name": "gone"}))
    ctx.jobs.wait_idle(timeout=120)
    revoked = users.issue_token(ctx, "ada")
    users.revoke_token(ctx, revoked.token_id)
    forged, _ = TokenSigner(FileKeyRing(tmp_path / "not-our-key.pem")).issue(
        "ada", dt.timedelta(hours=1), kind="api"
    )
    expired, _ = ctx.signer.issue("ada", dt.timedelta(seconds=-60), kind="api")

    def token_for(role: str) -> str | None:  # a fresh token per call: logout revokes its own
        return {
            "anonymous": lambda: None,
            "viewer": lambda: users.issue_token(ctx, "vera").token,
            "editor": lambda: users.issue_token(ctx, "ed").token,
            "other": lambda: users.issue_token(ctx, "otto").token,
            "narrowed": lambda: users.issue_token(ctx, "ada", bindings=["team/*=viewer"]).token,
            "expired": lambda: expired,
            "revoked": lambda: revoked.token,
            "forged": lambda: forged,
            "admin": lambda: users.issue_token(ctx, "ada").token,
        }[role]()

    victims_token = users.issue_token(ctx, "victim").token_id
    fill = {
        "build": str(build.id),
        "binding": str(binding.id),
        "channel": channel,
        "token": victims_token,
    }
    return testing.TestClient(create_app(ctx)), token_for, fill


def test_every_route_has_a_row(ctx):
    served = set()
    theirs = {template for template, _ in compat.routes(ctx)}
    for route in inspect.inspect_routes(create_app(ctx)):
        if not route.path.startswith("/api/v1"):
            continue  # the registry's routes are tested in tests/registry
        if route.path in theirs:
            continue  # conda-store's routes have their table in test_compat_api.py
        path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", route.path)
        served |= {(m.method, path) for m in route.methods if not m.internal}
    served.discard(("OPTIONS", "/api/v1"))
    served = {s for s in served if s[0] != "OPTIONS"}
    assert served == {(method, template) for method, template, *_ in TABLE}


@pytest.mark.parametrize(
    ("method", "template", "path", "body", "statuses"),
    TABLE,
    ids=[f"{m} {t}" for m, t, *_ in TABLE],
)
def test_route_answers_each_caller_as_the_table_says(
    world, ctx, method, template, path, body, statuses
):
    client, token_for, fill = world
    expected = dict(zip(ROLES, (int(s) for s in statuses.split()), strict=True))
    got = {}
    for role in ROLES:
        token = token_for(role)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        payload = body
        if isinstance(body, str):  # "spec:NAME" submits to team, "solve:NAME" only solves
            kind, _, name = body.partition(":")
            payload = {"specification": SPEC.format(name=name, channel=fill["channel"])}
            if kind == "spec":
                payload["namespace"] = "team"
        elif isinstance(body, dict):
            payload = yaml.safe_load(yaml.safe_dump(body).replace("'{build}'", fill["build"]))
        result = client.simulate_request(method, path.format(**fill), json=payload, headers=headers)
        got[role] = result.status_code
        if result.status_code >= 400:
            assert result.json["error"]["status"] == result.status_code
        if result.status_code == 401:
            assert result.headers["www-authenticate"].startswith("Bearer")
        with ctx.sessions() as session:
            hashes = [h for h in session.scalars(select(User.password_hash)) if h]
        assert not any(h in result.text for h in hashes), "a password hash left the server"
    assert got == expected


def test_lists_show_only_what_the_caller_may_read(world, ctx):
    client, token_for, _ = world
    auth = lambda role: {"Authorization": f"Bearer {token_for(role)}"}  # noqa: E731
    names = lambda r: [f"{e['namespace']}/{e['name']}" for e in r.json["items"]]  # noqa: E731
    assert names(client.simulate_get("/api/v1/environments", headers=auth("viewer"))) == [
        "team/gone",
        "team/app",
    ]
    assert names(client.simulate_get("/api/v1/environments", headers=auth("other"))) == []
    assert client.simulate_get("/api/v1/builds", headers=auth("other")).json["items"] == []
    seen = client.simulate_get("/api/v1/namespaces", headers=auth("other")).json["items"]
    assert [n["name"] for n in seen] == ["otto"]
    assert client.simulate_get("/api/v1/environments").json["items"] == []


def test_tokens_cannot_escalate(world, ctx):
    client, token_for, _ = world
    viewer = {"Authorization": f"Bearer {token_for('viewer')}"}
    r = client.simulate_post("/api/v1/tokens", json={"bindings": ["team/*=editor"]}, headers=viewer)
    assert r.status_code == 403
    r = client.simulate_post("/api/v1/tokens", json={"bindings": ["*/*=viewer"]}, headers=viewer)
    assert r.status_code == 403
    narrowed = {"Authorization": f"Bearer {token_for('narrowed')}"}
    r = client.simulate_post(
        "/api/v1/tokens", json={"bindings": ["team/*=admin"]}, headers=narrowed
    )
    assert r.status_code == 403
    child = client.simulate_post("/api/v1/tokens", json={}, headers=narrowed).json
    assert child["scope"] == ["team/*=viewer"]  # a child of a narrowed token stays narrowed
    r = client.simulate_post("/api/v1/tokens", json={"expires_in": 10**9}, headers=viewer)
    assert r.status_code == 400


def test_anonymous_access_where_configured(tmp_path, make_test_channel):
    from condastore_core.jobs.inprocess import InProcessQueue
    from condastore_core.service.context import Context
    from condastore_core.settings import load_settings

    context = Context.from_settings(
        load_settings(
            {"data_dir": tmp_path / "d", "anonymous_bindings": "public/*=viewer", "tarball": False},
            environ=gate_env(),
        )
    )
    context.jobs = InProcessQueue(context)
    channel = make_test_channel([PackageDef("hello", "1.0")])
    for name in ("public", "private"):
        namespaces.create_namespace(context, name)
        environments.submit(
            context,
            name,
            EnvironmentSpec.from_dict(
                {"name": "app", "channels": [channel], "dependencies": ["hello"]}
            ),
        )
    context.jobs.wait_idle(timeout=120)
    client = testing.TestClient(create_app(context))
    listed = client.simulate_get("/api/v1/environments").json["items"]
    assert [(e["namespace"], e["name"]) for e in listed] == [("public", "app")]
    assert (
        client.simulate_get("/api/v1/environments/public/app/artifacts/lockfile").status_code == 200
    )
    assert client.simulate_get("/api/v1/environments/private/app").status_code == 401
    spec = SPEC.format(name="x", channel=channel)
    r = client.simulate_post(
        "/api/v1/environments", json={"namespace": "public", "specification": spec}
    )
    assert r.status_code == 401
    context.jobs.shutdown()
