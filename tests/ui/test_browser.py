"""The web UI in headless Chromium (Debian's), driven by Playwright: the daily path end to end.

Pages run under their Content-Security-Policy, which forbids evaluating strings as
script: waits go through locators, never ``wait_for_function("...")``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conda_lock.lockfile import parse_conda_lock_file
from playwright.sync_api import expect

from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.service import namespaces, users
from condastore_core.service.context import Context
from condastore_core.settings import load_settings
from condastore_web.app import create_app
from tests.support.gate import gate_env
from tests.support.live_server import live_server

pytestmark = [pytest.mark.slow, pytest.mark.integration]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "a long password"


@pytest.fixture
def site(tmp_path, sample_channel):
    settings = load_settings(
        {"data_dir": tmp_path / "data", "tarball": False, "channels": sample_channel},
        environ=gate_env(),
    )
    ctx = Context.from_settings(settings)
    ctx.jobs = InProcessQueue(ctx)
    namespaces.create_namespace(ctx, "default")
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    users.create_user(ctx, "vera", PASSWORD)
    users.add_role_binding(ctx, "user:vera", "default/*", "viewer")
    with live_server(create_app(ctx)) as url:
        yield url, sample_channel
    ctx.jobs.shutdown()


def log_in(page, url, user):
    page.goto(f"{url}/ui/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    try:
        page.wait_for_url(f"{url}/ui/environments", timeout=15_000)
    except Exception:
        raise AssertionError(f"login failed at {page.url}: {page.text_content('main')}") from None


def build_from_editor(page, spec: str) -> str:
    page.fill("#spec", spec)
    page.select_option("#namespace", "default")
    page.click("text=Solve preview")
    expect(page.locator("#preview")).to_contain_text("zstd")
    page.click("button:text-is('Build')")
    page.wait_for_url("**/ui/builds/*")
    build_url = page.url
    expect(page.locator("#status")).to_have_text("COMPLETED", timeout=90_000)
    assert page.url == build_url  # the status and the log arrived without a reload
    return build_url


def test_the_daily_path(site, browser, tmp_path):
    url, channel = site
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    dialogs, refused = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("console", lambda m: "Content Security Policy" in m.text and refused.append(m.text))
    log_in(page, url, "ada")
    page.goto(f"{url}/ui/new")
    page.fill("#spec", "name: broken\ndependencies: [zstd\n")
    page.click("text=Solve preview")
    expect(page.locator("#error")).to_contain_text("line")
    spec = f"name: tools\nchannels:\n  - {channel}\ndependencies:\n  - zstd\n"
    build_from_editor(page, spec)
    assert "linking zstd" in page.text_content("#log")
    page.screenshot(path=str(ARTIFACTS / "build.png"), full_page=True)
    with page.expect_download() as download:
        page.click("#artifacts a:text-is('lockfile')")
    download.value.save_as(tmp_path / "conda-lock.yml")
    assert "zstd" in {p.name for p in parse_conda_lock_file(tmp_path / "conda-lock.yml").package}

    page.goto(f"{url}/ui/environments/default/tools")
    page.click("text=Edit spec")
    assert "zstd" in page.input_value("#spec")
    edited = re.sub(r"^(\s*- )zstd$", r"\1zstd\n\1xz", page.input_value("#spec"), flags=re.M)
    assert "xz" in edited
    build_from_editor(page, edited)

    page.goto(f"{url}/ui/environments/default/tools")
    assert "ada" in page.text_content("table")  # who submitted each build
    page.screenshot(path=str(ARTIFACTS / "environment.png"), full_page=True)
    page.click("text=Compare selected builds")
    page.wait_for_url("**/diff?*")
    assert "xz" in page.text_content("table")
    page.screenshot(path=str(ARTIFACTS / "diff.png"), full_page=True)

    page.goto(f"{url}/ui/environments/default/tools")
    with page.expect_navigation(timeout=10_000):
        page.click("text=Roll back to this")
    assert dialogs == []
    current_row = page.text_content("tr:has(strong)")
    assert "#1" in current_row  # the first build is current again

    page.goto(f"{url}/ui/environments")
    page.screenshot(path=str(ARTIFACTS / "environments.png"), full_page=True)
    page.goto(f"{url}/ui/admin")
    assert "vera" in page.text_content("table")

    assert refused == []  # nothing on the pages needs what the policy forbids

    viewer = browser.new_page()
    log_in(viewer, url, "vera")
    viewer.goto(f"{url}/ui/environments/default/tools")
    assert viewer.locator("text=Edit spec").count() == 0
    assert viewer.locator("text=Roll back to this").count() == 0
    assert viewer.locator("button.danger").count() == 0
    viewer.goto(f"{url}/ui/admin")
    assert "only an administrator" in viewer.text_content("main")
    viewer.goto(f"{url}/ui/environments/nowhere/nothing")
    assert "does not exist" in viewer.text_content("main")  # a page, never a traceback
