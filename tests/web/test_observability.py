"""Health endpoints and Prometheus metrics after real activity."""

from __future__ import annotations

from falcon import testing
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from condastore_core.service import environments
from condastore_core.spec import EnvironmentSpec
from condastore_web.app import create_app
from tests.support.packages import PackageDef


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_health_and_metrics(ctx, make_test_channel):
    channel = make_test_channel([PackageDef("hello", "1.0")])
    environments.submit(
        ctx,
        "default",
        EnvironmentSpec.from_dict(
            {"name": "web", "channels": [channel], "dependencies": ["hello"]}
        ),
    )
    environments.submit(
        ctx,
        "default",
        EnvironmentSpec.from_dict(
            {"name": "bad", "channels": [channel], "dependencies": ["nothing-like-it"]}
        ),
    )
    ctx.jobs.wait_idle(timeout=60)
    client = testing.TestClient(create_app(ctx))
    assert client.simulate_get("/healthz").json == {"status": "ok"}
    ready = client.simulate_get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"] == {
        "database": "ok",
        "store": "ok",
        "disk": "ok",
    }
    for _ in range(3):
        client.simulate_get("/api/v1/environments")  # 200, anonymous: an empty list
    client.simulate_get("/v2/")  # 401: no credentials
    scraped = samples(client.simulate_get("/metrics").text)
    assert scraped[("condastore_builds", (("status", "COMPLETED"),))] == 1
    assert scraped[("condastore_builds", (("status", "FAILED"),))] == 1
    assert scraped[("condastore_build_duration_seconds_count", ())] == 1
    assert scraped[("condastore_blob_store_objects", ())] >= 4  # 3 text artifacts and logs
    key = (("method", "GET"), ("route", "/api/v1/environments"), ("status", "200"))
    assert scraped[("condastore_http_request_duration_seconds_count", key)] == 3
    key = (("method", "GET"), ("route", "/v2/"), ("status", "401"))
    assert scraped[("condastore_http_request_duration_seconds_count", key)] == 1


def test_readyz_reports_a_broken_database(ctx):
    client = testing.TestClient(create_app(ctx))
    ctx.engine.dispose()
    ctx.sessions.kw["bind"] = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    ready = client.simulate_get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["database"].startswith("error")
