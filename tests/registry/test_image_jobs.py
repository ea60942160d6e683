"""Missing image layers are built by parallel layer jobs; a pull waits for them, up to a bound."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from sqlalchemy import func, select

from condastore_core.db.models import ImageLayer
from condastore_core.jobs import inprocess
from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.service import environments, namespaces, users
from condastore_core.service.context import Context
from condastore_core.settings import load_settings
from condastore_core.spec import EnvironmentSpec
from condastore_web.app import create_app
from tests.registry.conftest import PASSWORD
from tests.support.gate import gate_env
from tests.support.http_channel import serve_channel
from tests.support.live_server import live_server
from tests.support.oci_layout import write_layout
from tests.support.packages import PackageDef, make_channel

PACKAGES = [PackageDef(f"p{i}", "1.0") for i in range(5)]


class RecordingQueue(InProcessQueue):
    """The in-process engine, noting each layer job it is asked for."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.asked: list[tuple[str, list[str]]] = []

    def enqueue_layers(self, job_id, lock_json, platform, names, image) -> None:  # type: ignore[no-untyped-def]
        self.asked.append((job_id, list(names)))
        super().enqueue_layers(job_id, lock_json, platform, names, image)


@pytest.fixture
def built(monkeypatch):
    """How many layers each layer job really built (wraps the real function)."""
    counts: list[int] = []
    real = inprocess.build_layers

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        n = real(*args, **kwargs)
        counts.append(n)
        return n

    monkeypatch.setattr(inprocess, "build_layers", counting)
    return counts


def make_ctx(tmp_path: Path, channel: str, **overrides) -> Context:  # type: ignore[no-untyped-def]
    settings = load_settings(
        {
            "data_dir": tmp_path / "data",
            "tarball": False,
            "channels": channel,
            "image_layer_jobs": 2,
            **overrides,
        },
        environ=gate_env(),
    )
    ctx = Context.from_settings(settings)
    ctx.jobs = RecordingQueue(ctx)
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    return ctx


def pull(url: str, repo: str) -> requests.Response:
    return requests.get(f"{url}/v2/{repo}/manifests/latest", auth=("ada", PASSWORD), timeout=120)


def layer_rows(ctx: Context) -> int:
    with ctx.sessions() as session:
        return session.scalar(select(func.count()).select_from(ImageLayer))


def test_missing_layers_are_built_by_parallel_layer_jobs(tmp_path, make_test_channel, built):
    ctx = make_ctx(tmp_path, make_test_channel(PACKAGES))
    with live_server(create_app(ctx)) as url:
        first = pull(url, "conda/p0/p1/p2/p3")
        assert first.status_code == 200, first.text
        jobs = ctx.jobs.asked
        assert len(jobs) == 2  # image_layer_jobs: two groups of the four packages
        assert sorted(n for _, names in jobs for n in names) == ["p0", "p1", "p2", "p3"]
        assert sum(built) == 4 and layer_rows(ctx) == 4
        # Ten clients at once for an image sharing a layer: one job, one new layer built.
        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(lambda _: pull(url, "conda/p3/p4"), range(10)))
        assert {(r.status_code, r.headers["Docker-Content-Digest"]) for r in answers} == {
            (200, answers[0].headers["Docker-Content-Digest"])
        }
        assert len(jobs) == 3 and jobs[2][1] == ["p4"] and sum(built) == 5
        assert pull(url, "conda/p0/p2").status_code == 200 and len(jobs) == 3  # all cached
    ctx.jobs.shutdown()


