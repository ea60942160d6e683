"""Single sign-on in headless Chromium: the login page's link, the provider's own pages, logout.

The provider is node-oidc-provider on loopback (``tests/support/identity_provider.py``);
its development login page takes any name.
"""

from __future__ import annotations

import pytest

from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.service import namespaces, users
from condastore_core.service.context import Context
from condastore_core.settings import load_settings
from condastore_web.app import create_app
from tests.support.identity_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    client,
    identity_provider,
    provider_install,
)
from tests.support.live_server import live_server
from tests.support.net import free_port

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def provider_login(page, login: str) -> None:
    """The provider's pages: sign in with any name, then consent."""
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password")
    page.click("button[type=submit]")
    page.click("button:text-is('Continue')")


def test_log_in_and_out_through_the_identity_provider(tmp_path, browser):
    install = provider_install()
    port = free_port()
    settings = load_settings(
        {
            "data_dir": tmp_path / "data",
            "tarball": False,
            "oidc_issuer": f"http://127.0.0.1:{port}",
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": CLIENT_SECRET,
            "oidc_scopes": ("openid", "profile", "groups"),
        },
        environ={},
    )
    ctx = Context.from_settings(settings)
    ctx.jobs = InProcessQueue(ctx)
    namespaces.create_namespace(ctx, "team")
    users.add_role_binding(ctx, "group:admins", "*/*", "admin")
    with (
        live_server(create_app(ctx)) as url,
        identity_provider(install, tmp_path, port, [client(url)]) as provider,
    ):
        provider.set_groups("hedy", ["admins"])
        page = browser.new_page()
        page.goto(f"{url}/ui/builds")  # a page that needs no login, to come back to
        page.goto(f"{url}/ui/login?next=/ui/builds")
        page.click("#sso")
        page.wait_for_url(f"{provider.issuer}/**")
        provider_login(page, "hedy")
        page.wait_for_url(f"{url}/ui/builds", timeout=15_000)
        assert "hedy" in page.text_content("header")
        page.goto(f"{url}/ui/new")  # the group's binding lets hedy build in "team"
        assert page.locator("#namespace option:text-is('team')").count() == 1

        page.click("form[data-action=logout-form] button")
        page.wait_for_url(f"{provider.issuer}/session/end**")
        page.click("button:text-is('Yes, sign me out')")
        page.wait_for_url(f"{url}/ui/login**", timeout=15_000)
        assert "hedy" not in page.text_content("header")
        # the provider's session ended too: logging in again asks for the login
        page.click("#sso")
        page.wait_for_url(f"{provider.issuer}/**")
        assert page.locator("input[name=login]").count() == 1
    ctx.jobs.shutdown()
