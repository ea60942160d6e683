"""Every page action as a plain form POST: no JavaScript, the CSRF token as a field, same rights.

A ``requests`` session plays a browser with scripts turned off, against the app
served over loopback.
"""

from __future__ import annotations

import re

import pytest
import requests
from falcon import testing

from condastore_core.errors import NotFound
from condastore_core.service import accounts, builds, environments, namespaces, policies, users
from condastore_core.service.watch import DirectoryWatcher
from condastore_core.spec import EnvironmentSpec
from condastore_web.app import create_app
from tests.support.live_server import live_server
from tests.support.packages import PackageDef

PASSWORD = "a long password"


@pytest.fixture
def channel(make_test_channel):
    return make_test_channel([PackageDef("hello", "1.0"), PackageDef("libx", "1.0")])


@pytest.fixture
def site(ctx):
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    users.create_user(ctx, "vera", PASSWORD)
    with live_server(create_app(ctx)) as url:
        yield url


def browser(url: str, name: str) -> requests.Session:
    s = requests.Session()
    r = s.post(
        f"{url}/ui/login",
        data={"username": name, "password": PASSWORD},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 303, r.text[:300]
    return s


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def post(s: requests.Session, url: str, page: str, action: str, **fields: str):
    """Submit a form the way a browser does: the page's CSRF field plus the visible fields."""
    data = {"csrf": csrf_of(s.get(f"{url}{page}", timeout=10).text), **fields}
    return s.post(f"{url}/ui/do/{action}", data=data, allow_redirects=False, timeout=30)


def test_management_forms_work_without_javascript(site, ctx):
    url = site
    ada = browser(url, "ada")
    r = post(ada, url, "/ui/manage", "create-namespace", name="team")
    assert (r.status_code, r.headers["Location"]) == (303, "/ui/manage")
    assert (
        post(
            ada,
            url,
            "/ui/manage",
            "add-binding",
            subject="user:vera",
            pattern="team/*",
            role="admin",
        ).status_code
        == 303
    )
    assert (
        post(ada, url, "/ui/admin", "add-user", name="otto", password=PASSWORD).status_code == 303
    )
    assert post(ada, url, "/ui/admin", "disable-user", name="otto").status_code == 303
    assert "disabled" in ada.get(f"{url}/ui/admin", timeout=10).text
    assert post(ada, url, "/ui/admin", "delete-user", name="otto").status_code == 303
    assert (
        post(ada, url, "/ui/admin", "set-policy", scope="nowhere", channels="x").status_code == 404
    )

    # vera owns team now: she manages its bindings on her page, and nothing else.
    vera = browser(url, "vera")
    page = vera.get(f"{url}/ui/manage", timeout=10).text
    assert "team" in page and "user:vera" in page and "Create namespace" not in page
    assert (
        post(
            vera,
            url,
            "/ui/manage",
            "add-binding",
            subject="group:qa",
            pattern="team/*",
            role="viewer",
        ).status_code
        == 303
    )
    assert (
        post(
            vera, url, "/ui/manage", "add-binding", subject="group:qa", pattern="*", role="viewer"
        ).status_code
        == 403
    )
    assert post(vera, url, "/ui/manage", "create-namespace", name="mine").status_code == 403
    assert post(vera, url, "/ui/manage", "disable-user", name="ada").status_code == 403
    other = users.issue_token(ctx, "ada").token_id
    assert post(vera, url, "/ui/manage", "revoke-token", token_id=other).status_code == 403
    assert "group:qa" in ada.get(f"{url}/ui/admin", timeout=10).text

    # Her own tokens: revoke one, change her password, log out (the session ends).
    script = users.issue_token(ctx, "vera", description="script").token_id
    assert script in vera.get(f"{url}/ui/manage", timeout=10).text
    assert post(vera, url, "/ui/manage", "revoke-token", token_id=script).status_code == 303
    assert script not in {t.jti for t in accounts.list_tokens(ctx, "vera").items}
    assert (
        post(vera, url, "/ui/manage", "set-password", password="a new password").status_code == 303
    )
    r = post(vera, url, "/ui/manage", "logout")
    assert (r.status_code, r.headers["Location"]) == (303, "/ui/login")
    assert vera.get(f"{url}/api/v1/auth/me", timeout=10).status_code == 401


def test_builds_from_the_editor_and_their_actions_without_javascript(site, ctx, channel):
    url = site
    ada = browser(url, "ada")
    spec = f"name: tools\nchannels: [{channel}]\ndependencies: [hello]\n"
    r = post(ada, url, "/ui/new", "submit-spec", namespace="default", specification=spec)
    assert r.status_code == 303 and r.headers["Location"].startswith("/ui/builds/")
    ctx.jobs.wait_idle(timeout=120)
    first = int(r.headers["Location"].rsplit("/", 1)[1])
    spec2 = spec.replace("[hello]", "[hello, libx]")
    second = post(ada, url, "/ui/new", "submit-spec", namespace="default", specification=spec2)
    ctx.jobs.wait_idle(timeout=120)
    second_id = int(second.headers["Location"].rsplit("/", 1)[1])
    page = ada.get(f"{url}/ui/environments/default/tools", timeout=10).text
    assert 'action="/ui/do/rollback"' in page
    r = post(
        ada,
        url,
        "/ui/environments/default/tools",
        "rollback",
        namespace="default",
        name="tools",
        build_id=str(first),
    )
    assert r.headers["Location"] == "/ui/environments/default/tools"
    assert environments.get_environment(ctx, "default", "tools").current_build_id == first
    r = post(ada, url, f"/ui/builds/{second_id}", "rebuild", build_id=str(second_id))
    assert r.status_code == 303
    ctx.jobs.wait_idle(timeout=120)
    broken = post(ada, url, "/ui/new", "submit-spec", namespace="default", specification="name: [")
    assert broken.status_code == 400 and "<html" in broken.text  # the error page says why
    r = post(
        ada,
        url,
        "/ui/environments/default/tools",
        "delete-environment",
        namespace="default",
        name="tools",
    )
    assert r.headers["Location"] == "/ui/environments"
    with pytest.raises(NotFound):
        builds.get_build(ctx, first)


def test_a_form_without_the_sessions_csrf_token_is_refused(site, ctx):
    url = site
    ada = browser(url, "ada")
    for data in ({"name": "team"}, {"name": "team", "csrf": "forged"}):
        r = ada.post(f"{url}/ui/do/create-namespace", data=data, allow_redirects=False, timeout=10)
        assert r.status_code == 403
    mallory = browser(url, "vera")  # another session's token is no good either
    token = csrf_of(mallory.get(f"{url}/ui/manage", timeout=10).text)
    r = ada.post(
        f"{url}/ui/do/create-namespace",
        data={"name": "team", "csrf": token},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 403
    assert [n.name for n in namespaces.list_namespaces(ctx).items if n.name == "team"] == []
    anonymous = requests.post(f"{url}/ui/do/create-namespace", data={"name": "team"}, timeout=10)
    assert anonymous.status_code == 401
    big = ada.post(f"{url}/ui/do/create-namespace", data={"name": "x" * (2 << 20)}, timeout=10)
    assert big.status_code == 413
    assert ada.post(f"{url}/ui/do/nothing", data={"csrf": "x"}, timeout=10).status_code == 403


def _client(ctx):
    users.create_user(ctx, "root", PASSWORD, admin=True)
    token = users.issue_token(ctx, "root").token
    return testing.TestClient(create_app(ctx), headers={"Authorization": f"Bearer {token}"})


def test_the_admin_pages_title_is_text_with_watched_directories(ctx, tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "bad.yml").write_text("name: [\n")
    watcher = DirectoryWatcher(ctx, specs, "filesystem")
    watcher.sync()
    ctx.watchers.append(watcher)
    policies.set_policy(ctx, "default/app", {"required_packages": ["zlib"]})
    page = _client(ctx).simulate_get("/ui/admin").text
    title = re.search(r"<title>(.*?)</title>", page, re.S).group(1)
    assert title == "Admin · condastore"
    assert "bad.yml" in page
    assert "default/app" in page  # an environment's policy is shown too


def test_the_package_filter_and_its_more_link(ctx, channel):
    client = _client(ctx)
    for name, deps in (("a", ["libx"]), ("b", ["libx"]), ("c", ["libx"]), ("d", ["hello"])):
        spec = EnvironmentSpec.from_dict(
            {"name": name, "channels": [channel], "dependencies": deps}
        )
        environments.submit(ctx, "default", spec)
        ctx.jobs.wait_idle(timeout=120)
    spec = EnvironmentSpec.from_dict(
        {"name": "a", "channels": [channel], "dependencies": ["hello"]}
    )
    environments.submit(ctx, "default", spec)  # a's current build no longer has libx
    ctx.jobs.wait_idle(timeout=120)
    page = client.simulate_get("/ui/environments", params={"package": "libx", "limit": "1"}).text
    shown = set(re.findall(r'href="/ui/environments/default/(\w)"', page))
    assert len(shown) == 1
    more = re.search(r'<a href="(\?[^"]+)">more…</a>', page).group(1).replace("&amp;", "&")
    assert "package=libx" in more and "limit=1" in more
    seen = set(shown)
    while more:
        page = client.simulate_get(
            "/ui/environments" + more.split("?")[0], query_string=more[1:]
        ).text
        seen |= set(re.findall(r'href="/ui/environments/default/(\w)"', page))
        found = re.search(r'<a href="(\?[^"]+)">more…</a>', page)
        more = found.group(1).replace("&amp;", "&") if found else None
    assert seen == {"b", "c"}


def test_pull_commands_carry_the_flags_a_plain_http_server_needs(ctx, channel):
    client = _client(ctx)
    spec = EnvironmentSpec.from_dict(
        {"name": "app", "channels": [channel], "dependencies": ["hello"]}
    )
    environments.submit(ctx, "default", spec)
    ctx.jobs.wait_idle(timeout=120)
    page = client.simulate_get("/ui/environments/default/app").text
    assert "podman pull --tls-verify=false " in page and "oras pull --plain-http " in page
    assert 'data-copy="pull-image"' in page
    assert "/api/v1/environments/default/app/artifacts/lockfile" in page  # download links
    secure = client.simulate_get("/ui/environments/default/app", protocol="https").text
    assert "podman pull --tls-verify" not in secure and "oras pull --plain-http" not in secure
