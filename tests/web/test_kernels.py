"""``condastore kernels``: Jupyter kernelspecs for the readable environments with ipykernel."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from condastore_core import layout
from condastore_core.db.models import BuildStatus
from condastore_core.service import builds, environments, users
from condastore_core.service.namespaces import create_namespace
from condastore_core.spec import EnvironmentSpec
from condastore_web.app import create_app
from condastore_web.cli import main
from tests.service.test_envlinks import shared_ctx
from tests.support.live_server import live_server
from tests.support.packages import PackageDef

PASSWORD = "a long password"


@pytest.fixture
def world(database_url, tmp_path, make_test_channel):
    """bob may read bob/*, not private/*; some environments have ipykernel."""
    ctx = shared_ctx(database_url, tmp_path)
    channel = make_test_channel(
        [
            PackageDef("ipykernel", "6.29.0"),
            PackageDef("ipykernel-extras", "1.0"),
            PackageDef("hello", "1.0"),
        ]
    )
    users.create_user(ctx, "bob", PASSWORD)
    create_namespace(ctx, "private")
    wanted = {
        ("bob", "notebook"): ["ipykernel", "hello"],
        ("bob", "plain"): ["hello"],
        ("bob", "lookalike"): ["ipykernel-extras"],
        ("private", "secret"): ["ipykernel"],
    }
    for (namespace, name), deps in wanted.items():
        spec = EnvironmentSpec.from_dict(
            {"name": name, "channels": [channel], "dependencies": deps}
        )
        environments.submit(ctx, namespace, spec)
    ctx.jobs.wait_idle(timeout=120)
    for (namespace, name), _ in wanted.items():
        env = environments.get_environment(ctx, namespace, name)
        assert builds.get_build(ctx, env.current_build_id).status == BuildStatus.COMPLETED
    token = users.issue_token(ctx, "bob").token
    with live_server(create_app(ctx)) as url:
        yield ctx, url, token
    ctx.jobs.shutdown(wait=True)
    ctx.engine.dispose()


def run(url, token, *args):
    result = CliRunner().invoke(main, ["kernels", "--url", url, "--token", token, *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_lists_only_readable_environments_with_ipykernel(world):
    ctx, url, token = world
    shared = ctx.settings.environments_dir
    request = urllib.request.Request(
        f"{url}/api/v1/environments/private/secret", headers={"Authorization": f"Bearer {token}"}
    )
    with pytest.raises(urllib.error.HTTPError) as denied:  # what makes the test meaningful
        urllib.request.urlopen(request)
    assert denied.value.code in (403, 404)

    listed = json.loads(run(url, token, "--environments-dir", str(shared), "--json"))
    assert [k["name"] for k in listed["kernels"]] == ["condastore-bob-notebook"]
    (kernel,) = listed["kernels"]
    assert kernel["prefix"] == str(layout.environment_link(shared, "bob", "notebook"))
    assert (
        kernel["build_key"]
        == environments.get_environment(ctx, "bob", "notebook").current_build.build_key
    )


def test_install_writes_kernelspecs_that_follow_the_link_and_removes_stale_ones(
    world, tmp_path, monkeypatch
):
    ctx, url, token = world
    shared = ctx.settings.environments_dir
    target = tmp_path / "kernels"
    stale = target / "condastore-bob-gone"
    stale.mkdir(parents=True)
    (stale / "kernel.json").write_text(json.dumps({"argv": [], "metadata": {"condastore": {}}}))
    foreign = target / "condastore-not-ours"
    foreign.mkdir()
    (foreign / "kernel.json").write_text(json.dumps({"argv": ["python"]}))

    monkeypatch.setenv("CONDASTORE_ENVIRONMENTS_DIR", str(shared))
    out = json.loads(run(url, token, "--install", str(target), "--json"))
    assert out["removed"] == ["condastore-bob-gone"]
    assert sorted(p.name for p in target.iterdir()) == [
        "condastore-bob-notebook",
        "condastore-not-ours",
    ]
    spec = json.loads((target / "condastore-bob-notebook" / "kernel.json").read_text())
    prefix = layout.environment_link(shared, "bob", "notebook")
    assert spec["argv"] == [
        f"{prefix}/bin/python",
        "-m",
        "ipykernel_launcher",
        "-f",
        "{connection_file}",
    ]
    assert spec["env"]["CONDA_PREFIX"] == str(prefix)
    assert spec["env"]["PATH"].startswith(f"{prefix}/bin:")
    assert spec["display_name"] == "bob/notebook"


def test_install_defaults_to_the_users_jupyter_directory(world, tmp_path, monkeypatch):
    ctx, url, token = world
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("JUPYTER_DATA_DIR", raising=False)
    run(url, token, "--environments-dir", str(ctx.settings.environments_dir), "--install")
    kernels = tmp_path / "home/.local/share/jupyter/kernels"
    assert [p.name for p in kernels.iterdir()] == ["condastore-bob-notebook"]


def test_hostile_names_from_a_server_never_become_paths(tmp_path):
    from condastore_web.cli.kernels import find_kernels

    (tmp_path / "etc" / "conda-meta").mkdir(parents=True)
    (tmp_path / "etc" / "conda-meta" / "ipykernel-1-0.json").write_text("{}")
    hostile = [
        {"namespace": "..", "name": "etc", "current_build_id": 1},
        {"namespace": "x", "name": "../../etc", "current_build_id": 1},
        {"namespace": "x/../..", "name": "etc", "current_build_id": 1},
    ]
    assert find_kernels(tmp_path / "shared", hostile) == []
