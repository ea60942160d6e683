"""conda-store's API v1 (``condastore_web/compat``): who may do what, shapes, pages, errors.

The table mirrors ``test_permissions.py``: the same callers (anonymous, viewer
and editor of team/*, another user, a narrowed admin token, expired, revoked
and forged tokens, an admin) get the same statuses on conda-store's routes as
on ours, in conda-store's error shape. A compat route without a row fails.
"""

from __future__ import annotations

import re

import pytest
import yaml
from falcon import inspect

from condastore_web.app import create_app
from condastore_web.compat import routes
from tests.web.test_permissions import ROLES, SPEC, world  # noqa: F401  (the shared fixture)

READ = "401 200 200 404 200 401 401 401 200"
LOGIN = "401 200 200 200 200 401 401 401 200"
NS_ADMIN = "401 403 403 404 403 401 401 401 200"
B = "/api/v1/build/{build}"
E = "/api/v1/environment/team/app"

TABLE = [
    ("GET", "/api/v1/permission", "/api/v1/permission/", None, LOGIN.replace("401", "200", 1)),
    ("POST", "/api/v1/token", "/api/v1/token/", {}, LOGIN),
    ("GET", "/api/v1/usage", "/api/v1/usage/", None, LOGIN.replace("401", "200", 1)),
    ("GET", "/api/v1/namespace", "/api/v1/namespace/", None, LOGIN.replace("401", "200", 1)),
    ("GET", "/api/v1/namespace/{namespace_name}", "/api/v1/namespace/team/", None, READ),
    (
        "POST",
        "/api/v1/namespace/{namespace_name}",
        "/api/v1/namespace/fresh/",
        None,
        "401 403 403 403 403 401 401 401 200",
    ),
    ("PUT", "/api/v1/namespace/{namespace_name}", "/api/v1/namespace/team/", {}, NS_ADMIN),
    (
        "DELETE",
        "/api/v1/namespace/{namespace_name}",
        "/api/v1/namespace/empty/",
        None,
        "401 404 404 404 404 401 401 401 200",
    ),
    (
        "PUT",
        "/api/v1/namespace/{namespace_name}/metadata",
        "/api/v1/namespace/team/metadata",
        {},
        NS_ADMIN,
    ),
    ("GET", "/api/v1/namespace/{namespace_name}/roles", "/api/v1/namespace/team/roles", None, READ),
    (
        "DELETE",
        "/api/v1/namespace/{namespace_name}/roles",
        "/api/v1/namespace/team/roles",
        None,
        NS_ADMIN,
    ),
    (
        "GET",
        "/api/v1/namespace/{namespace_name}/role",
        "/api/v1/namespace/team/role?other_namespace=vera",
        None,
        READ,
    ),
    *[
        (
            method,
            "/api/v1/namespace/{namespace_name}/role",
            "/api/v1/namespace/team/role",
            {"other_namespace": "otto", "role": "viewer"},
            NS_ADMIN,
        )
        for method in ("POST", "PUT", "DELETE")
    ],
    ("GET", "/api/v1/environment", "/api/v1/environment/", None, LOGIN.replace("401", "200", 1)),
    ("GET", "/api/v1/environment/{namespace}/{name}", f"{E}/", None, READ),
    (
        "PUT",
        "/api/v1/environment/{namespace}/{name}",
        f"{E}/",
        {"description": "changed"},
        "401 403 200 404 403 401 401 401 200",
    ),
    (
        "DELETE",
        "/api/v1/environment/{namespace}/{name}",
        "/api/v1/environment/team/gone/",
        None,
        NS_ADMIN,
    ),
    *[
        ("GET", f"/api/v1/environment/{{namespace}}/{{name}}/{leaf}", f"{E}/{leaf}", None, READ)
        for leaf in ("lockfile", "conda-lock.yml", "conda-lock.yaml")
    ],
    (
        "GET",
        "/api/v1/specification",
        "/api/v1/specification/?conda=hello&channel={channel}",
        None,
        LOGIN,
    ),
    (
        "POST",
        "/api/v1/specification",
        "/api/v1/specification/",
        "spec:submitted",
        "401 403 200 404 403 401 401 401 200",
    ),
    ("GET", "/api/v1/build", "/api/v1/build/", None, LOGIN.replace("401", "200", 1)),
    ("GET", "/api/v1/build/{build_id}", f"{B}/", None, READ),
    ("PUT", "/api/v1/build/{build_id}", f"{B}/", None, "401 403 200 404 403 401 401 401 200"),
    # Past the access check, the current build may not be deleted nor a finished one canceled.
    ("DELETE", "/api/v1/build/{build_id}", f"{B}/", None, "401 403 403 404 403 401 401 401 409"),
    (
        "PUT",
        "/api/v1/build/{build_id}/cancel",
        f"{B}/cancel/",
        None,
        "401 403 409 404 403 401 401 401 409",
    ),
    ("GET", "/api/v1/build/{build_id}/packages", f"{B}/packages/", None, READ),
    ("GET", "/api/v1/build/{build_id}/logs", f"{B}/logs/", None, READ),
    ("GET", "/api/v1/build/{build_id}/yaml", f"{B}/yaml/", None, READ),
    *[
        ("GET", f"/api/v1/build/{{build_id}}/{leaf}", f"{B}/{leaf}", None, READ)
        for leaf in ("lockfile", "conda-lock.yml", "conda-lock.yaml")
    ],
    # These test installations make no tarball: readers learn it is missing.
    ("GET", "/api/v1/build/{build_id}/archive", f"{B}/archive/", None, READ.replace("200", "404")),
    *[
        (
            "GET",
            f"/api/v1/build/{{build_id}}/{leaf}",
            f"{B}/{leaf}/",
            None,
            READ.replace("200", "400"),
        )
        for leaf in ("docker", "installer")
    ],
    ("GET", "/api/v1/channel", "/api/v1/channel/", None, LOGIN),
    ("GET", "/api/v1/package", "/api/v1/package/?search=hel&channel={channel}", None, LOGIN),
    ("GET", "/api/v1/setting", "/api/v1/setting/", None, LOGIN),
    ("GET", "/api/v1/setting/{namespace}", "/api/v1/setting/team/", None, READ),
    (
        "GET",
        "/api/v1/setting/{namespace}/{environment_name}",
        "/api/v1/setting/team/app/",
        None,
        READ,
    ),
    (
        "PUT",
        "/api/v1/setting",
        "/api/v1/setting/",
        {"conda_required_packages": []},
        "401 403 403 403 403 401 401 401 200",
    ),
    (
        "PUT",
        "/api/v1/setting/{namespace}",
        "/api/v1/setting/team/",
        {"conda_required_packages": []},
        NS_ADMIN,
    ),
    (
        "PUT",
        "/api/v1/setting/{namespace}/{environment_name}",
        "/api/v1/setting/team/app/",
        {"conda_required_packages": []},
        NS_ADMIN,
    ),
]


