"""A real OpenID provider on loopback: node-oidc-provider, installed with npm on first use.

``oidc_provider/package.json`` pins the provider; :func:`provider_install` runs
``npm install`` once into a cache directory (``$XDG_CACHE_HOME/condastore-tests``)
and later runs reuse it. Without node and npm, or when the install fails (no
registry reachable), the tests that need the provider skip and say why.

:func:`identity_provider` starts ``oidc_provider/provider.mjs`` with the given
clients and waits, loudly, until it listens. Its development login page takes
any login name; the groups of each login come from a JSON file the test may
rewrite between logins (:meth:`IdentityProvider.set_groups`).

:func:`log_in_at_provider` plays the browser's part at that login page with
``requests`` (the Chromium tests use the same pages through Playwright).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from tests.support.net import free_port

SOURCE = Path(__file__).resolve().parent / "oidc_provider"
CLIENT_ID = "condastore"
CLIENT_SECRET = "a client secret of the tests"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def provider_install() -> Path:
    """A directory holding the provider script and its ``node_modules`` (cached)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run the test OpenID provider (oidc-provider)")
    manifest = (SOURCE / "package.json").read_bytes()
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    target = (
        cache_root
        / "condastore-tests"
        / f"oidc-provider-{hashlib.sha256(manifest).hexdigest()[:12]}"
    )
    if not (target / "node_modules" / "oidc-provider" / "package.json").is_file():
        staging = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        (staging / "package.json").write_bytes(manifest)
        result = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--omit=dev"],
            cwd=staging,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            pytest.skip(f"npm install of oidc-provider failed:\n{result.stderr[-2000:]}")
        try:
            staging.rename(target)
        except OSError:  # another test run installed it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    shutil.copyfile(SOURCE / "provider.mjs", target / "provider.mjs")
    return target


def client(
    app_url: str, client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET
) -> dict[str, object]:
    """The client registration of a condastore served at ``app_url``."""
    return {
        "client_id": client_id,
        "client_secret": secret,
        "redirect_uris": [f"{app_url}/ui/login/callback"],
        "post_logout_redirect_uris": [f"{app_url}/ui/login"],
        "grant_types": ["authorization_code", DEVICE_GRANT],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
    }


@dataclass
class IdentityProvider:
    issuer: str
    accounts: Path
    log: Path

    def set_groups(self, login: str, groups: list[str]) -> None:
        data = json.loads(self.accounts.read_text())
        data.setdefault(login, {})["groups"] = groups
        self.accounts.write_text(json.dumps(data))


def provider_port() -> int:
    return free_port()


@contextmanager
def identity_provider(
    install: Path, workdir: Path, port: int, clients: list[dict[str, object]]
) -> Iterator[IdentityProvider]:
    """The provider at ``http://127.0.0.1:PORT`` until the block ends."""
    accounts = workdir / "accounts.json"
    accounts.write_text("{}")
    log_path = workdir / f"oidc-provider-{port}.log"
    env = {
        **os.environ,
        "PORT": str(port),
        "CLIENTS": json.dumps(clients),
        "ACCOUNTS": str(accounts),
        "NODE_ENV": "development",
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["node", "provider.mjs"], cwd=install, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        issuer = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while b"ready " not in log_path.read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"the OpenID provider did not start:\n{log_path.read_text()}")
                time.sleep(0.1)
            yield IdentityProvider(issuer, accounts, log_path)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', re.S)
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


def submit_forms(
    session: requests.Session,
    response: requests.Response,
    login: str,
    *,
    stop_at: str | None = None,
    user_code: str | None = None,
) -> requests.Response:
    """Fill in the provider's pages (user code, login, consent) until none is left.

    With ``stop_at``, redirects to URLs starting with it are not followed:
    the answer carrying that ``Location`` is returned (to look at, or tamper
    with, the callback before condastore sees it).
    """
    for _ in range(10):
        location = response.headers.get("Location")
        if response.is_redirect and location:
            target = urljoin(response.url, location)
            if stop_at and target.startswith(stop_at):
                return response
            response = session.get(target, allow_redirects=False, timeout=30)
            continue
        match = _FORM.search(response.text)
        if match is None or response.status_code != 200:
            return response
        action, body = urljoin(response.url, unescape(match.group(1))), match.group(2)
        fields = {name: unescape(value) for name, value in _HIDDEN.findall(body)}
        if 'name="login"' in body:
            fields.update(login=login, password="any password")
        if 'name="user_code"' in body:
            fields["user_code"] = user_code or ""
        if 'name="confirm"' in body:
            fields["confirm"] = "yes"
        if 'name="logout"' in response.text:  # its button sits outside the form
            fields["logout"] = "yes"
        response = session.post(action, data=fields, allow_redirects=False, timeout=30)
    raise AssertionError(f"the provider's pages did not end: {response.url}")
