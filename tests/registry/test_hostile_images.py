"""A dynamic image of a package that would crash the installer: the pull fails, the server goes
on."""

from __future__ import annotations

import pytest
import requests

from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.service import users
from condastore_core.service.context import Context
from condastore_core.settings import load_settings
from condastore_web.app import create_app
from tests.registry.conftest import PASSWORD
from tests.support.gate import gate_env
from tests.support.hostile_packages import make_hostile_channel
from tests.support.live_server import live_server

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def hostile_registry(tmp_path):
    channel = make_hostile_channel(tmp_path / "channel", tmp_path / "outside", ["evil-abspath"])
    settings = load_settings(
        {"data_dir": tmp_path / "data", "tarball": False, "channels": channel},
        environ=gate_env(),
    )
    ctx = Context.from_settings(settings)
    ctx.jobs = InProcessQueue(ctx)
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    with live_server(create_app(ctx)) as url:
        yield url
    ctx.jobs.shutdown()
    ctx.engine.dispose()


def test_a_hostile_layer_job_fails_the_pull_and_the_server_goes_on(hostile_registry):
    """rattler aborts its process on an absolute path; the layer job refuses the package first."""
    session = requests.Session()
    session.auth = ("ada", PASSWORD)
    session.headers["Accept"] = MANIFEST
    evil = session.get(f"{hostile_registry}/v2/conda/evil-abspath/manifests/latest", timeout=120)
    assert evil.status_code >= 400
    message = evil.json()["errors"][0]["message"]
    assert "package evil-abspath-1.0-0 holds a path outside the prefix: /" in message, message
    ordinary = session.get(f"{hostile_registry}/v2/conda/tool/manifests/latest", timeout=120)
    assert ordinary.status_code == 200, ordinary.text
    assert ordinary.json()["layers"]
