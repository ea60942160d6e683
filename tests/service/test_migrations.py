"""Migrations: an empty database goes to head and back, and head matches the models."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from condastore_core.db.base import Base, make_engine
from condastore_core.db.migrate import downgrade, upgrade

TABLES = {"namespaces", "specifications", "environments", "builds", "artifacts", "log_chunks"}


def test_upgrade_to_head_and_back(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    assert set(sa.inspect(engine).get_table_names()) >= TABLES
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"the models and the migrations disagree: {diff}"
    downgrade(engine)
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)  # and up again: downgrade left nothing behind
    assert set(sa.inspect(engine).get_table_names()) >= TABLES
    engine.dispose()


def test_processes_starting_together_migrate_one_at_a_time(database_url):
    import subprocess
    import sys

    code = (
        "import sys; from condastore_core.db.base import make_engine; "
        "from condastore_core.db.migrate import upgrade; upgrade(make_engine(sys.argv[1]))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, database_url], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    failures = [p.stderr.read().decode() for p in procs if p.wait() != 0]
    assert failures == []
    engine = make_engine(database_url)
    assert set(sa.inspect(engine).get_table_names()) >= TABLES
    engine.dispose()
