"""The REST API through Falcon's test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
import yaml
from conda_lock.lockfile import parse_conda_lock_file
from falcon import testing

from condastore_core.service.users import create_user, issue_token
from condastore_web.app import create_app
from tests.support.packages import PackageDef

API = "/api/v1"


@pytest.fixture
def client(ctx):
    create_user(ctx, "root", "a long password", admin=True)
    token = issue_token(ctx, "root").token
    return testing.TestClient(create_app(ctx), headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def channel(make_test_channel):
    return make_test_channel(
        [PackageDef("hello", "1.0"), PackageDef("hello", "2.0"), PackageDef("libx", "1.0")]
    )


def spec_text(channel, *deps, name="web"):
    return yaml.safe_dump({"name": name, "channels": [channel], "dependencies": list(deps)})


def create(client, ctx, channel, *deps, name="web", namespace="default"):
    r = client.simulate_post(
        f"{API}/environments",
        json={"namespace": namespace, "specification": spec_text(channel, *deps, name=name)},
    )
    assert r.status_code == 202, r.text
    ctx.jobs.wait_idle(timeout=120)
    return client.simulate_get(f"{API}/builds/{r.json['id']}").json


def assert_error(r, status, code, *words):
    assert r.status_code == status, r.text
    error = r.json["error"]
    assert error["status"] == status and error["code"] == code
    for word in words:
        assert word in error["message"]


def test_version(client):
    assert client.simulate_get(API).json["name"] == "condastore"


def test_environment_lifecycle(client, ctx, channel, tmp_path):
    first = create(client, ctx, channel, "hello 1.0")
    assert first["status"] == "COMPLETED", first
    env = client.simulate_get(f"{API}/environments/default/web").json
    assert env["current_build_id"] == first["id"]
    assert env["current_build_key"] == first["build_key"]
    second = create(client, ctx, channel, "hello 2.0")
    diff = client.simulate_get(
        f"{API}/environments/default/web/diff", params={"from": first["id"], "to": second["id"]}
    ).json
    assert diff["changes"] == [
        {"platform": "linux-64", "name": "hello", "old": "1.0 0", "new": "2.0 0"}
    ]
    r = client.simulate_put(
        f"{API}/environments/default/web/current", json={"build_id": first["id"]}
    )
    assert r.json["current_build_id"] == first["id"]
    # The lockfile of the current build parses with conda-lock itself.
    r = client.simulate_get(f"{API}/environments/default/web/artifacts/lockfile")
    assert r.status_code == 200 and "conda-lock.yml" in r.headers["content-disposition"]
    (tmp_path / "conda-lock.yml").write_bytes(r.content)
    locked = parse_conda_lock_file(tmp_path / "conda-lock.yml")
    assert [(p.name, p.version) for p in locked.package] == [("hello", "1.0")]
    log = client.simulate_get(f"{API}/builds/{first['id']}/log").json
    assert log["finished"] and "build completed" in log["text"]
    tail = client.simulate_get(
        f"{API}/builds/{first['id']}/log", params={"offset": log["next_offset"] - 10}
    ).json
    assert log["text"].endswith(tail["text"]) and len(tail["text"]) == 10
    packages = client.simulate_get(f"{API}/builds/{first['id']}/packages").json["items"]
    assert [p["name"] for p in packages] == ["hello"]
    assert client.simulate_delete(f"{API}/environments/default/web").status_code == 204
    assert_error(client.simulate_get(f"{API}/environments/default/web"), 404, "NOT_FOUND")


def test_lists_paginate_and_filter(client, ctx, channel):
    for i in range(3):
        create(client, ctx, channel, "hello", name=f"e{i}")
    page = client.simulate_get(f"{API}/environments", params={"limit": 2}).json
    assert [e["name"] for e in page["items"]] == ["e2", "e1"]
    rest = client.simulate_get(
        f"{API}/environments", params={"limit": 2, "cursor": page["next_cursor"]}
    ).json
    assert [e["name"] for e in rest["items"]] == ["e0"] and rest["next_cursor"] is None
    builds = client.simulate_get(f"{API}/builds", params={"environment": "e1"}).json["items"]
    assert [b["environment"] for b in builds] == ["e1"]
    assert client.simulate_get(f"{API}/builds", params={"package": "libx"}).json["items"] == []


def test_namespaces(client):
    r = client.simulate_post(f"{API}/namespaces", json={"name": "team-a"})
    assert r.status_code == 201
    names = [n["name"] for n in client.simulate_get(f"{API}/namespaces").json["items"]]
    assert names == ["team-a", "root", "default"]
    assert_error(
        client.simulate_post(f"{API}/namespaces", json={"name": "team-a"}), 409, "CONFLICT"
    )
    assert client.simulate_delete(f"{API}/namespaces/team-a").status_code == 204
    assert_error(client.simulate_get(f"{API}/namespaces/team-a"), 404, "NOT_FOUND")


def test_solve_preview_builds_nothing(client, ctx, channel):
    r = client.simulate_post(f"{API}/solve", json={"specification": spec_text(channel, "hello")})
    assert r.status_code == 200, r.text
    assert [p["version"] for p in r.json["packages"]["linux-64"]] == ["2.0"]
    assert "version: 1" in r.json["lockfile"] or "version:" in r.json["lockfile"]
    assert client.simulate_get(f"{API}/builds").json["items"] == []


def test_package_search(client, channel):
    r = client.simulate_get(f"{API}/packages", params={"q": "hell", "channel": channel})
    assert r.json["items"][0]["name"] == "hello"
    assert r.json["items"][0]["versions"] == ["2.0", "1.0"]


def test_cancel_and_rebuild(client, ctx, channel):
    done = create(client, ctx, channel, "hello")
    assert_error(client.simulate_post(f"{API}/builds/{done['id']}/cancel"), 409, "CONFLICT")
    r = client.simulate_post(f"{API}/builds/{done['id']}/rebuild")
    assert r.status_code == 202
    ctx.jobs.wait_idle(timeout=60)
    again = client.simulate_get(f"{API}/builds/{r.json['id']}").json
    assert again["status"] == "COMPLETED" and again["lock_hash"] == done["lock_hash"]
    assert again["reused_build_id"] == done["id"]


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        ({"specification": "name: x\ndependencies: [a\n"}, 400, "SPEC_INVALID", ["line"]),
        (
            {"specification": "name: x\ndependencies: [a]\nbogus: 1\n"},
            400,
            "SPEC_INVALID",
            ["bogus"],
        ),
        (
            {"specification": "name: x\ndependencies: [a]\n", "extra": 1},
            400,
            "INVALID_REQUEST",
            ["unknown field 'extra'"],
        ),
        (
            {"namespace": "nowhere", "specification": "name: x\ndependencies: [a]\n"},
            404,
            "NOT_FOUND",
            ["nowhere"],
        ),
        (
            {"specification": "name: x\ndependencies: [a]\n", "platforms": ["mars-64"]},
            400,
            "INVALID_REQUEST",
            ["mars-64"],
        ),
    ],
)
def test_bad_environment_requests_change_nothing(client, body, status, code, words):
    assert_error(client.simulate_post(f"{API}/environments", json=body), status, code, *words)
    assert client.simulate_get(f"{API}/environments").json["items"] == []
    assert client.simulate_get(f"{API}/builds").json["items"] == []


def test_malformed_and_oversized_bodies(client):
    r = client.simulate_post(
        f"{API}/environments", body=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(r, 400, "INVALID_REQUEST", "not valid JSON")
    huge = json.dumps({"specification": "x" * (2 << 20)})
    assert_error(client.simulate_post(f"{API}/environments", body=huge), 413, "CONTENT_TOO_LARGE")
    assert client.simulate_get(f"{API}/environments").json["items"] == []


def test_unknown_things_get_the_error_shape(client, ctx, channel):
    assert_error(client.simulate_get(f"{API}/builds/999"), 404, "BUILD_UNKNOWN", "999")
    assert_error(client.simulate_get(f"{API}/nothing-here"), 404, "NOT_FOUND")
    assert_error(
        client.simulate_get(f"{API}/builds", params={"limit": "x"}), 400, "INVALID_REQUEST"
    )
    done = create(client, ctx, channel, "hello")
    assert_error(
        client.simulate_get(f"{API}/builds/{done['id']}/artifacts/tarball"),
        404,
        "NOT_FOUND",
        "no tarball",
    )
    assert_error(
        client.simulate_get(f"{API}/builds/{done['id']}/artifacts/wheel"),
        400,
        "INVALID_REQUEST",
        "wheel",
    )


def test_a_nearly_full_disk_refuses_new_builds(ctx, channel):
    from dataclasses import replace

    create_user(ctx, "root2", "a long password", admin=True)
    ctx.settings = replace(ctx.settings, min_free_bytes=10**18)
    client = testing.TestClient(
        create_app(ctx), headers={"Authorization": f"Bearer {issue_token(ctx, 'root2').token}"}
    )
    r = client.simulate_post(
        f"{API}/environments", json={"specification": spec_text(channel, "hello")}
    )
    assert_error(r, 507, "INSUFFICIENT_STORAGE", "min_free_bytes")
    assert client.simulate_get(f"{API}/builds").json["items"] == []


def test_package_search_refuses_bad_channels_and_platforms(client):
    r = client.simulate_get(f"{API}/packages", params={"q": "x", "channel": "~\x15nobody/x"})
    assert_error(r, 400, "SPEC_INVALID", "invalid channel path")
    r = client.simulate_get(f"{API}/packages", params={"q": "x", "platform": "mars-64"})
    assert_error(r, 400, "INVALID_REQUEST", "mars-64")


def test_hostile_documents_are_refused_before_they_are_parsed(client):
    from tests.core.test_bounded import rss_bytes, yaml_bomb

    before = rss_bytes()
    for size in (1 << 10, 64 << 10, 900 << 10):
        bomb = yaml_bomb(size)
        r = client.simulate_post(f"{API}/environments", json={"specification": bomb})
        assert_error(r, 400 if size < 256 << 10 else 413, r.json["error"]["code"])
        message = r.json["error"]["message"]
        assert "aliases" in message or "256 KiB" in message
        spec = "name: x\ndependencies: [zstd]\n"
        body = {"specification": spec, "lockfile": bomb}
        r = client.simulate_post(f"{API}/environments", json=body)
        assert_error(r, 400, "DOCUMENT_REFUSED", "conda-lock.yml", "aliases")
        r = client.simulate_post(f"{API}/solve", json={"specification": bomb})
        assert r.status_code in (400, 413), r.text
    assert rss_bytes() - before < 32 << 20
    deep = b'{"specification": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    r = client.simulate_post(f"{API}/environments", body=deep)
    assert_error(r, 400, "DOCUMENT_REFUSED", "limit of 32 levels")
    r = client.simulate_post(f"{API}/environments", body=b"[" * 500_000)
    assert_error(r, 400, "DOCUMENT_REFUSED", "limit of 32 levels")
    assert client.simulate_get(f"{API}/environments").json["items"] == []
