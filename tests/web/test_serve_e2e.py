"""``condastore serve`` as a real process, driven by the ``condastore`` CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from conda_lock.lockfile import parse_conda_lock_file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = free_port()
    env = {**os.environ, "CONDASTORE_TARBALL": "false"}
    env.pop("CONDASTORE_CONFIG", None)
    with open(tmp_path / "server.log", "wb") as log:
        yield from _run_server(port, env, log, tmp_path)


def _run_server(port, env, log, tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "condastore_web",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/v1", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(
                    f"condastore serve did not start:\n{(tmp_path / 'server.log').read_text()}"
                )
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def cli(url, *args, check=True):
    result = subprocess.run(
        [sys.executable, "-m", "condastore_web", *args, "--url", url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.slow
def test_create_wait_download_from_the_sample_channel(server, sample_channel, tmp_path):
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
        "default/tools",
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
    bad = tmp_path / "environment.yaml"
    bad.write_text("name: x\ndependencies: []\n")
    result = cli(server, "env", "create", "-f", str(bad), check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "dependencies" in result.stderr
    missing = cli(server, "env", "show", "default/nothing", check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    rollback = cli(server, "env", "rollback", "default/nothing", "7", check=False)
    assert rollback.returncode == 1 and "HTTP 404" in rollback.stderr
