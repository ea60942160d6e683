"""Hostile packages against a real ``condastore serve``: each fails its own build, clearly.

A package that crashes the installer (rattler aborts its process on an
absolute path in ``paths.json``), one whose ``paths.json`` takes gigabytes to
read, ``..`` members, symlinks and hard links out of the prefix, a post-link
script that never ends, and downloads that never end: the build fails with a
message naming what happened, the server's processes stay the same, an
ordinary build at the same time completes, and nothing outside the prefix is
written. A cancel kills the install at once.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request

import pytest

from tests.support.hostile_packages import make_hostile_channel, outside_state
from tests.support.http_channel import serve_channel
from tests.support.packages import PackageDef, make_channel
from tests.support.serve import Served, add_admin, serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INSTALL_LIMIT = 20  # past the time the memory bomb takes to hit its limit on a busy machine
MEMORY_LIMIT_MB = 1024
AUTH = "Basic " + base64.b64encode(b"admin:correct horse battery").decode()


class Api:
    def __init__(self, served: Served) -> None:
        self.url = served.url + "/api/v1"

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": AUTH, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())

    def submit(self, name: str, channel: str, *deps: str) -> int:
        spec = f"name: {name}\nchannels: [{channel}]\ndependencies: [{', '.join(deps)}]\n"
        answer = self.call("POST", "/environments", {"specification": spec})
        assert "id" in answer, answer
        return answer["id"]

    def wait(self, build_id: int, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            build = self.call("GET", f"/builds/{build_id}")
            if build["status"] in ("COMPLETED", "FAILED", "CANCELED"):
                return build
            if time.monotonic() > deadline:
                pytest.fail(f"build {build_id} still {build['status']} ({build.get('step')})")
            time.sleep(0.1)

    def wait_step(self, build_id: int, prefix: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not (self.call("GET", f"/builds/{build_id}").get("step") or "").startswith(prefix):
            if time.monotonic() > deadline:
                pytest.fail(f"build {build_id} never reached step {prefix!r}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def hostile_channel(place):
    return make_hostile_channel(place / "channel", place / "outside")


@pytest.fixture(scope="module")
def server(place):
    env = {
        "CONDASTORE_BUILD_MEMORY_LIMIT_MB": str(MEMORY_LIMIT_MB),
        "CONDASTORE_INSTALL_LIMIT_SECONDS": str(INSTALL_LIMIT),
    }
    with serve(place / "data", env=env) as served:
        add_admin(place / "data", "admin", "correct horse battery")
        yield served


@pytest.fixture
def api(server):
    return Api(server)


def still_serving(server: Served, workers: set[int]) -> None:
    """The server answers, and with the same master and worker processes as before."""
    assert urllib.request.urlopen(f"{server.url}/api/v1", timeout=10).status == 200
    assert server.workers() == workers, "a server process died and was replaced"


def test_a_package_that_would_crash_the_installer_is_refused_and_fails_its_build_alone(
    server, api, hostile_channel, place
):
    workers = server.workers()
    before = outside_state(place / "outside")
    evil = api.submit("crash", hostile_channel, "evil-abspath")
    ordinary = api.submit("ordinary", hostile_channel, "tool")
    failed, done = api.wait(evil), api.wait(ordinary)
    assert failed["status"] == "FAILED"
    # rattler aborts its process on an absolute path: the package is read and refused first.
    assert failed["error"] == (
        "package evil-abspath-1.0-0 holds a path outside the prefix: "
        f"{place / 'outside' / 'abs-written'}"
    ), failed["error"]
    assert done["status"] == "COMPLETED", done["error"]
    still_serving(server, workers)
    assert outside_state(place / "outside") == before
    log = api.call("GET", f"/builds/{evil}/log")
    assert "holds a path outside the prefix" in json.dumps(log)
    again = api.submit("after-refusal", hostile_channel, "tool")
    assert api.wait(again)["status"] == "COMPLETED"


def test_a_package_that_takes_gigabytes_to_read_fails_at_the_memory_limit(
    server, api, hostile_channel
):
    workers = server.workers()
    build = api.wait(api.submit("bomb", hostile_channel, "evil-bigpaths"))
    assert build["status"] == "FAILED"
    assert build["error"] == (
        "the installer ran out of memory while reading evil-bigpaths-1.0-0 "
        f"(limit {MEMORY_LIMIT_MB} MB, setting build_memory_limit_mb)"
    )
    still_serving(server, workers)


@pytest.mark.parametrize(
    ("package", "status"),
    [
        ("evil-dotdot", "FAILED"),
        ("evil-symlink", "FAILED"),
        ("evil-hardlink", "FAILED"),
        ("evil-postlink", "COMPLETED"),  # link scripts never run on a server
    ],
)
def test_packages_reaching_out_of_the_prefix_write_nothing_outside(
    server, api, hostile_channel, place, package, status
):
    workers = server.workers()
    before = outside_state(place / "outside")
    build = api.wait(api.submit(package, hostile_channel, package))
    assert build["status"] == status, build["error"]
    if status == "FAILED":
        assert build["error"].startswith(
            f"package {package}-1.0-0 holds a path outside the prefix: "
        ), build["error"]
    assert outside_state(place / "outside") == before
    assert not (place / "outside" / "postlink-ran").exists()
    still_serving(server, workers)


@pytest.fixture(scope="module")
def endless_channel(place):
    root = place / "endless"
    make_channel(root, [PackageDef("slowpkg", "1.0")])
    with serve_channel(root, delay=3600) as url:  # a download that never ends
        yield url


def test_an_install_past_its_time_limit_fails_naming_the_limit(server, api, endless_channel):
    workers = server.workers()
    started = time.monotonic()
    build = api.wait(api.submit("endless", endless_channel, "slowpkg"))
    took = time.monotonic() - started
    assert build["status"] == "FAILED"
    assert build["error"] == (
        f"install exceeded {INSTALL_LIMIT} s while reading slowpkg-1.0-0 "
        "(setting install_limit_seconds)"
    )
    assert took < INSTALL_LIMIT + 10
    still_serving(server, workers)


def test_cancel_kills_a_running_install_at_once(server, api, endless_channel, place):
    workers = server.workers()
    build_id = api.submit("to-cancel", endless_channel, "slowpkg")
    api.wait_step(build_id, "installing")
    asked = time.monotonic()
    api.call("POST", f"/builds/{build_id}/cancel")
    build = api.wait(build_id, timeout=30)
    took = time.monotonic() - asked
    assert build["status"] == "CANCELED"
    assert took < 3, f"canceled after {took:.2f} s"
    print(f"cancel of a running install: CANCELED after {took:.2f} s")
    still_serving(server, workers)
    envs = place / "data" / "envs"
    assert not list(envs.glob(".staging-*")), "the killed install left its staging prefix"


def test_the_solve_preview_runs_in_a_child_and_reports_solver_errors(server, api, hostile_channel):
    workers = server.workers()
    spec = f"name: p\nchannels: [{hostile_channel}]\ndependencies: [tool]\n"
    answer = api.call("POST", "/solve", {"specification": spec})
    assert [p["name"] for p in answer["packages"]["linux-64"]] == ["tool"]
    spec = f"name: p\nchannels: [{hostile_channel}]\ndependencies: [nothing-such]\n"
    answer = api.call("POST", "/solve", {"specification": spec})
    assert answer["error"]["code"] == "SOLVE_FAILED", answer
    assert "nothing-such" in answer["error"]["message"]
    still_serving(server, workers)
