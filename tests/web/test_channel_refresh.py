"""``POST /api/v1/channels/refresh``: an administrator makes every process read channels again."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from falcon import testing

from condastore_core.service import namespaces
from condastore_core.service.context import Context
from condastore_core.service.users import create_user, issue_token
from condastore_core.settings import load_settings
from condastore_web.app import create_app
from tests.support.http_channel import channel_server
from tests.support.packages import PackageDef, make_channel

API = "/api/v1"


def preview(client: testing.TestClient, url: str, name: str):  # type: ignore[no-untyped-def]
    text = yaml.safe_dump({"name": "t", "channels": [url], "dependencies": [name]})
    return client.simulate_post(
        f"{API}/solve", json={"specification": text, "platforms": ["linux-64"]}
    )


@pytest.fixture
def server(tmp_path: Path):
    root = tmp_path / "channel"
    make_channel(root, [PackageDef("aaa", "1.0")])
    with channel_server(root, max_age=3600) as channel:
        settings = load_settings(
            {
                "data_dir": tmp_path / "data",
                "channels": channel.url,
                "allowed_networks": "127.0.0.0/8",
                # Kept an hour: only a refresh makes the server read the channel sooner.
                "local_repodata_ttl": 3600,
            },
            environ={},
        )
        ctx = Context.from_settings(settings)
        namespaces.create_namespace(ctx, "default")
        create_user(ctx, "root", "a long password", admin=True)
        create_user(ctx, "otto", "a long password")
        admin = testing.TestClient(
            create_app(ctx), headers={"Authorization": f"Bearer {issue_token(ctx, 'root').token}"}
        )
        user = testing.TestClient(
            create_app(ctx), headers={"Authorization": f"Bearer {issue_token(ctx, 'otto').token}"}
        )
        yield SimpleNamespace(admin=admin, user=user, root=root, url=channel.url)
        ctx.solvers.close()
        ctx.engine.dispose()


def test_a_refresh_makes_a_new_package_visible_before_the_ttl(server):
    admin, user, root, url = server.admin, server.user, server.root, server.url
    assert preview(admin, url, "aaa").status_code == 200
    make_channel(root, [PackageDef("aaa", "1.0"), PackageDef("bbb", "1.0")])
    stale = preview(admin, url, "bbb")
    assert stale.status_code == 422 and "no package named 'bbb'" in stale.json["error"]["message"]
    assert user.simulate_post(f"{API}/channels/refresh").status_code == 403
    done = admin.simulate_post(f"{API}/channels/refresh", json={"channels": [url]})
    assert done.status_code == 200, done.text
    assert done.json == {"channels": [url]}
    assert preview(admin, url, "bbb").status_code == 200


def test_without_a_body_the_configured_channels_are_refreshed(server):
    admin, url = server.admin, server.url
    done = admin.simulate_post(f"{API}/channels/refresh")
    assert done.status_code == 200, done.text
    assert done.json == {"channels": [url]}


@pytest.mark.parametrize(
    "channels, status",
    [
        (["http://169.254.169.254/chan"], 403),  # the gate refuses it as it would a solve
        (["file:///etc"], 403),
        (["x"] * 101, 400),
        ("conda-forge", 400),
    ],
)
def test_hostile_refreshes_are_refused(server, channels, status):
    r = server.admin.simulate_post(f"{API}/channels/refresh", json={"channels": channels})
    assert r.status_code == status, r.text