def compat_templates(ctx) -> set[str]:
    return {re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", t) for t, _ in routes(ctx)}


def test_every_compat_route_has_a_row(ctx):
    served = set()
    templates = compat_templates(ctx)
    for route in inspect.inspect_routes(create_app(ctx)):
        path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", route.path)
        if path in templates:
            served |= {(m.method, path) for m in route.methods if not m.internal}
    served = {s for s in served if s[0] != "OPTIONS"}
    assert served == {(method, template) for method, template, *_ in TABLE}
    # conda-store-server 2025.2.2 serves 47; its "GET /api/v1/" is condastore's own here.
    assert len(served) == 46


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "template", "path", "body", "statuses"),
    TABLE,
    ids=[f"{m} {t}" for m, t, *_ in TABLE],
)
def test_compat_route_answers_each_caller_like_ours(
    world,  # noqa: F811
    method,
    template,
    path,
    body,
    statuses,
):
    client, token_for, fill = world
    expected = dict(zip(ROLES, (int(s) for s in statuses.split()), strict=True))
    got = {}
    for role in ROLES:
        token = token_for(role)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        payload = body
        if isinstance(body, str):
            payload = {
                "namespace": "team",
                "specification": SPEC.format(name=body.partition(":")[2], channel=fill["channel"]),
            }
        result = client.simulate_request(method, path.format(**fill), json=payload, headers=headers)
        got[role] = result.status_code
        if result.status_code >= 400:
            assert set(result.json) == {"status", "message"}, result.text
            assert result.json["status"] == "error" and result.json["message"]
        elif result.headers.get("content-type", "").startswith("application/json"):
            assert result.json.get("status", "ok") == "ok"  # a solve answers {"solve": [...]}
        if result.status_code == 401:
            assert result.headers["www-authenticate"].startswith("Bearer")
    assert got == expected


