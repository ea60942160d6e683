"""The CLI against a live server: defaults, credentials, management commands, exit codes.

Commands run through click's ``CliRunner`` against the app served over real
HTTP on loopback; the credentials file is the test's own.
"""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.service import builds, environments, namespaces, users
from condastore_core.service.context import Context
from condastore_core.settings import load_settings
from condastore_core.spec import EnvironmentSpec
from condastore_web.app import create_app
from condastore_web.cli import main
from tests.support.gate import gate_env
from tests.support.live_server import live_server
from tests.support.packages import PackageDef

PASSWORD = "a long password"


@pytest.fixture
def channel(make_test_channel):
    return make_test_channel([PackageDef("hello", "1.0"), PackageDef("libx", "1.0")])


@pytest.fixture
def site(tmp_path, channel):
    settings = load_settings(
        {"data_dir": tmp_path / "data", "tarball": False, "channels": channel},
        environ=gate_env(),
    )
    ctx = Context.from_settings(settings)
    ctx.jobs = InProcessQueue(ctx)
    namespaces.create_namespace(ctx, "default")
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    users.create_user(ctx, "vera", PASSWORD)
    with live_server(create_app(ctx)) as url:
        yield ctx, url
    ctx.jobs.shutdown(wait=True)


@pytest.fixture
def run(tmp_path, monkeypatch):
    """``condastore ARGS`` with this test's credentials file; asserts the exit code."""
    monkeypatch.setenv("CONDASTORE_CREDENTIALS", str(tmp_path / "credentials.json"))
    monkeypatch.delenv("CONDASTORE_URL", raising=False)
    monkeypatch.delenv("CONDASTORE_TOKEN", raising=False)

    def invoke(*args, code=0, stdin=None):
        result = CliRunner().invoke(main, list(args), input=stdin)
        assert result.exit_code == code, (args, result.output, result.exception)
        return result

    return invoke


def spec_file(tmp_path, channel, name, *deps):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "channels": [channel], "dependencies": deps}))
    return str(path)


def build(ctx, namespace, channel, name, *deps):
    spec = EnvironmentSpec.from_dict({"name": name, "channels": [channel], "dependencies": deps})
    submitted = environments.submit(ctx, namespace, spec)
    ctx.jobs.wait_idle(timeout=120)
    return builds.get_build(ctx, submitted.id)


def login(run, url, user):
    run("login", "--url", url, "-u", user, "--password-stdin", stdin=f"{PASSWORD}\n")


def test_login_remembers_the_server_and_env_create_uses_your_own_namespace(
    site, run, tmp_path, channel
):
    ctx, url = site
    login(run, url, "vera")
    # Neither --url nor -n: the server logged in to, and vera's own namespace (as in the UI).
    created = run("env", "create", "-f", spec_file(tmp_path, channel, "mine", "hello"), "--json")
    assert json.loads(created.output)["namespace"] == "vera"
    ctx.jobs.wait_idle(timeout=120)
    shown = json.loads(run("env", "show", "vera/mine", "--json").output)
    assert shown["current_build_id"] is not None


def test_after_logout_an_empty_list_says_the_caller_is_anonymous(site, run, channel):
    ctx, url = site
    build(ctx, "default", channel, "tools", "hello")
    login(run, url, "ada")
    assert "default/tools" in run("env", "list").output
    run("logout")
    after = run("env", "list", "--url", url)
    assert "not logged in" in after.stderr and "condastore login" in after.stderr
    assert "default/tools" not in after.stdout
    anonymous = run("env", "show", "default/tools", "--url", url, code=4)
    assert "HTTP 401" in anonymous.stderr


def test_anonymous_env_create_without_a_namespace_says_to_log_in(site, run, tmp_path, channel):
    _, url = site
    result = run(
        "env", "create", "-f", spec_file(tmp_path, channel, "x", "hello"), "--url", url, code=1
    )
    assert "not logged in" in result.stderr and "--namespace" in result.stderr


def test_download_of_a_build_of_another_environment_is_refused(site, run, channel, tmp_path):
    ctx, url = site
    tools = build(ctx, "default", channel, "tools", "hello")
    other = build(ctx, "default", channel, "other", "libx")
    login(run, url, "ada")
    refused = run("download", "default/tools", "-a", "yaml", "-b", str(other.id), code=1)
    assert "not of default/tools" in refused.stderr
    assert "libx" not in refused.stdout
    got = run("download", "default/tools", "-a", "yaml", "-b", str(tools.id))
    assert "hello" in got.stdout and "libx" not in got.stdout
    out = tmp_path / "lock.yml"
    written = run("download", "default/tools", "-a", "lockfile", "-o", str(out))
    assert out.stat().st_size > 0 and f"wrote {out}" in written.stderr


