"""A service context on SQLite and on PostgreSQL, with builds run by the in-process engine."""

from __future__ import annotations

import pytest

from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.service.context import Context
from condastore_core.service.namespaces import create_namespace
from condastore_core.settings import load_settings
from tests.support.databases import postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'condastore.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
def ctx(database_url, tmp_path):
    settings = load_settings(
        {"data_dir": tmp_path / "data", "database_url": database_url, "tarball": False},
        environ={},
    )
    context = Context.from_settings(settings)
    queue = InProcessQueue(context)
    context.jobs = queue
    create_namespace(context, "default")
    yield context
    queue.shutdown(wait=True)
    context.sessions.kw["bind"].dispose()
