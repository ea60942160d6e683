"""Names the store keeps for itself: no user or namespace may take them."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from falcon import testing

from condastore_core.errors import InvalidRequest
from condastore_core.service import namespaces, users
from condastore_web.app import create_app
from condastore_web.cli import main

PASSWORD = "a long password"


@pytest.mark.parametrize(
    "name", ["conda", "v2", "auth", "api", "ui", "static", "metrics", "anonymous"]
)
def test_reserved_names_are_refused_as_namespaces_and_users(ctx, name):
    with pytest.raises(InvalidRequest, match=f"{name!r} is reserved"):
        namespaces.create_namespace(ctx, name)
    with pytest.raises(InvalidRequest, match=f"{name!r} is reserved"):
        users.create_user(ctx, name, PASSWORD)
    assert [u.name for u in users.list_users(ctx)] == []


def test_ordinary_names_that_merely_contain_a_reserved_word_are_fine(ctx):
    for name in ("conda-team", "api2", "condaforge"):
        users.create_user(ctx, name, PASSWORD)
        assert namespaces.get_namespace(ctx, name).name == name


def test_condastore_user_add_conda_is_refused_with_a_clear_message(tmp_path):
    result = CliRunner().invoke(
        main,
        ["user", "add", "conda", "--init", "--password-stdin", "--data-dir", str(tmp_path / "d")],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 1
    assert "'conda' is reserved" in result.output
    assert "dynamic images" in result.output
    assert "Traceback" not in result.output


def test_the_api_refuses_reserved_namespace_and_user_names(ctx):
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    client = testing.TestClient(create_app(ctx))
    auth = {"Authorization": f"Bearer {users.issue_token(ctx, 'ada').token}"}
    r = client.simulate_post("/api/v1/namespaces", json={"name": "conda"}, headers=auth)
    assert r.status_code == 400 and "reserved" in r.json["error"]["message"]
    r = client.simulate_post(
        "/api/v1/users", json={"name": "v2", "password": PASSWORD}, headers=auth
    )
    assert r.status_code == 400 and "reserved" in r.json["error"]["message"]
