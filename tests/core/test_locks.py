"""Periodic claims among the processes of one machine (gunicorn workers without Redis)."""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from condastore_core.locks import claim_period


def _claim_at(path: str, start: float) -> bool:
    time.sleep(max(0.0, start - time.time()))
    return claim_period(Path(path), 60)


def test_one_of_several_processes_claims_a_period(tmp_path):
    path = tmp_path / "locks" / "gc.claim"
    start = time.time() + 1.0  # all processes started and waiting by then
    with ProcessPoolExecutor(4) as pool:
        results = list(pool.map(_claim_at, [str(path)] * 8, [start] * 8))
    assert sorted(results) == [False] * 7 + [True]


def test_the_next_period_can_be_claimed_again(tmp_path):
    path = tmp_path / "gc.claim"
    assert claim_period(path, 0.3)
    assert not claim_period(path, 0.3)
    time.sleep(0.3)
    assert claim_period(path, 0.3)


def test_a_clock_set_back_does_not_block_claims_forever(tmp_path):
    path = tmp_path / "gc.claim"
    path.write_text(repr(time.time() + 3600))  # written when the clock was an hour ahead
    assert claim_period(path, 60)
    path.write_text("not a number")
    assert claim_period(path, 60)
