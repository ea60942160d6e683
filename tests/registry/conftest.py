"""A registry served over HTTP, with an admin, a viewer of team/*, and a stranger."""

from __future__ import annotations

import pytest
import requests

from condastore_core.service import namespaces, users
from condastore_web.app import create_app
from tests.support.live_server import live_server

PASSWORD = "a long password"


@pytest.fixture
def registry(ctx):
    namespaces.create_namespace(ctx, "team")
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    users.create_user(ctx, "vera", PASSWORD)
    users.create_user(ctx, "otto", PASSWORD)
    users.add_role_binding(ctx, "user:vera", "team/*", "viewer")
    with live_server(create_app(ctx)) as url:
        yield url


@pytest.fixture
def admin(registry):
    session = requests.Session()
    session.auth = ("ada", PASSWORD)
    return session
