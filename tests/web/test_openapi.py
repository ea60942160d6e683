"""specs/openapi.yaml describes the API exactly: same routes, and answers that conform to it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import schemathesis
import yaml
from falcon import inspect
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.service.context import Context
from condastore_core.service.namespaces import create_namespace
from condastore_core.service.users import create_user, issue_token
from condastore_core.settings import load_settings
from condastore_web import compat
from condastore_web.app import create_app
from tests.support.gate import gate_env
from tests.support.packages import PackageDef

SPEC = Path(__file__).resolve().parents[2] / "specs" / "openapi.yaml"


def documented_operations() -> set[tuple[str, str]]:
    paths = yaml.safe_load(SPEC.read_text())["paths"]
    return {
        (path, method.upper())
        for path, item in paths.items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch", "head"}
    }


def test_every_route_is_documented_and_every_documented_route_exists(ctx):
    served = set()
    theirs = {template for template, _ in compat.routes(ctx)}
    for route in inspect.inspect_routes(create_app(ctx)):
        if not route.path.startswith("/api/v1"):
            continue  # the registry's routes are tested in tests/registry
        if route.path in theirs:
            continue  # conda-store's API, documented by conda-store
        path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", route.path)
        for method in route.methods:
            if not method.internal and method.method not in {"OPTIONS"}:
                served.add((path, method.method))
    assert served == documented_operations()


SCHEMA = schemathesis.openapi.from_path(SPEC)
OPERATIONS = {op.label: op for op in (r.ok() for r in SCHEMA.get_all_operations())}


@pytest.fixture
def api_app(tmp_path, make_test_channel):
    channel = make_test_channel([PackageDef("hello", "1.0"), PackageDef("libx", "1.0")])
    settings_ = load_settings(
        {"data_dir": tmp_path / "data", "tarball": False, "channels": channel}, environ=gate_env()
    )
    context = Context.from_settings(settings_)
    context.jobs = InProcessQueue(context)
    create_namespace(context, "default")
    create_user(context, "root", "a long password", admin=True)
    token = issue_token(context, "root").token
    yield create_app(context), {"Authorization": f"Bearer {token}"}
    context.jobs.shutdown(wait=True)


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_api_conforms_to_its_document(label, api_app):
    app, headers = api_app
    SCHEMA.app = app

    @given(case=OPERATIONS[label].as_strategy())
    # Derandomized: the same cases on every run, so CI never turns red by chance.
    @settings(
        max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
    )
    def check(case):
        # Every check but two. "A schema-valid request is accepted": a spec is YAML inside
        # a JSON string, and what makes it valid cannot be said in JSON Schema. "Requests
        # without credentials are refused": it replays our explicit header, and anonymous
        # access is covered route by route in test_permissions.
        case.call_and_validate(
            app=app, headers=headers, excluded_checks=[positive_data_acceptance, ignored_auth]
        )

    check()
