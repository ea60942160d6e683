"""``condastore serve`` as a real process, driven by the ``condastore`` CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from conda_lock.lockfile import parse_conda_lock_file

from tests.support.serve import serve


@pytest.fixture(autouse=True)
def own_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDASTORE_CREDENTIALS", str(tmp_path / "credentials.json"))
    monkeypatch.delenv("CONDASTORE_TOKEN", raising=False)


def login_as_admin(url, tmp_path):
    data = str(tmp_path / "data")
    cli(
        url,
        "user",
        "add",
        "alice",
        "--admin",
        "--password-stdin",
        "--data-dir",
        data,
        stdin="correct horse battery\n",
        with_url=False,
    )
    cli(url, "login", "-u", "alice", "--password-stdin", stdin="correct horse battery\n")


@pytest.fixture
def server(tmp_path):
    with serve(tmp_path / "data") as served:
        yield served.url


def cli(url, *args, check=True, stdin=None, with_url=True):
    result = subprocess.run(
        [sys.executable, "-m", "condastore_web", *args, *(["--url", url] if with_url else [])],
        capture_output=True,
        text=True,
        timeout=300,
        input=stdin,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.slow
def test_create_wait_download_from_the_sample_channel(server, sample_channel, tmp_path):
    login_as_admin(server, tmp_path)
    spec = tmp_path / "environment.yaml"
    spec.write_text(
        yaml.safe_dump(
            {"name": "tools", "channels": [sample_channel], "dependencies": ["zstd", "xz"]}
        )
    )
    created = cli(server, "env", "create", "-f", str(spec), "--wait")
    assert "linking zstd" in created.stdout and "COMPLETED" in created.stdout
    listed = json.loads(cli(server, "env", "list", "--json").stdout)
    assert [e["name"] for e in listed["items"]] == ["tools"]
    cli(
        server,
        "download",
        "alice/tools",  # the caller's own namespace, as in the web UI
        "--artifact",
        "lockfile",
        "-o",
        str(tmp_path / "conda-lock.yml"),
    )
    lock = parse_conda_lock_file(tmp_path / "conda-lock.yml")
    assert {"zstd", "xz"} <= {p.name for p in lock.package}
    builds = json.loads(cli(server, "build", "list", "--json").stdout)["items"]
    assert [b["status"] for b in builds] == ["COMPLETED"]
    log = cli(server, "build", "log", str(builds[0]["id"])).stdout
    assert "build completed" in log


def test_cli_reports_server_errors_in_one_line(server, tmp_path):
    anonymous = cli(server, "env", "list", "--json")
    assert json.loads(anonymous.stdout)["items"] == []  # nothing is readable without a login
    login_as_admin(server, tmp_path)
    bad = tmp_path / "environment.yaml"
    bad.write_text("name: x\ndependencies: []\n")
    result = cli(server, "env", "create", "-f", str(bad), check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "dependencies" in result.stderr
    missing = cli(server, "env", "show", "default/nothing", check=False)
    assert missing.returncode == 3 and "does not exist" in missing.stderr  # 3: not found
    rollback = cli(server, "env", "rollback", "default/nothing", "7", check=False)
    assert rollback.returncode == 3 and "HTTP 404" in rollback.stderr
    narrowed = cli(server, "token", "create", "--binding", "alice/*=viewer", "--expires-in", "1h")
    token = narrowed.stdout.strip()
    spec = tmp_path / "env.yaml"
    spec.write_text("name: x\nchannels: [conda-forge]\ndependencies: [zstd]\n")
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "condastore_web",
            "env",
            "create",
            "-f",
            str(spec),
            "-n",
            "alice",
            "--url",
            server,
            "--token",
            token,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 4 and "HTTP 403" in refused.stderr  # 4: not allowed
    cli(server, "logout")
    after = cli(server, "env", "show", "default/x", check=False)
    assert after.returncode == 4 and "HTTP 401" in after.stderr


def test_serve_runs_its_worker_processes_and_replaces_them_gracefully(tmp_path):
    with serve(tmp_path / "data", "--workers", "3", "--threads", "2") as served:
        said = served.log.read_text()
        assert f"condastore serving {served.url}/api/v1" in said
        assert "3 workers x 2 threads" in said
        first = workers_once(served, lambda found: len(found) == 3)
        os.kill(served.pid, signal.SIGHUP)  # a graceful restart: new workers, same server
        workers_once(served, lambda found: len(found) == 3 and not found & first)
        assert urllib.request.urlopen(f"{served.url}/api/v1", timeout=10).status == 200


def workers_once(served, wanted, timeout=60.0):
    """The server's worker processes, once they are as ``wanted``."""
    deadline = time.monotonic() + timeout
    while not wanted(found := served.workers()):
        assert time.monotonic() < deadline, f"the server's workers are {found}"
        time.sleep(0.2)
    return found
