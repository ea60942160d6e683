"""Image layers built by real ``condastore worker`` processes while a registry pull waits."""

from __future__ import annotations

import time

import pytest
import requests
from sqlalchemy import select

from condastore_core.db.models import ImageLayer
from condastore_core.jobs.rq_engine import RQQueue
from condastore_core.service import users
from condastore_core.service.context import Context
from condastore_core.settings import load_settings
from condastore_web.app import create_app
from tests.support.live_server import live_server
from tests.support.packages import PackageDef

pytestmark = pytest.mark.integration


def test_layer_jobs_wait_for_an_image_worker_and_run_on_it(service_env, workers, make_test_channel):
    channel = make_test_channel(
        [PackageDef("hello", "1.0", depends=["libx"]), PackageDef("libx", "1.0")]
    )
    web_env = {**service_env, "CONDASTORE_CHANNELS": channel, "CONDASTORE_IMAGE_WAIT_SECONDS": "1"}
    ctx = Context.from_settings(load_settings(environ=web_env))
    ctx.jobs = RQQueue(ctx.settings)
    users.create_user(ctx, "ada", "a password of some length", admin=True)
    auth = ("ada", "a password of some length")
    with live_server(create_app(ctx)) as url:
        manifest_url = f"{url}/v2/conda/hello/manifests/latest"
        waiting = requests.get(manifest_url, auth=auth, timeout=30)
        assert waiting.status_code == 503, waiting.text  # no worker serves the image queue yet
        assert ctx.jobs.queue("image").count >= 1
        workers.start("--queue", "build")
        time.sleep(2)
        assert requests.get(manifest_url, auth=auth, timeout=30).status_code == 503
        image_worker = workers.start("--queue", "image")
        deadline = time.monotonic() + 90
        while (answer := requests.get(manifest_url, auth=auth, timeout=30)).status_code == 503:
            assert time.monotonic() < deadline, answer.text + workers.log(image_worker)
            time.sleep(0.5)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["layers"]) == 3  # libx, hello, final
    assert "image layers for linux-64" in workers.log(image_worker)
    with ctx.sessions() as session:
        assert sorted(p for row in session.scalars(select(ImageLayer)) for p in row.packages) == [
            "hello",
            "libx",
        ]
    ctx.engine.dispose()
