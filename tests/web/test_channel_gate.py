"""The channel gate, fetch path by fetch path and target by target.

A server fetches only its configured channels, public hosts, and the
directories and networks an administrator allowed. Every way a user can name a
URL (a spec's channels through the API or a watched file, a lockfile's package
URLs, a solve preview, a package search) and every hop of a base image pull is
tried against every kind of target. Targets on loopback point at a tripwire, a
real listener that must never be contacted when the gate refuses; link-local
and private addresses are refused before any connection, so no packet ever
leaves the machine.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import yaml
from falcon import testing

from condastore_core.channels import ChannelRefused, gate_for
from condastore_core.db.models import BuildStatus
from condastore_core.image.base import resolve_base
from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.lock import Lock, to_conda_lock_yaml
from condastore_core.oci_client import RegistryClientError
from condastore_core.service import builds, images, namespaces, registry
from condastore_core.service.context import Context
from condastore_core.service.users import create_user, issue_token
from condastore_core.service.watch import sync_directory
from condastore_core.settings import load_settings
from condastore_core.solve import Solver, native_platform
from condastore_core.spec import EnvironmentSpec
from condastore_web.app import create_app
from tests.support.packages import PackageDef, make_channel
from tests.support.tripwire import Redirector, Tripwire, redirector, tripwire

API = "/api/v1"
PACKAGES = [PackageDef("hello", "1.0", depends=["libx"]), PackageDef("libx", "2.0")]
REFUSAL = "may not be fetched by this server"
#: How a hop the gate's proxy refused (a redirect, a moved package URL) is told.
PROXY_REFUSAL = "sent this server to a location it may not fetch"


@dataclasses.dataclass
class World:
    ctx: Context
    client: testing.TestClient
    tripwire: Tripwire
    redirector: Redirector
    configured: str
    allowed_dir_channel: str
    other_dir_channel: str
    tmp: Path

    def target(self, kind: str) -> str:
        return {
            "configured channel": self.configured,
            "allowed directory": self.allowed_dir_channel,
            "other directory": self.other_dir_channel,
            "data directory": (self.ctx.settings.data_dir / "keys").as_uri(),
            "loopback": f"{self.tripwire.url}/chan",
            "link-local": "http://169.254.169.254/chan",
            "private address": "http://10.11.12.13/chan",
            "name resolving to loopback": f"http://localhost:{self.tripwire.port}/chan",
            "redirect to loopback": f"{self.redirector.url}/chan",
        }[kind]


@pytest.fixture
def world(tmp_path):
    with tripwire() as wire, redirector() as bounce:
        bounce.target = wire.url
        configured = make_channel(tmp_path / "configured", PACKAGES)
        allowed_dir = tmp_path / "allowed"
        allowed_channel = make_channel(allowed_dir / "chan", PACKAGES)
        other_channel = make_channel(tmp_path / "other" / "chan", PACKAGES)
        settings = load_settings(
            {
                "data_dir": tmp_path / "data",
                "tarball": False,
                # The redirecting server is a configured channel: allowed, yet hostile.
                "channels": f"{configured},{bounce.url}/chan",
                "allowed_channel_dirs": str(allowed_dir),
                "image_base": "scratch",
            },
            environ={},
        )
        ctx = Context.from_settings(settings)
        ctx.jobs = InProcessQueue(ctx)
        namespaces.create_namespace(ctx, "default")
        create_user(ctx, "root", "a long password", admin=True)
        token = issue_token(ctx, "root").token
        client = testing.TestClient(create_app(ctx), headers={"Authorization": f"Bearer {token}"})
        yield World(ctx, client, wire, bounce, configured, allowed_channel, other_channel, tmp_path)
        ctx.jobs.shutdown(wait=True)
        ctx.engine.dispose()


def spec_text(channel: str, name: str = "gated") -> str:
    return yaml.safe_dump({"name": name, "channels": [channel], "dependencies": ["hello"]})


def refused(r) -> str:
    """The outcome of an API answer: "refused" (with the uniform text) or "allowed"."""
    if r.status_code == 403:
        error = r.json["error"]
        assert error["code"] == "CHANNEL_REFUSED", r.text
        assert any(t in error["message"] for t in (REFUSAL, PROXY_REFUSAL, "allowed_channels"))
        return "refused"
    assert r.status_code < 300, r.text
    return "allowed"


def build_outcome(world: World, r) -> str:
    outcome = refused(r)
    if outcome == "allowed":
        world.ctx.jobs.wait_idle(timeout=120)
        return finished(world, r.json["id"])
    return outcome


def finished(world: World, build_id: int) -> str:
    build = builds.get_build(world.ctx, build_id)
    if build.status == BuildStatus.FAILED and PROXY_REFUSAL in (build.error or ""):
        return "refused"  # by the proxy, on a later hop
    assert build.status == BuildStatus.COMPLETED, build.error
    return "allowed"


# -- the fetch paths ------------------------------------------------------------------


def via_api_build(world: World, url: str) -> str:
    r = world.client.simulate_post(f"{API}/environments", json={"specification": spec_text(url)})
    return build_outcome(world, r)


def via_lockfile(world: World, url: str) -> str:
    """A lock of the configured channel whose package URLs were rewritten to ``url``."""
    lock = Solver().solve(
        EnvironmentSpec.from_dict(
            {"name": "gated", "channels": [world.configured], "dependencies": ["hello"]}
        ),
        [native_platform()],
    )
    moved = Lock.create(
        [url],
        {
            p: [r.model_copy(update={"url": r.url.replace(world.configured, url)}) for r in recs]
            for p, recs in lock.packages.items()
        },
    )
    body = {"specification": spec_text(world.configured), "lockfile": to_conda_lock_yaml(moved)}
    return build_outcome(world, world.client.simulate_post(f"{API}/environments", json=body))


def via_solve_preview(world: World, url: str) -> str:
    return refused(
        world.client.simulate_post(f"{API}/solve", json={"specification": spec_text(url)})
    )


def via_package_search(world: World, url: str) -> str:
    r = world.client.simulate_get(f"{API}/packages", params={"q": "hello", "channel": url})
    outcome = refused(r)
    if outcome == "allowed":
        assert [p["name"] for p in r.json["items"]] == ["hello"]
    return outcome


def via_watched_directory(world: World, url: str) -> str:
    specs = world.tmp / "watched"
    specs.mkdir(exist_ok=True)
    (specs / "gated.yml").write_text(spec_text(url))
    report = sync_directory(world.ctx, specs, "filesystem")
    if report.errors:
        (message,) = report.errors.values()
        assert REFUSAL in message, message
        return "refused"
    world.ctx.jobs.wait_idle(timeout=120)
    (build,) = builds.list_builds(world.ctx, namespace="filesystem", environment="gated").items
    return finished(world, build.id)


PATHS = {
    "API build": via_api_build,
    "lockfile package URLs": via_lockfile,
    "solve preview": via_solve_preview,
    "package search": via_package_search,
    "watched directory": via_watched_directory,
}
TARGETS = {
    "configured channel": "allowed",
    "allowed directory": "allowed",
    "other directory": "refused",
    "data directory": "refused",
    "loopback": "refused",
    "link-local": "refused",
    "private address": "refused",
    "name resolving to loopback": "refused",
    "redirect to loopback": "refused",
}


@pytest.mark.parametrize(
    ("path", "target"),
    [pytest.param(path, target, id=f"{path} / {target}") for path in PATHS for target in TARGETS],
)
def test_every_fetch_path_passes_the_gate(world, path, target):
    outcome = PATHS[path](world, world.target(target))
    assert outcome == TARGETS[target]
    assert world.tripwire.hits == [], "the gate let a refused target be contacted"


@pytest.mark.parametrize(
    "target",
    [
        "allowed registry",
        "other directory",
        "loopback",
        "link-local",
        "private address",
        "name resolving to loopback",
        "redirect to loopback",
    ],
)
def test_base_image_pulls_check_every_redirect(world, target):
    """The base registry is on a network an administrator allowed; where it redirects to is
    checked hop by hop (the tripwire is on another loopback address, not allowed)."""
    with redirector("127.0.0.2") as upstream:
        upstream.target = {
            "allowed registry": upstream.url,  # back to itself, then on past the limit
            "other directory": (world.tmp / "other").as_uri(),
            "loopback": world.tripwire.url,
            "link-local": "http://169.254.169.254",
            "private address": "http://10.11.12.13",
            "name resolving to loopback": f"http://localhost:{world.tripwire.port}",
            "redirect to loopback": f"{world.tripwire.url}/again",
        }[target]
        reference = f"127.0.0.2:{upstream.port}/library/base:1"
        settings = dataclasses.replace(world.ctx.settings, allowed_networks=("127.0.0.2/32",))
        gate = gate_for(settings)
        if target == "allowed registry":
            with pytest.raises(Exception) as info:
                resolve_base(reference, "linux-64", world.ctx.store, gate)
            assert not isinstance(info.value, ChannelRefused | RegistryClientError)
            assert "redirects" in str(info.value)
        else:
            with pytest.raises(ChannelRefused) as refusal:
                resolve_base(reference, "linux-64", world.ctx.store, gate)
            assert REFUSAL in refusal.value.message
            assert upstream.target not in refusal.value.message  # the target is not echoed
    assert world.tripwire.hits == []


def test_a_base_registry_on_loopback_is_refused_unless_its_network_is_allowed(world):
    """Naming a registry as the base does not open loopback: the network policy decides."""
    reference = f"127.0.0.1:{world.tripwire.port}/library/base:1"
    with pytest.raises(ChannelRefused) as refusal:
        resolve_base(reference, "linux-64", world.ctx.store, gate_for(world.ctx.settings))
    assert REFUSAL in refusal.value.message
    assert world.tripwire.hits == []


def test_dynamic_images_use_the_configured_channels(world):
    settings = dataclasses.replace(world.ctx.settings, channels=(world.configured,))
    ctx = Context.from_settings(settings)
    ctx.jobs = InProcessQueue(ctx)
    try:
        images.prepare(ctx, "conda/hello", "latest")
        assert registry.find_manifest(ctx, "conda/hello", "latest").size > 0
    finally:
        ctx.jobs.shutdown(wait=True)
        ctx.engine.dispose()
    assert world.tripwire.hits == []


def test_a_configured_channel_cannot_point_its_packages_at_loopback(world):
    """Repodata may move package URLs elsewhere (``base_url``); the solved lock is checked."""
    root = Path(world.configured.removeprefix("file://"))
    for repodata in root.glob("*/repodata.json"):
        data = json.loads(repodata.read_text())
        data.setdefault("info", {})["base_url"] = f"{world.tripwire.url}/{repodata.parent.name}/"
        repodata.write_text(json.dumps(data))
    with pytest.raises(ChannelRefused):
        world.ctx.solver.solve(
            EnvironmentSpec.from_dict(
                {"name": "x", "channels": [world.configured], "dependencies": ["hello"]}
            ),
            [native_platform()],
        )
    assert world.tripwire.hits == []


def test_refusals_read_the_same_whether_a_port_is_open_or_closed(world):
    closed = make_closed_port()
    texts = []
    for url in (f"{world.tripwire.url}/chan", f"http://127.0.0.1:{closed}/chan"):
        r = world.client.simulate_post(f"{API}/solve", json={"specification": spec_text(url)})
        assert r.status_code == 403
        texts.append(r.json["error"]["message"].replace(url, "URL"))
    assert texts[0] == texts[1]
    assert world.tripwire.hits == []


def test_a_namespace_policy_narrows_the_gate_for_lockfiles_search_and_previews(world):
    r = world.client.simulate_put(
        f"{API}/policies",
        json={"scope": "default", "policy": {"allowed_channels": [world.configured]}},
    )
    assert r.status_code == 200, r.text
    assert via_lockfile(world, world.allowed_dir_channel) == "refused"
    r = world.client.simulate_get(
        f"{API}/packages", params={"q": "hello", "channel": world.allowed_dir_channel}
    )
    assert r.status_code == 403 and "allowed_channels" in r.json["error"]["message"]
    body = {"specification": spec_text(world.allowed_dir_channel), "namespace": "default"}
    r = world.client.simulate_post(f"{API}/solve", json=body)
    assert r.status_code in (400, 403) and "allowed_channels" in r.text
    assert via_lockfile(world, world.configured) == "allowed"


def make_closed_port() -> int:
    from tests.support.net import free_port

    return free_port()


def test_the_local_cli_gate_is_open(tmp_path):
    other = make_channel(tmp_path / "mine", PACKAGES)
    settings = load_settings({"data_dir": tmp_path / "d", "channel_gate": "open"}, environ={})
    assert gate_for(settings).check_channel(other) == other
    shutil.rmtree(tmp_path / "mine")
