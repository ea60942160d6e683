"""The CNCF distribution registry (Debian's ``docker-registry``) as an upstream for tests.

It stands for Docker Hub or a company registry: base images are pushed to it
with skopeo, and condastore fetches them from it as it would from any registry,
optionally behind HTTP Basic credentials (an htpasswd file).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.net import free_port


def htpasswd_line(user: str, password: str) -> str:
    """``user:bcrypt(password)``, the only hash distribution's htpasswd accepts."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # the system's libcrypt, which does bcrypt on Debian

        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))
    if not hashed or not hashed.startswith("$2"):
        pytest.skip("this system's crypt cannot make bcrypt hashes for an htpasswd file")
    return f"{user}:{hashed}\n"


@contextlib.contextmanager
def distribution_registry(root: Path, users: dict[str, str] | None = None) -> Iterator[str]:
    """A running ``docker-registry`` on a loopback port, storing in ``root``; its host:port.

    With ``users`` it asks for HTTP Basic credentials (an htpasswd file).
    """
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("docker-registry (Debian package) is not installed")
    port = free_port()
    config: dict = {
        "version": 0.1,
        "storage": {"filesystem": {"rootdirectory": str(root / "storage")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if users:
        passwords = root / "htpasswd"
        passwords.write_text("".join(htpasswd_line(u, p) for u, p in users.items()))
        config["auth"] = {"htpasswd": {"realm": "test", "path": str(passwords)}}
    (root / "registry.yml").write_text(json.dumps(config))
    proc = subprocess.Popen(
        [binary, "serve", str(root / "registry.yml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except requests.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("docker-registry did not start")
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def push_layout(layout: Path, target: str, creds: str | None = None) -> None:
    """Copy the ``v1`` image of an OCI layout to ``docker://target`` with skopeo."""
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--dest-tls-verify=false",
            *(["--dest-creds", creds] if creds else []),
            f"oci:{layout}:v1",
            f"docker://{target}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
