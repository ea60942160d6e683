"""A full disk is a clear, recoverable state, on a real server whose data directory is a
small tmpfs: writes answer 507 with a message, ``/readyz`` says not ready, a tarball that
could not be packed is shown on its build (API, CLI, page), and all is well once space
is freed."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.service import namespaces, users
from condastore_core.service.context import Context
from condastore_core.settings import load_settings
from condastore_web.app import create_app
from tests.support.live_server import live_server
from tests.support.packages import PackageDef

pytestmark = pytest.mark.integration
PASSWORD = "a long password"
KiB = 1 << 10


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs, mounted for the test (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Write a ballast file until the disk is full, then give back ``leave`` bytes."""
    ballast = disk / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        size = 1 << 20
        while size:
            try:
                os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                size //= 2
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)
    return ballast


@pytest.fixture
def server(small_disk, make_test_channel):
    # A package of 1.2 MB that does not compress well: its tarball needs room.
    big = PackageDef("big", "1.0", files={"share/big/data.txt": secrets.token_hex(600_000)})
    channel = make_test_channel([big])
    settings = load_settings(
        {
            "data_dir": small_disk / "data",
            "tarball": False,
            "channels": channel,
            "min_free_bytes": 1 << 20,
        },
        environ={},
    )
    ctx = Context.from_settings(settings)
    ctx.jobs = InProcessQueue(ctx)
    namespaces.create_namespace(ctx, "default")
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    with live_server(create_app(ctx)) as url:
        yield ctx, url, channel
    ctx.jobs.shutdown(wait=True)
    ctx.engine.dispose()


def login(url: str) -> requests.Response:
    return requests.post(
        f"{url}/api/v1/auth/login", json={"username": "ada", "password": PASSWORD}, timeout=30
    )


def assert_insufficient_storage(r: requests.Response) -> None:
    assert r.status_code == 507, (r.status_code, r.text[:500])
    error = r.json()["error"]
    assert error["status"] == 507 and error["code"] == "INSUFFICIENT_STORAGE"
    assert "space" in error["message"]


def push_blob(url: str, data: bytes) -> requests.Response:
    """A monolithic registry upload of ``data``; the first answer that is not a success."""
    auth = ("ada", PASSWORD)
    start = requests.post(f"{url}/v2/default/big/blobs/uploads/", auth=auth, timeout=30)
    if start.status_code != 202:
        return start
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return requests.put(
        url + start.headers["Location"],
        params={"digest": digest},
        data=data,
        headers={"Content-Type": "application/octet-stream"},
        auth=auth,
        timeout=30,
    )


def test_a_full_disk_is_a_clear_state_and_recovers(server, small_disk):
    ctx, url, channel = server
    token = login(url).json()["token"]
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    spec = f"name: big\nchannels: [{channel}]\ndependencies: [big]\n"
    build = api.post(f"{url}/api/v1/environments", json={"specification": spec}, timeout=30).json()
    ctx.jobs.wait_idle(timeout=120)
    build = api.get(f"{url}/api/v1/builds/{build['id']}", timeout=30).json()
    assert build["status"] == "COMPLETED" and build["artifact_errors"] == {}
    assert requests.get(f"{url}/readyz", timeout=30).status_code == 200

    # Nearly full: 256 KiB left, less than the guard and less than the tarball needs.
    ballast = fill(small_disk, leave=256 * KiB)
    ready = requests.get(f"{url}/readyz", timeout=30)
    assert ready.status_code == 503 and ready.json()["status"] == "not ready"
    assert "min_free_bytes" in ready.json()["checks"]["disk"]
    r = api.post(f"{url}/api/v1/environments", json={"specification": spec}, timeout=30)
    assert_insufficient_storage(r)

    # The tarball is asked for under a lower guard: packing runs out of space.
    ctx.settings = dataclasses.replace(ctx.settings, min_free_bytes=128 * KiB)
    tarball = f"{url}/api/v1/builds/{build['id']}/artifacts/tarball"
    assert api.post(tarball, timeout=30).status_code == 202
    ctx.jobs.wait_idle(timeout=120)
    shown = api.get(f"{url}/api/v1/builds/{build['id']}", timeout=30).json()
    assert shown["status"] == "COMPLETED"
    assert "tarball" not in {a["kind"] for a in shown["artifacts"]}
    assert "storage space" in shown["artifact_errors"]["tarball"]
    cli = subprocess.run(
        [sys.executable, "-m", "condastore_web", "build", "show", str(build["id"])],
        env={**os.environ, "CONDASTORE_URL": url, "CONDASTORE_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert "tarball   FAILED: the server ran out of storage space" in cli.stdout
    page = api.get(f"{url}/ui/builds/{build['id']}", timeout=30).text
    assert "tarball failed: the server ran out of storage space" in page
    assert "Try again" in page
    log = api.get(f"{url}/api/v1/builds/{build['id']}/log", timeout=30).json()["text"]
    assert "tarball failed" in log

    # A registry push larger than what is left: 507 with a registry error body.
    r = push_blob(url, secrets.token_bytes(1 << 20))
    assert r.status_code == 507, (r.status_code, r.text[:500])
    (error,) = r.json()["errors"]
    assert error["code"] == "INSUFFICIENT_STORAGE" and "space" in error["message"]

    # Completely full: logins and token requests never answer 500.
    fill(small_disk / "data")
    for _ in range(20):
        r = login(url)
        assert r.status_code in (200, 507), (r.status_code, r.text[:500])
        if r.status_code == 507:
            assert_insufficient_storage(r)
            break
    else:
        pytest.fail("twenty logins on a full disk all found room to write")

    # Space freed: ready again, logins work, and the tarball can be made after all.
    ballast.unlink()
    (small_disk / "data" / "ballast").unlink()
    assert requests.get(f"{url}/readyz", timeout=30).status_code == 200
    assert login(url).status_code == 200
    again = subprocess.run(
        [sys.executable, "-m", "condastore_web", "build", "pack", str(build["id"])],
        env={**os.environ, "CONDASTORE_URL": url, "CONDASTORE_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0 and "tarball queued" in again.stdout, again.stderr
    ctx.jobs.wait_idle(timeout=120)
    shown = api.get(f"{url}/api/v1/builds/{build['id']}", timeout=30).json()
    assert "tarball" in {a["kind"] for a in shown["artifacts"]}
    assert shown["artifact_errors"] == {}
    assert push_blob(url, b"small enough").status_code == 201
