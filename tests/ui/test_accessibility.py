"""Pages in headless Chromium: live build pages to the end, and axe-core on every page.

axe-core (``tests/support/axe.py``) is injected into each page at desktop width
and at 390 px: no serious or critical violation, and nothing wider than the
screen. The build page must follow a build to its final state, tarball
included, without a reload.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.service import environments, namespaces, users
from condastore_core.service.context import Context
from condastore_core.settings import load_settings
from condastore_core.spec import EnvironmentSpec
from condastore_web.app import create_app
from tests.support.axe import axe_script, check_page
from tests.support.gate import gate_env
from tests.support.live_server import live_server

pytestmark = [pytest.mark.slow, pytest.mark.integration]
PASSWORD = "a long password"


def start_site(tmp_path, sample_channel, *, tarball: bool):
    settings = load_settings(
        {"data_dir": tmp_path / "data", "tarball": tarball, "channels": sample_channel},
        environ=gate_env(),
    )
    ctx = Context.from_settings(settings)
    ctx.jobs = InProcessQueue(ctx)
    namespaces.create_namespace(ctx, "default")
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    return ctx


def log_in(page, url):
    page.goto(f"{url}/ui/login")
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/ui/environments", timeout=15_000)


def test_the_build_page_follows_a_build_until_its_tarball(tmp_path, sample_channel, browser):
    ctx = start_site(tmp_path, sample_channel, tarball=True)
    with live_server(create_app(ctx)) as url:
        page = browser.new_page()
        log_in(page, url)
        page.goto(f"{url}/ui/new")
        spec = f"name: tools\nchannels:\n  - {sample_channel}\ndependencies:\n  - zstd\n"
        page.fill("#spec", spec)
        page.select_option("#namespace", "default")
        page.click("button:text-is('Build')")
        page.wait_for_url("**/ui/builds/*")
        build_url = page.url
        expect(page.locator("#cancel")).to_have_count(1)  # a queued build can be canceled
        expect(page.locator("#status")).to_have_text("COMPLETED", timeout=120_000)
        expect(page.locator("#cancel")).to_have_count(0)  # ...a finished one cannot
        tarball = page.locator("#artifacts a:text-is('tarball')")
        expect(tarball).to_be_visible(timeout=180_000)  # packed after the build, no reload
        assert page.url == build_url
        assert "tarball:" in page.text_content("#log")
        sizes = page.locator("#artifacts .muted").all_text_contents()
        assert sizes and all(re.fullmatch(r"\d+(\.\d)? (B|kB|MB|GB)", s) for s in sizes), sizes
        assert page.get_attribute("#log", "role") == "log"
        assert page.get_attribute("#status", "class").endswith("COMPLETED")
    ctx.jobs.shutdown()


def test_every_page_passes_axe_at_desktop_and_phone_width(tmp_path, sample_channel, browser):
    script = axe_script()
    ctx = start_site(tmp_path, sample_channel, tarball=False)
    spec = {"name": "tools", "channels": [sample_channel], "dependencies": ["zstd"]}
    first = environments.submit(ctx, "default", EnvironmentSpec.from_dict(spec))
    ctx.jobs.wait_idle(timeout=120)
    spec["dependencies"] = ["zstd", "xz"]
    second = environments.submit(ctx, "default", EnvironmentSpec.from_dict(spec))
    ctx.jobs.wait_idle(timeout=120)
    pages = [
        "/ui/environments",
        "/ui/environments/default/tools",
        f"/ui/environments/default/tools/diff?from={first.id}&to={second.id}",
        "/ui/new",
        "/ui/new?from=default/tools",
        "/ui/builds",
        f"/ui/builds/{second.id}",
        "/ui/admin",
        "/ui/manage",
        "/ui/registry",
        "/ui/registry/repository?name=default/tools",
        "/ui/environments/nowhere/nothing",  # the error page
    ]
    problems = {}
    with live_server(create_app(ctx)) as url:
        for width, height in ((1200, 900), (390, 844)):
            context = browser.new_context(
                viewport={"width": width, "height": height}, bypass_csp=True
            )
            page = context.new_page()
            page.goto(f"{url}/ui/login")
            if found := check_page(page, script):
                problems[f"/ui/login at {width}"] = found
            log_in(page, url)
            for path in pages:
                page.goto(f"{url}{path}")
                if found := check_page(page, script):
                    problems[f"{path} at {width}"] = found
            context.close()
    ctx.jobs.shutdown()
    assert problems == {}, "\n".join(f"{k}: {v}" for k, v in problems.items())


def test_the_keyboard_reaches_the_content_first_and_every_control_has_a_name(
    tmp_path, sample_channel, browser
):
    ctx = start_site(tmp_path, sample_channel, tarball=False)
    with live_server(create_app(ctx)) as url:
        page = browser.new_page()
        log_in(page, url)
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.textContent") == "Skip to the content"
        page.keyboard.press("Enter")
        assert page.evaluate("() => document.activeElement.id") == "main"
        for path in ("/ui/environments", "/ui/builds", "/ui/new", "/ui/admin", "/ui/manage"):
            page.goto(f"{url}{path}")
            unnamed = page.evaluate(
                """() => [...document.querySelectorAll(
                        'input:not([type=hidden]), select, textarea')]
                    .filter(e => !e.labels.length && !e.getAttribute('aria-label'))
                    .map(e => e.outerHTML)"""
            )
            assert unnamed == [], (path, unnamed)
    ctx.jobs.shutdown()


def test_the_editor_completes_package_names_and_diffs_the_preview(
    tmp_path, sample_channel, browser
):
    ctx = start_site(tmp_path, sample_channel, tarball=False)
    spec = {"name": "tools", "channels": [sample_channel], "dependencies": ["zstd"]}
    environments.submit(ctx, "default", EnvironmentSpec.from_dict(spec))
    ctx.jobs.wait_idle(timeout=120)
    with live_server(create_app(ctx)) as url:
        page = browser.new_page()
        log_in(page, url)
        page.goto(f"{url}/ui/new?from=default/tools")
        assert "python" not in page.input_value("#spec")
        page.fill("#package-lookup", "x")
        page.type("#package-lookup", "z")  # two characters: the lookup starts
        expect(page.locator("#package-names option[value=xz]")).to_have_count(1, timeout=30_000)
        page.fill("#package-lookup", "xz")
        expect(page.locator("#package-versions")).to_contain_text("xz: ")
        page.click("text=Add to dependencies")
        assert re.search(r"^\s*- xz$", page.input_value("#spec"), re.M)
        page.click("text=Solve preview")
        diff = page.locator("#preview-diff")
        expect(diff).to_contain_text("Changes against the current build", timeout=60_000)
        assert "xz" in diff.locator("table").text_content()
        assert "zstd" not in diff.locator("table").text_content()  # unchanged: not listed
    ctx.jobs.shutdown()
