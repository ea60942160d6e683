"""``condastore serve`` as a real process, started the way users start it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.gate import gate_env
from tests.support.net import free_port


def condastore(*args: str, stdin: str | None = None, timeout: float = 300) -> str:
    """Run one ``condastore`` command; its stdout, or a test failure with its output."""
    result = subprocess.run(
        [sys.executable, "-m", "condastore_web", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def add_admin(data_dir: Path, name: str, password: str) -> None:
    condastore(
        "user", "add", name, "--admin", "--init", "--password-stdin", "--data-dir", str(data_dir),
        stdin=f"{password}\n",
    )  # fmt: skip


@dataclass(frozen=True)
class Served:
    url: str
    pid: int
    log: Path

    def workers(self) -> set[int]:
        """The server's worker processes (children of its master)."""
        found = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.pid:
                found.add(int(stat.parent.name))
        return found


@contextmanager
def serve(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """``condastore serve --data-dir DATA ARGS`` on a free port until the block ends.

    Waits (loudly, at most a minute) until the API answers; the server's output
    goes to ``serve.log`` beside the data directory and is shown if it fails.
    """
    port = free_port()
    environ = {**os.environ, "CONDASTORE_TARBALL": "false", **gate_env(), **(env or {})}
    environ.pop("CONDASTORE_CONFIG", None)
    log_path = data_dir.parent / f"serve-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "condastore_web", "serve",
                "--port", str(port), "--data-dir", str(data_dir), *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environ,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_answering(url, proc, log_path)
            yield Served(url, proc.pid, log_path)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_until_answering(url: str, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/v1", timeout=2).read()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"condastore serve did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
