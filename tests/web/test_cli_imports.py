"""The ``condastore`` command imports only what the command it runs needs.

Each check runs a fresh interpreter, as a user's shell does, and reads which
modules ended up in ``sys.modules``: a remote command must not pay for the
server stack, ``--help`` for any command, ``lock`` and ``build`` for conda-lock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import click
import pytest

from tests.core.test_cli_local import write_spec

#: What no command that talks to a server, and no ``--help``, may import.
SERVER_STACK = [
    "sqlalchemy",
    "alembic",
    "conda_lock",
    "conda_pack",
    "falcon",
    "jwt",
    "redis",
    "rq",
    "boto3",
    "rattler",
    "pydantic",
    "condastore_core.service",
    "condastore_core.db",
    "condastore_web.app",
    "condastore_web.api",
]
#: What ``lock`` and ``build`` (without a tarball) may not import: they need rattler, not these.
NOT_FOR_LOCAL_BUILDS = [
    "sqlalchemy",
    "alembic",
    "conda_lock",
    "conda_pack",
    "falcon",
    "jwt",
    "redis",
    "rq",
    "boto3",
    "packaging",
    "requests",
    "condastore_core.service",
    "condastore_core.db",
    "condastore_web.app",
    "condastore_web.api",
]

RUN_AND_LIST_MODULES = """
import json, sys
from condastore_web.cli import main
try:
    main(sys.argv[1:], prog_name="condastore")
except SystemExit as exc:
    code = exc.code or 0
else:
    code = 0
server = sys.modules.get("multiprocessing.forkserver")
print("\\nFORKSERVER", bool(server and server._forkserver._forkserver_pid))
print("\\nMODULES " + json.dumps(sorted(sys.modules)))
sys.exit(code)
"""


def run_cli(*args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    env = {**os.environ, "COLUMNS": "80", "CONDASTORE_CREDENTIALS": os.devnull}
    proc = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST_MODULES, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    head, _, modules = proc.stdout.rpartition("\nMODULES ")
    assert modules, proc.stderr
    head, _, forkserver = head.rpartition("\nFORKSERVER ")
    proc.stdout = head
    proc.forkserver = forkserver.strip() == "True"  # type: ignore[attr-defined]
    return proc, set(json.loads(modules))


def imported(modules: set[str], packages: list[str]) -> list[str]:
    return sorted(p for p in packages if any(m == p or m.startswith(p + ".") for m in modules))


@pytest.fixture(scope="module")
def api_stub():
    """A loopback HTTP server answering the few API calls the remote commands make."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"items": [], "next": None}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["build", "--help"]])
def test_version_and_help_import_no_command(args):
    proc, modules = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert imported(modules, SERVER_STACK) == []
    assert not any(m.startswith("condastore_core.") for m in modules)


def test_version_is_the_installed_packages():
    from importlib.metadata import version

    proc, modules = run_cli("--version")
    assert proc.stdout.strip() == f"condastore, version {version('condastore')}"
    assert "importlib.metadata" not in modules  # read from the package, not the metadata


@pytest.mark.parametrize(
    "args",
    [
        ["env", "list", "--help"],
        ["env", "create", "--help"],
        ["build", "list", "--help"],
        ["build", "log", "--help"],
        ["download", "--help"],
        ["login", "--help"],
        ["logout", "--help"],
        ["token", "create", "--help"],
        ["push", "--help"],
        ["namespace", "list", "--help"],
        ["user", "list", "--help"],
        ["token", "list", "--help"],
        ["role-binding", "add", "--help"],
        ["package", "search", "--help"],
        ["build", "watch", "--help"],
    ],
)
def test_remote_commands_import_no_server_stack(args):
    proc, modules = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert imported(modules, SERVER_STACK) == []