def auth(token_for, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(role)}"}


def test_lists_are_conda_store_pages_of_what_the_caller_may_read(world):  # noqa: F811
    client, token_for, fill = world
    admin = auth(token_for, "admin")
    envs = client.simulate_get("/api/v1/environment/", headers=admin).json
    assert (envs["status"], envs["page"], envs["size"], envs["count"]) == ("ok", 1, 100, 2)
    assert [(e["namespace"]["name"], e["name"]) for e in envs["data"]] == [
        ("team", "app"),
        ("team", "gone"),
    ]
    assert envs["data"][0]["current_build_id"] == int(fill["build"])
    other = auth(token_for, "other")
    assert client.simulate_get("/api/v1/environment/", headers=other).json["count"] == 0
    assert client.simulate_get("/api/v1/build/", headers=other).json["data"] == []
    names = client.simulate_get("/api/v1/namespace/", headers=other).json["data"]
    assert [n["name"] for n in names] == ["otto"]

    # page, size, sort_by and order as conda-store reads them
    everything = client.simulate_get("/api/v1/namespace/", headers=admin).json
    all_names = [n["name"] for n in everything["data"]]
    assert all_names == sorted(all_names) and everything["count"] == len(all_names) >= 3
    second = client.simulate_get(
        "/api/v1/namespace/", params={"page": 2, "size": 1}, headers=admin
    ).json
    assert (second["page"], second["size"], second["count"]) == (2, 1, len(all_names))
    assert [n["name"] for n in second["data"]] == all_names[1:2]
    backwards = client.simulate_get(
        "/api/v1/namespace/", params={"sort_by": "name", "order": "desc"}, headers=admin
    ).json
    assert [n["name"] for n in backwards["data"]] == all_names[::-1]
    capped = client.simulate_get("/api/v1/build/", params={"size": 10**6}, headers=admin).json
    assert capped["size"] == 100
    builds = client.simulate_get(
        "/api/v1/build/", params={"status": "COMPLETED", "sort_by": "id"}, headers=admin
    ).json
    assert [b["status"] for b in builds["data"]] == ["COMPLETED", "COMPLETED"]
    assert set(builds["data"][0]) == {
        "id", "environment_id", "status", "status_info", "size",
        "scheduled_on", "started_on", "ended_on",
    }  # fmt: skip


