"""conda-store's own CLI and client library, unchanged, against ``condastore serve``.

The ``conda-store`` package from PyPI (a test dependency) speaks conda-store's
REST API v1, which condastore serves beside its own API
(``condastore_web/compat``). Each step runs the real client as its users do.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from unittest import mock

import pytest
import yaml

from tests.support.serve import add_admin, serve

conda_store_api = pytest.importorskip(
    "conda_store.api", reason="the conda-store client (test extra 'conda-store') is not installed"
)

PASSWORD = "correct horse battery"
SPEC = "name: tools\nchannels: ['{channel}']\ndependencies: [zstd]\n"


def login(url: str, name: str) -> str:
    request = urllib.request.Request(
        f"{url}/api/v1/auth/login",
        data=json.dumps({"username": name, "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)["token"]


def conda_store(
    url: str, token: str | None, *args: str, check: bool = True, cwd=None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONDA_STORE_URL": url, "COLUMNS": "200"}
    if token is not None:
        env.update(CONDA_STORE_AUTH="token", CONDA_STORE_TOKEN=token)
    result = subprocess.run(
        [sys.executable, "-m", "conda_store", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=cwd,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def create_environment(url: str, token: str, namespace: str, specification: str) -> int:
    """conda-store's client library submits the spec (it reads the token from the environment)."""

    async def submit() -> int:
        async with conda_store_api.CondaStoreAPI(url, auth_type="token") as api:
            return await api.create_environment(namespace, specification)

    with mock.patch.dict(os.environ, {"CONDA_STORE_TOKEN": token}):
        return asyncio.run(submit())


@pytest.fixture
def server(tmp_path, sample_channel):
    data = tmp_path / "data"
    add_admin(data, "alice", PASSWORD)
    env = {"CONDASTORE_TARBALL": "true", "CONDASTORE_CHANNELS": sample_channel}
    with serve(data, env=env) as served:
        yield served.url


@pytest.mark.slow
def test_the_conda_store_cli_builds_lists_downloads_and_runs(server, sample_channel, tmp_path):
    token = login(server, "alice")

    info = conda_store(server, token, "info").stdout
    assert "Default namespace is alice" in info
    assert "Authenticated True" in info

    spec = SPEC.format(channel=sample_channel)
    build_id = create_environment(server, token, "alice", spec)
    conda_store(server, token, "wait", "alice/tools", "--interval", "1", "--timeout", "300")

    namespaces = json.loads(
        conda_store(server, token, "list", "namespace", "--output", "json").stdout
    )
    assert "alice" in {n["name"] for n in namespaces}
    environments = json.loads(
        conda_store(server, token, "list", "environment", "--output", "json").stdout
    )
    assert [(e["namespace"]["name"], e["name"]) for e in environments] == [("alice", "tools")]
    assert environments[0]["current_build_id"] == build_id
    builds = json.loads(
        conda_store(
            server, token, "list", "build", "--status", "COMPLETED", "--output", "json"
        ).stdout
    )
    assert [b["id"] for b in builds] == [build_id]

    spec_file = tmp_path / "environment.yaml"
    spec_file.write_text(spec)
    solved = json.loads(
        conda_store(server, token, "solve", str(spec_file), "--output", "json").stdout
    )
    assert "zstd" in {p["name"] for p in solved}

    lock_path = tmp_path / "lock.yml"
    conda_store(
        server, token, "download", f"alice/tools:{build_id}", "--artifact", "lockfile",
        "--output-filename", str(lock_path),
    )  # fmt: skip
    locked = yaml.safe_load(lock_path.read_text())
    assert "zstd" in {p["name"] for p in locked["package"]}
    yaml_path = tmp_path / "env.yaml"
    conda_store(
        server, token, "download", "alice/tools", "--artifact", "yaml",
        "--output-filename", str(yaml_path),
    )  # fmt: skip
    assert any(
        str(d).startswith("zstd") for d in yaml.safe_load(yaml_path.read_text())["dependencies"]
    )
    log_path = tmp_path / "build.log"
    conda_store(
        server, token, "download", str(build_id), "--artifact", "logs",
        "--output-filename", str(log_path),
    )  # fmt: skip
    assert "zstd" in log_path.read_text()

    conda_store(
        server, token, "wait", str(build_id), "--artifact", "archive", "--interval", "1",
        "--timeout", "300",
    )  # fmt: skip
    ran = conda_store(server, token, "run", "--no-cache", "alice/tools", "--", "zstd", "--version")
    assert "Zstandard CLI" in ran.stdout + ran.stderr


@pytest.mark.slow
def test_conda_store_tokens_are_narrowed_by_role_bindings(server, sample_channel):
    token = login(server, "alice")
    narrowed = conda_store(
        server, token, "token", "--permission", "alice/*:viewer", "--expiration", "600"
    ).stdout.strip()
    info = conda_store(server, narrowed, "info").stdout
    assert "alice" in info and "viewer" not in info  # the table shows permissions, not roles
    assert "environment::read" in info and "environment:create" not in info
    # A viewer's token may not submit: the client reports the server's reason.
    with pytest.raises(conda_store_api.CondaStoreAPIError, match="may not write"):
        create_environment(server, narrowed, "alice", SPEC.format(channel=sample_channel))
    # Nor grant itself more than it has.
    refused = conda_store(server, narrowed, "token", "--permission", "alice/*:admin", check=False)
    assert refused.returncode == 1
    assert "not a subset" in refused.stderr
    anonymous = conda_store(server, None, "info").stdout
    assert "Authenticated False" in anonymous