def test_lists_page_with_a_cursor_and_say_how_to_go_on(site, run, channel):
    ctx, url = site
    for name in ("one", "two", "three"):
        build(ctx, "default", channel, name, "hello")
    login(run, url, "ada")
    first = run("env", "list", "--limit", "2")
    assert first.stdout.count("default/") == 2
    cursor = first.stderr.split("--cursor ")[1].split()[0]
    rest = run("env", "list", "--limit", "2", "--cursor", cursor)
    assert rest.stdout.count("default/") == 1 and "--cursor" not in rest.stderr
    listed = {line.split()[0] for line in (first.stdout + rest.stdout).splitlines()[1:]}
    assert {"default/one", "default/two", "default/three"} <= listed
    builds_page = json.loads(run("build", "list", "--limit", "1", "--json").output)
    assert len(builds_page["items"]) == 1 and builds_page["next_cursor"]
    only_hello = run("env", "list", "--package", "hello", "--json")
    assert len(json.loads(only_hello.output)["items"]) == 3
    assert json.loads(run("env", "list", "--package", "libx", "--json").output)["items"] == []


def test_namespaces_users_tokens_and_role_bindings_from_the_cli(site, run):
    ctx, url = site
    login(run, url, "ada")
    run("namespace", "create", "team")
    assert "team" in run("namespace", "list").stdout
    assert "already exists" in run("namespace", "create", "team", code=5).stderr

    bound = json.loads(run("role-binding", "add", "user:vera", "team/*", "admin", "--json").output)
    listed = json.loads(run("role-binding", "list", "--json").output)["items"]
    assert {
        "id": bound["id"],
        "subject": "user:vera",
        "pattern": "team/*",
        "role": "admin",
    } in listed

    users_page = json.loads(run("user", "list", "--json").output)["items"]
    assert {u["name"] for u in users_page} == {"ada", "vera"}
    run("user", "passwd", "vera", "--password-stdin", stdin="another long one\nanother long one\n")
    run("login", "-u", "vera", "--password-stdin", stdin=f"{PASSWORD}\n", code=4)
    run("login", "-u", "vera", "--password-stdin", stdin="another long one\n")

    # vera administers team: she manages its bindings, not those of other namespaces.
    run("role-binding", "add", "group:qa", "team/*", "viewer")
    team = json.loads(run("role-binding", "list", "-n", "team", "--json").output)["items"]
    assert {b["subject"] for b in team} == {"user:vera", "group:qa"}
    run("role-binding", "add", "group:qa", "default/*", "viewer", code=4)
    run("role-binding", "add", "group:qa", "*", "viewer", code=4)
    run("role-binding", "list", code=4)  # every binding: administrators only
    run("user", "list", code=4)

    tokens = json.loads(run("token", "list", "--json").output)["items"]
    assert len(tokens) == 1 and tokens[0]["kind"] == "session"
    issued = json.loads(run("token", "create", "--description", "ci", "--json").output)
    listed = {t["token_id"]: t for t in json.loads(run("token", "list", "--json").output)["items"]}
    assert listed[issued["token_id"]]["description"] == "ci"
    run("token", "revoke", issued["token_id"])
    run("token", "revoke", issued["token_id"], code=5)  # already revoked
    run("env", "list", "--token", issued["token"], code=4)
    assert issued["token_id"] not in run("token", "list").stdout

    login(run, url, "ada")
    vera_tokens = json.loads(run("token", "list", "--user", "vera", "--json").output)["items"]
    run("token", "revoke", "no-such-token", code=3)
    run("user", "disable", "vera")
    assert "disabled" in run("user", "list").stdout
    run("login", "-u", "vera", "--password-stdin", stdin="another long one\n", code=4)
    login(run, url, "ada")
    assert vera_tokens  # her session was revoked with the account
    run("user", "disable", "vera", "--enable")
    run("user", "delete", "vera", "--yes")
    assert not [b for b in users.list_role_bindings(ctx) if b.subject == "user:vera"]
    run("user", "delete", "ada", "--yes", code=5)  # not yourself
    run("namespace", "delete", "team", "--yes")
    assert "team" not in run("namespace", "list").stdout
    run("namespace", "delete", "team", "--yes", code=3)


def test_another_users_token_cannot_be_revoked_or_even_seen(site, run):
    ctx, url = site
    ada_token = users.issue_token(ctx, "ada", description="ada's").token_id
    login(run, url, "vera")
    run("token", "revoke", ada_token, code=3)
    run("token", "list", "--user", "ada", code=4)
    login(run, url, "ada")
    assert ada_token in run("token", "list").stdout


def test_package_search(site, run):
    _, url = site
    login(run, url, "ada")
    found = json.loads(run("package", "search", "hell", "--json").output)["items"]
    assert [p["name"] for p in found] == ["hello"]
    assert "hello" in run("package", "search", "hell").stdout


