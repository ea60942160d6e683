"""Namespaces created by several processes at once, as gunicorn workers do on a first start."""

from __future__ import annotations

import pytest
from sqlalchemy import event, insert

from condastore_core.db.models import Namespace
from condastore_core.errors import Conflict
from condastore_core.service.namespaces import create_namespace, get_namespace


def _lose_the_race(ctx, name: str) -> list[int]:
    """Have another writer insert ``name`` between this process's lookup and its insert."""
    inserted: list[int] = []

    def other_process_first(session, _flush_context, _instances) -> None:
        if any(isinstance(o, Namespace) and o.name == name for o in session.new):
            with ctx.engine.begin() as conn:  # a connection of its own: another writer
                result = conn.execute(insert(Namespace).values(name=name))
                inserted.append(result.inserted_primary_key[0])

    event.listen(ctx.sessions, "before_flush", other_process_first, once=True)
    return inserted


def test_exist_ok_survives_losing_the_race(ctx):
    inserted = _lose_the_race(ctx, "raced")
    ns = create_namespace(ctx, "raced", exist_ok=True)
    assert inserted, "the concurrent insert did not happen"
    assert ns.id == inserted[0] == get_namespace(ctx, "raced").id


def test_without_exist_ok_the_loser_gets_a_conflict(ctx):
    inserted = _lose_the_race(ctx, "raced")
    with pytest.raises(Conflict, match="already exists"):
        create_namespace(ctx, "raced")
    assert inserted
    assert get_namespace(ctx, "raced").id == inserted[0]