def test_env_list_against_a_server_imports_no_server_stack(api_stub, tmp_path):
    proc, modules = run_cli("env", "list", "--url", api_stub, "--token", "t")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ENVIRONMENT", "CURRENT", "BUILD", "KEY", "DESCRIPTION"]
    assert imported(modules, SERVER_STACK) == []
    proc, modules = run_cli("build", "list", "--url", api_stub, "--token", "t", "--json")
    assert json.loads(proc.stdout) == {"items": [], "next": None}
    assert imported(modules, SERVER_STACK) == []


@pytest.mark.parametrize("args", [["lock", "--help"], ["build", "local", "--help"]])
def test_local_commands_import_no_server_stack(args):
    proc, modules = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert imported(modules, NOT_FOR_LOCAL_BUILDS) == []


def test_lock_and_build_import_no_server_stack(make_test_channel, tmp_path):
    """Nor conda-lock: its input hash is computed natively (``test_conda_lock_hash``)."""
    from tests.support.packages import PackageDef

    url = make_test_channel([PackageDef("hello", "1.0", subdir="linux-64")])
    spec = write_spec(tmp_path / "env.yaml", url, deps=("hello",))
    data = str(tmp_path / "d")
    proc, modules = run_cli("lock", str(spec), "-p", "linux-64", "--data-dir", data)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# This lock file was generated by conda-lock")
    assert imported(modules, NOT_FOR_LOCAL_BUILDS) == []

    proc, modules = run_cli("build", str(spec), "--no-tarball", "--json", "--data-dir", data)
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)["artifacts"]) == {"yaml", "lockfile", "explicit", "log"}
    assert imported(modules, NOT_FOR_LOCAL_BUILDS) == []
    assert not proc.forkserver  # the user's own build runs in its own process


def test_a_local_build_starts_no_fork_server_even_with_a_tarball(make_test_channel, tmp_path):
    from tests.support.packages import PackageDef

    url = make_test_channel([PackageDef("hello", "1.0", subdir="linux-64")])
    spec = write_spec(tmp_path / "env.yaml", url, deps=("hello",))
    proc, _ = run_cli("build", str(spec), "--json", "--data-dir", str(tmp_path / "d"))
    assert proc.returncode == 0, proc.stderr
    assert "tarball" in json.loads(proc.stdout)["artifacts"]
    assert not proc.forkserver


def commands_section(help_text: str) -> list[str]:
    return help_text.split("Commands:\n", 1)[1].splitlines()


@pytest.mark.parametrize("group", [[], ["build"]], ids=["condastore", "build"])
def test_help_lists_every_command_with_its_own_one_line_help(group, monkeypatch):
    """The lazy listing equals the listing click writes from the loaded commands themselves."""
    from condastore_web.cli import main

    monkeypatch.setenv("COLUMNS", "80")
    proc, _ = run_cli(*group, "--help")
    lazy_lines = commands_section(proc.stdout)

    target = main if not group else main.get_command(click.Context(main), group[0])
    assert isinstance(target, click.Group)
    eager = click.Group(target.name)
    for name in target.list_commands(click.Context(target)):
        command = target.get_command(click.Context(target), name)
        assert command is not None, name
        eager.add_command(command, name)
    eager_help = eager.get_help(click.Context(eager, info_name="condastore"))
    assert lazy_lines == commands_section(eager_help)
    listed = {line.split()[0] for line in lazy_lines}
    assert listed == set(target.list_commands(click.Context(target)))


def test_every_listed_command_loads_and_runs_its_help():
    from condastore_web.cli import COMMANDS, build, main

    for group, names in [(main, COMMANDS), (build, build.lazy)]:
        for name in names:
            command = group.get_command(click.Context(group), name)
            assert isinstance(command, click.Command), name


def test_importing_the_users_service_hashes_no_password():
    """scrypt at import time cost every process a tenth of a second; it now runs on first use."""
    code = """
import hashlib
calls = []
real = hashlib.scrypt
hashlib.scrypt = lambda *a, **k: calls.append(1) or real(*a, **k)
import condastore_core.service.users
print(len(calls))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == "0"