def test_a_build_as_conda_store_clients_read_it(world):  # noqa: F811
    client, token_for, fill = world
    viewer = auth(token_for, "viewer")
    build = client.simulate_get(f"/api/v1/build/{fill['build']}/", headers=viewer).json["data"]
    assert build["status"] == "COMPLETED" and build["size"] > 0
    kinds = {a["artifact_type"] for a in build["build_artifacts"]}
    assert {"LOCKFILE", "YAML", "LOGS"} <= kinds and "CONDA_PACK" not in kinds
    assert build["specification"]["spec"]["dependencies"] == ["hello"]
    packages = client.simulate_get(f"/api/v1/build/{fill['build']}/packages/", headers=viewer).json
    assert [p["name"] for p in packages["data"]] == ["hello"] and packages["count"] == 1
    log = client.simulate_get(f"/api/v1/build/{fill['build']}/logs/", headers=viewer)
    assert log.headers["content-type"].startswith("text/plain") and "build completed" in log.text
    lock = client.simulate_get(f"/api/v1/build/{fill['build']}/conda-lock.yml", headers=viewer)
    assert [p["name"] for p in yaml.safe_load(lock.text)["package"]] == ["hello"]
    same = client.simulate_get("/api/v1/environment/team/app/lockfile/", headers=viewer)
    assert same.text == lock.text


def test_conda_store_and_condastore_routes_stay_apart(world):  # noqa: F811
    client, token_for, _ = world
    admin = auth(token_for, "admin")
    ours = client.simulate_get("/api/v1/namespaces", headers=admin)
    assert "items" in ours.json and "status" not in ours.json
    theirs = client.simulate_get("/api/v1/namespace/", headers=admin)
    assert "data" in theirs.json and "items" not in theirs.json
    missing_ours = client.simulate_get("/api/v1/environments/team/nope", headers=admin)
    assert missing_ours.status_code == 404 and missing_ours.json["error"]["status"] == 404
    missing_theirs = client.simulate_get("/api/v1/environment/team/nope/", headers=admin)
    assert missing_theirs.status_code == 404 and missing_theirs.json["status"] == "error"
    assert client.simulate_get("/api/v1/namespaces/", headers=admin).json["items"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("GET", "/api/v1/namespace/?page=0", None, 400, "page must be at least 1"),
        ("GET", "/api/v1/build/?size=-3", None, 400, "size must be at least 1"),
        ("GET", "/api/v1/build/?page=two", None, 400, "'page' must be an integer"),
        ("GET", "/api/v1/build/?status=DONE", None, 400, "unknown status"),
        ("GET", "/api/v1/build/?artifact=EVIL", None, 400, "unknown artifact"),
        ("POST", "/api/v1/specification/", {"specification": "name: [unclosed"}, 400, ""),
        ("POST", "/api/v1/specification/", {"specification": "a: &x [*x]"}, 400, ""),
        ("POST", "/api/v1/namespace/..%20etc/", None, 400, "namespace"),
        ("PUT", "/api/v1/namespace/team/metadata", {"metadata": {"a": 1}}, 400, "metadata"),
        ("PUT", "/api/v1/setting/", {"default_uid": 0}, 400, "'default_uid' cannot be changed"),
        ("POST", "/api/v1/namespace/team/role", {"other_namespace": "x", "role": "god"}, 400, ""),
        ("POST", "/api/v1/token/", {"role_bindings": {"no-slash": ["viewer"]}}, 400, "pattern"),
    ],
)
def test_hostile_or_broken_requests_get_conda_store_errors(
    world,  # noqa: F811
    method,
    path,
    body,
    status,
    message,
):
    client, token_for, _ = world
    result = client.simulate_request(method, path, json=body, headers=auth(token_for, "admin"))
    assert result.status_code == status, result.text
    assert result.json["status"] == "error"
    assert message in result.json["message"]