def test_user_add_refuses_a_data_dir_without_a_database(tmp_path, run):
    typo = tmp_path / "dta"
    refused = run(
        "user",
        "add",
        "ada",
        "--password-stdin",
        "--data-dir",
        str(typo),
        stdin=f"{PASSWORD}\n{PASSWORD}\n",
        code=1,
    )
    assert "no condastore database" in refused.stderr and "--init" in refused.stderr
    assert not typo.exists()
    run(
        "user",
        "add",
        "ada",
        "--init",
        "--password-stdin",
        "--data-dir",
        str(typo),
        stdin=f"{PASSWORD}\n{PASSWORD}\n",
    )
    run(
        "user",
        "add",
        "bob",
        "--password-stdin",
        "--data-dir",
        str(typo),
        stdin=f"{PASSWORD}\n{PASSWORD}\n",
    )


def test_a_misspelt_variable_stops_a_command(tmp_path, run, monkeypatch):
    monkeypatch.setenv("CONDASTORE_DATA_DIRR", str(tmp_path))
    result = run("gc", "--dry-run", "--data-dir", str(tmp_path / "d"), code=1)
    assert "CONDASTORE_DATA_DIRR" in result.stderr and "CONDASTORE_DATA_DIR?" in result.stderr


def test_gc_dry_run_says_what_it_would_do(site, run, channel):
    ctx, _ = site
    from condastore_core.service import policies

    policies.set_policy(ctx, "default", {"max_builds_kept": 1})
    build(ctx, "default", channel, "tools", "hello")
    build(ctx, "default", channel, "tools", "hello", "libx")
    dry = run("gc", "--dry-run", "--data-dir", str(ctx.settings.data_dir)).stdout
    assert dry.startswith("would collect 0 builds, remove 1 prefixes")  # retention took one
    assert "removed" not in dry and "collected" not in dry


@pytest.mark.slow
@pytest.mark.integration
def test_the_cli_as_processes_against_condastore_serve(tmp_path, channel, monkeypatch):
    """What a user types, each command a process of its own, against a served store."""
    import os
    import subprocess
    import sys

    from tests.support.serve import add_admin, serve

    monkeypatch.setenv("CONDASTORE_CREDENTIALS", str(tmp_path / "credentials.json"))
    monkeypatch.delenv("CONDASTORE_URL", raising=False)
    monkeypatch.delenv("CONDASTORE_TOKEN", raising=False)

    def cli(*args, code=0, stdin=None):
        result = subprocess.run(
            [sys.executable, "-m", "condastore_web", *args],
            capture_output=True,
            text=True,
            timeout=300,
            input=stdin,
            env=os.environ,
        )
        assert result.returncode == code, (args, result.stdout, result.stderr)
        return result

    data = tmp_path / "data"
    add_admin(data, "ada", PASSWORD)
    with serve(data) as served:
        cli("login", "--url", served.url, "-u", "ada", "--password-stdin", stdin=f"{PASSWORD}\n")
        cli("namespace", "create", "team")  # no --url from here on: login remembered it
        cli("namespace", "create", "team", code=5)
        cli("role-binding", "add", "group:qa", "team/*", "viewer")
        assert [
            b["pattern"] for b in json.loads(cli("role-binding", "list", "--json").stdout)["items"]
        ] == ["team/*"]
        created = cli(
            "env",
            "create",
            "-f",
            spec_file(tmp_path, channel, "app", "hello"),
            "-n",
            "team",
            "--json",
        )
        build_id = json.loads(created.stdout)["id"]
        watched = cli("build", "watch", str(build_id), "--poll", "0.2")
        lines = watched.stderr.splitlines()  # not a terminal: one plain line per change
        assert lines[-1].startswith(f"build {build_id}: COMPLETED")
        assert all("\r" not in line for line in lines)
        out = tmp_path / "app.lock.yml"
        got = cli("download", "team/app", "-a", "lockfile", "-o", str(out))
        assert out.stat().st_size > 0 and f"wrote {out}" in got.stderr
        cli("download", "team/app", "-a", "lockfile", "-b", "999", code=3)
        cli("env", "show", "team/none", code=3)
        tokens = json.loads(cli("token", "list", "--json").stdout)["items"]
        assert [t["kind"] for t in tokens] == ["session"]
        cli("logout")
        anonymous = cli("env", "list")
        assert "not logged in" in anonymous.stderr
        cli("namespace", "delete", "team", "--yes", code=4)


def test_shell_completion_names_namespaces_and_environments(site, run, channel):
    from click.shell_completion import ShellComplete

    ctx, url = site
    build(ctx, "default", channel, "tools", "hello")
    build(ctx, "default", channel, "toys", "hello")
    build(ctx, "vera", channel, "tools", "hello")
    login(run, url, "ada")  # completion asks the server login remembered
    complete = ShellComplete(main, {}, "condastore", "_CONDASTORE_COMPLETE")

    def values(args, incomplete):
        return [c.value for c in complete.get_completions(args, incomplete)]

    assert values(["env", "show"], "default/to") == ["default/tools", "default/toys"]
    assert values(["download"], "vera/") == ["vera/tools"]
    assert values(["env", "list", "-n"], "ve") == ["vera"]
    run("logout")
    assert values(["env", "show"], "default/") == []  # anonymous: nothing to offer
