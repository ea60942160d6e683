"""Pages answer fast with many environments, and errors render as pages."""

from __future__ import annotations

import statistics
import time

from falcon import testing

from condastore_core.db.models import Environment
from condastore_core.service import namespaces, users
from condastore_web.app import create_app


def test_pages_answer_under_200_ms_with_1000_environments(ctx):
    ns = namespaces.create_namespace(ctx, "many")
    with ctx.sessions.begin() as session:
        session.add_all(
            Environment(namespace_id=ns.id, name=f"env{i:04d}", description=f"number {i}")
            for i in range(1000)
        )
    users.create_user(ctx, "root", "a long password", admin=True)
    token = users.issue_token(ctx, "root").token
    client = testing.TestClient(create_app(ctx), headers={"Authorization": f"Bearer {token}"})
    for path in (
        "/ui/environments",
        "/ui/environments?search=env09",
        "/ui/builds",
        "/ui/environments/many/env0500",
        "/ui/new",
        "/ui/admin",
    ):
        times = []
        for _ in range(5):
            start = time.perf_counter()
            r = client.simulate_get(path)
            times.append(time.perf_counter() - start)
            assert r.status_code == 200, (path, r.text[:300])
        assert statistics.median(times) < 0.2, (path, times)


def test_errors_are_pages_not_tracebacks(ctx):
    client = testing.TestClient(create_app(ctx))
    r = client.simulate_get("/ui/environments/none/such")
    assert r.status_code == 401 and "text/html" in r.headers["content-type"]
    assert "Log in" in r.text and "Traceback" not in r.text
    r = client.simulate_get("/ui/builds/123456")
    assert r.status_code == 404 and "does not exist" in r.text
    r = client.simulate_get("/ui/nothing-here")
    assert r.status_code == 404 and "<html" in r.text


def test_the_ui_root_leads_to_the_environments_with_or_without_a_slash(ctx):
    client = testing.TestClient(create_app(ctx))
    for path in ("/", "/ui", "/ui/"):
        r = client.simulate_get(path)
        assert (r.status_code, r.headers.get("Location")) == (302, "/ui/environments"), path
