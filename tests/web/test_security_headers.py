"""Every answer carries the browser's safety headers, and pages hold no inline script."""

from __future__ import annotations

import importlib.resources
import re
import stat
from pathlib import Path

import pytest
import requests
from sqlalchemy import make_url

from condastore_core.service import users
from condastore_web.app import create_app
from tests.support.live_server import live_server

PASSWORD = "a long password"
PATHS = [
    "/ui/login",
    "/ui/environments",
    "/ui/builds",
    "/ui/builds/999",
    "/ui/nothing-here",
    "/api/v1",
    "/api/v1/namespaces",
    "/api/v1/builds/999",
    "/api/v1/nothing-here",
    "/static/app.js",
    "/healthz",
    "/v2/",
]


@pytest.fixture
def site(ctx):
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    with live_server(create_app(ctx)) as url:
        yield url


@pytest.mark.parametrize("path", PATHS)
def test_every_answer_has_the_safety_headers(site, path):
    r = requests.get(f"{site}{path}", timeout=10)
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"] == "same-origin"
    csp = r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "default-src 'self'" in csp


def test_errors_and_posts_have_them_too(site):
    r = requests.post(f"{site}/api/v1/users", json={}, timeout=10)
    assert r.status_code == 401 and r.headers["X-Frame-Options"] == "DENY"
    r = requests.post(f"{site}/ui/login", data={"username": "x", "password": "y"}, timeout=10)
    assert r.status_code == 401 and "frame-ancestors" in r.headers["Content-Security-Policy"]


def test_templates_have_no_inline_script_or_handlers():
    templates = importlib.resources.files("condastore_web") / "templates"
    for template in templates.iterdir():
        text = template.read_text()
        assert not re.search(r"\son[a-z]+\s*=", text), template.name
        assert not re.search(r"<script(?![^>]*\ssrc=)", text), template.name
        assert "javascript:" not in text, template.name


def test_the_sqlite_database_is_private(ctx):
    url = make_url(ctx.settings.resolved_database_url)
    if url.get_backend_name() != "sqlite":
        pytest.skip("the database is not a file")
    db = Path(url.database)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    for sibling in db.parent.glob("condastore.db-*"):  # the WAL and its index
        assert stat.S_IMODE(sibling.stat().st_mode) == 0o600, sibling