def test_tokens_carry_role_bindings_and_never_exceed_the_caller(world):  # noqa: F811
    client, token_for, _ = world
    viewer = auth(token_for, "viewer")
    raised = client.simulate_post(
        "/api/v1/token/", json={"role_bindings": {"team/*": ["editor"]}}, headers=viewer
    )
    assert raised.status_code == 400
    assert "not a subset of current permissions" in raised.json["message"]
    minted = client.simulate_post(
        "/api/v1/token/",
        json={"role_bindings": {"team/app": ["viewer"]}, "exp": "ignored, as conda-store does"},
        headers=viewer,
    )
    assert minted.status_code == 200
    narrowed = {"Authorization": f"Bearer {minted.json['data']['token']}"}
    seen = client.simulate_get("/api/v1/permission/", headers=narrowed).json["data"]
    assert seen["entity_roles"] == {"team/app": ["viewer"]}
    assert seen["primary_namespace"] == "vera" and seen["authenticated"] is True
    assert client.simulate_get("/api/v1/environment/team/app/", headers=narrowed).status_code == 200
    assert (
        client.simulate_get("/api/v1/environment/team/gone/", headers=narrowed).status_code == 404
    )
    too_long = client.simulate_post(
        "/api/v1/token/", json={"expiration": "2999-01-01T00:00:00"}, headers=narrowed
    )
    assert too_long.status_code == 400 and "expiration" in too_long.json["message"]


def test_namespace_role_mappings_are_role_bindings(world):  # noqa: F811
    client, token_for, _ = world
    admin = auth(token_for, "admin")
    other = auth(token_for, "other")
    assert client.simulate_get("/api/v1/environment/team/app/", headers=other).status_code == 404
    added = client.simulate_post(
        "/api/v1/namespace/team/role",
        json={"other_namespace": "otto", "role": "developer"},
        headers=admin,
    )
    assert added.status_code == 200
    role = client.simulate_get(
        "/api/v1/namespace/team/role", params={"other_namespace": "otto"}, headers=admin
    ).json["data"]
    assert (role["other_namespace"], role["role"]) == ("otto", "editor")
    put = client.simulate_put(
        "/api/v1/environment/team/app/", json={"description": "by otto"}, headers=other
    )
    assert put.status_code == 200
    app = client.simulate_get("/api/v1/environment/team/app/", headers=other).json["data"]
    assert app["description"] == "by otto"
    client.simulate_delete(
        "/api/v1/namespace/team/role", json={"other_namespace": "otto"}, headers=admin
    )
    assert client.simulate_get("/api/v1/environment/team/app/", headers=other).status_code == 404


def test_specs_as_conda_store_clients_send_them(world, ctx):  # noqa: F811
    client, token_for, fill = world
    editor = auth(token_for, "editor")
    # conda-store's UI always sends ``prefix`` and empty optional fields.
    spec = f"name: from-ui\nchannels: ['{fill['channel']}']\ndependencies: [hello]\n"
    ui = client.simulate_post(
        "/api/v1/specification/",
        json={"namespace": "team", "specification": spec + "prefix: null\nvariables: null\n"},
        headers=editor,
    )
    assert ui.status_code == 200, ui.text
    # A conda-lock file (``is_lockfile``) builds exactly that lock.
    lock = client.simulate_get(f"/api/v1/build/{fill['build']}/lockfile/", headers=editor).text
    locked = client.simulate_post(
        "/api/v1/specification/",
        json={
            "namespace": "team",
            "specification": lock,
            "is_lockfile": True,
            "environment_name": "from-lock",
            "environment_description": "pinned",
        },
        headers=editor,
    )
    assert locked.status_code == 200, locked.text
    ctx.jobs.wait_idle(timeout=120)
    for name, build_id in (("from-ui", ui.json["data"]["build_id"]),
                           ("from-lock", locked.json["data"]["build_id"])):  # fmt: skip
        build = client.simulate_get(f"/api/v1/build/{build_id}/", headers=editor).json["data"]
        assert build["status"] == "COMPLETED", build
        env = client.simulate_get(f"/api/v1/environment/team/{name}/", headers=editor).json
        assert env["data"]["current_build_id"] == build_id
    described = client.simulate_get("/api/v1/environment/team/from-lock/", headers=editor).json
    assert described["data"]["description"] == "pinned"
    again = client.simulate_get("/api/v1/environment/team/from-lock/lockfile/", headers=editor)
    assert [p["name"] for p in yaml.safe_load(again.text)["package"]] == ["hello"]
