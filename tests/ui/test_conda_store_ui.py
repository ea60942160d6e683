"""conda-store's React UI (its standalone build from npm), unchanged, against condastore.

The package is fetched once with npm into a cache directory. The page that
hosts it is what a deployment embedding the UI serves: after logging in on
condastore's login form, it trades the session for an API token through
conda-store's ``POST /api/v1/token/`` (with the session's CSRF token) and
hands the UI that token. Playwright serves the UI's files at the server's own
origin, so the UI talks to condastore as it talks to conda-store.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.support.serve import add_admin, serve

pytestmark = [pytest.mark.slow, pytest.mark.integration]

UI_PACKAGE = "@conda-store/conda-store-ui@2024.11.1"
PASSWORD = "a long password"
UI_PATH = "/conda-store-ui/"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

#: The hosting page: session -> API token, then the UI's own bundle.
HOST_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>conda-store</title>
<link href="main.css" rel="stylesheet"></head><body><script>
const csrf = (document.cookie.match(/(?:^|; )condastore_csrf=([^;]*)/) || [])[1] || "";
fetch("/api/v1/token/", {method: "POST", credentials: "include",
  headers: {"Content-Type": "application/json", "X-CSRF-Token": decodeURIComponent(csrf)},
  body: "{}"})
  .then((r) => r.json())
  .then((answer) => {
    window.condaStoreConfig = {
      REACT_APP_API_URL: location.origin + "/",
      REACT_APP_AUTH_METHOD: "token",
      REACT_APP_AUTH_TOKEN: answer.data.token,
      REACT_APP_LOGIN_PAGE_URL: location.origin + "/ui/login?next=",
      REACT_APP_LOGOUT_PAGE_URL: location.origin + "/ui/logout?next=",
      REACT_APP_ROUTER_TYPE: "memory",
      REACT_APP_SHOW_AUTH_BUTTON: "true",
    };
    const script = document.createElement("script");
    script.src = "main.js";
    document.body.appendChild(script);
  });
</script></body></html>"""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "condastore-tests" / "conda-store-ui"


@pytest.fixture(scope="session")
def conda_store_ui() -> Path:
    """The UI's ``dist/`` directory, from npm's registry into a cache on first use."""
    target = cache_dir() / UI_PACKAGE.rsplit("@", 1)[1]
    dist = target / "package" / "dist"
    if (dist / "main.js").is_file():
        return dist
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: it fetches conda-store's UI from the npm registry")
    target.mkdir(parents=True, exist_ok=True)
    packed = subprocess.run(
        [npm, "pack", UI_PACKAGE, "--json", "--pack-destination", str(target)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert packed.returncode == 0, packed.stderr
    archive = target / json.loads(packed.stdout)[0]["filename"]
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    assert (dist / "main.js").is_file(), f"no dist/main.js in {archive}"
    return dist


@pytest.fixture
def server(tmp_path, sample_channel):
    data = tmp_path / "data"
    add_admin(data, "ada", PASSWORD)
    with serve(data, env={"CONDASTORE_CHANNELS": sample_channel}) as served:
        yield served.url


def serve_ui(page, url: str, dist: Path) -> None:
    """Answer the UI's paths at the server's origin from the npm package's files."""

    def handle(route) -> None:
        name = route.request.url.split(UI_PATH, 1)[1].split("?", 1)[0]
        if name in ("", "index.html"):
            route.fulfill(body=HOST_PAGE, content_type="text/html")
            return
        file = dist / name
        if file.parent != dist or not file.is_file():
            route.fulfill(status=404, body="not found")
            return
        kind = "text/css" if name.endswith(".css") else "application/javascript"
        route.fulfill(body=file.read_bytes(), content_type=kind)

    page.route(re.compile(re.escape(url + UI_PATH) + ".*"), handle)


def submit_shared_environment(url: str, channel: str) -> None:
    """An environment in the shared ``default`` namespace, made through condastore's own API."""
    login = urllib.request.Request(
        f"{url}/api/v1/auth/login",
        data=json.dumps({"username": "ada", "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(login, timeout=30) as answer:
        token = json.load(answer)["token"]
    spec = f"name: shared-tools\nchannels: ['{channel}']\ndependencies: [xz]\n"
    submit = urllib.request.Request(
        f"{url}/api/v1/environments",
        data=json.dumps({"namespace": "default", "specification": spec}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(submit, timeout=60) as answer:
        assert answer.status == 202


def test_log_in_list_create_build_and_read_the_log(server, browser, conda_store_ui, sample_channel):
    submit_shared_environment(server, sample_channel)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    serve_ui(page, server, conda_store_ui)

    # Log in on condastore's form; the UI then runs with that user's token.
    page.goto(f"{server}/ui/login")
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/ui/environments", timeout=15_000)
    page.goto(server + UI_PATH)

    # The environment list: the user's namespace, and the shared one with its environment.
    sidebar = page.locator("body")
    expect(sidebar.get_by_text("Shared Environments")).to_be_visible(timeout=30_000)
    expect(sidebar.get_by_text("ada", exact=True)).to_be_visible()
    page.get_by_text("default", exact=True).click()
    expect(page.get_by_text("shared-tools", exact=True)).to_be_visible(timeout=15_000)

    # Create one from the spec editor, in YAML.
    page.get_by_text("New").first.click()
    page.get_by_label("Environment name").fill("tools")
    page.get_by_role("checkbox").last.click()  # the GUI/YAML switch
    editor = page.locator(".cm-content")
    expect(editor).to_be_visible(timeout=10_000)
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(f"channels:\n  - {sample_channel}\ndependencies:\n  - zstd\n")
    page.get_by_role("button", name="Create", exact=True).click()

    # The build completes, its packages show, and the environment joins the list.
    expect(page.get_by_text(re.compile(r"Status: Completed"))).to_be_visible(timeout=180_000)
    expect(page.get_by_text("zstd", exact=True).first).to_be_visible()
    expect(page.get_by_text("tools", exact=True).first).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "conda-store-ui-built.png"))

    # The log opens from the build's artifacts.
    log_link = page.get_by_role("link", name=re.compile(r"Show Conda environment \d+ log"))
    with page.context.expect_page() as opened:
        log_link.click()
    log_page = opened.value
    log_page.wait_for_load_state()
    assert re.search(r"/api/v1/build/\d+/logs/?$", log_page.url), log_page.url
    text = log_page.inner_text("body")
    assert "linking zstd" in text and "build completed" in text