def test_a_pull_waits_up_to_the_bound_then_is_told_to_retry(tmp_path, built):
    root = tmp_path / "channel"
    make_channel(root, PACKAGES)
    with serve_channel(root, delay=3.0) as channel:
        ctx = make_ctx(tmp_path, channel, image_wait_seconds=0.5)
        with live_server(create_app(ctx)) as url:
            started = time.monotonic()
            first = pull(url, "conda/p0/p1/p2/p3")
            assert time.monotonic() - started < 3.0  # it did not wait for the downloads
            assert first.status_code == 503, first.text
            assert first.headers["Retry-After"] == "10"
            error = first.json()["errors"][0]
            assert error["code"] == "UNAVAILABLE" and "0 of 4 layers" in error["message"]
            assert pull(url, "conda/p0/p1/p2/p3").status_code == 503  # a retry, too early
            ctx.jobs.wait_idle(timeout=60)  # layer jobs are work in flight like builds
            assert layer_rows(ctx) == 4
            answer = pull(url, "conda/p0/p1/p2/p3")
            assert answer.status_code == 200, answer.text
            assert sum(built) == 4  # the retry shared the jobs: each layer built once
        ctx.jobs.shutdown()


def test_a_failed_layer_job_is_reported_to_the_client(tmp_path, make_test_channel):
    channel = make_test_channel(PACKAGES)
    archive = Path(urlparse(channel).path) / "linux-64" / PACKAGES[2].filename
    archive.write_bytes(
        archive.read_bytes()[:-10] + b"corrupted!"
    )  # the index still has the old sha
    ctx = make_ctx(tmp_path, channel)
    with live_server(create_app(ctx)) as url:
        answer = pull(url, "conda/p1/p2")
        assert answer.status_code == 500, answer.text
        error = answer.json()["errors"][0]
        assert "building image layers failed" in error["message"]
        assert "sha256" in error["message"] and "p2" in error["message"]
        assert pull(url, "conda/p1").status_code == 200  # others are not held up by it
    ctx.jobs.shutdown()


def test_a_namespace_may_have_its_own_base_image(tmp_path, make_test_channel):
    channel = make_test_channel(PACKAGES)
    base = tmp_path / "base"
    write_layout(base, {"bin/sh": b"#!a shell"}, env=["PATH=/usr/bin:/bin"])
    ctx = make_ctx(tmp_path, channel, image_namespace_bases={"based": str(base)})
    for namespace in ("based", "plain"):
        namespaces.create_namespace(ctx, namespace)
        environments.submit(
            ctx,
            namespace,
            EnvironmentSpec.from_dict(
                {"name": "env", "channels": [channel], "dependencies": ["p0"]}
            ),
        )
    ctx.jobs.wait_idle(timeout=120)
    with live_server(create_app(ctx)) as url:
        based, plain = (pull(url, f"{ns}/env").json() for ns in ("based", "plain"))
        dynamic = pull(url, "conda/p0").json()
        config = requests.get(
            f"{url}/v2/based/env/blobs/{based['config']['digest']}", auth=("ada", PASSWORD)
        ).json()
    assert len(based["layers"]) == len(plain["layers"]) + 1 == 3
    assert based["layers"][1:-1] == plain["layers"][:-1]  # the same package layer, shared
    assert config["config"]["Entrypoint"] == ["/opt/conda/.condastore/entrypoint.sh"]
    assert len(dynamic["layers"]) == 2  # the server's base (scratch) for conda/...
    ctx.jobs.shutdown()


def test_a_managed_environment_image_uses_the_parallel_layer_jobs(
    tmp_path, make_test_channel, built
):
    """Its lock is read back from conda-lock.yml, without sizes: the jobs still share it."""
    channel = make_test_channel(PACKAGES)
    ctx = make_ctx(tmp_path, channel)
    namespaces.create_namespace(ctx, "team")
    environments.submit(
        ctx,
        "team",
        EnvironmentSpec.from_dict(
            {"name": "env", "channels": [channel], "dependencies": ["p0", "p1", "p2", "p3"]}
        ),
    )
    ctx.jobs.wait_idle(timeout=120)
    with live_server(create_app(ctx)) as url:
        answer = pull(url, "team/env")
        assert answer.status_code == 200, answer.text
    jobs = ctx.jobs.asked
    assert len(jobs) == 2  # image_layer_jobs: two groups, as for a dynamic image
    assert sorted(n for _, names in jobs for n in names) == ["p0", "p1", "p2", "p3"]
    assert sorted(len(names) for _, names in jobs) == [2, 2]
    ctx.jobs.shutdown()
