"""The server's memory settings: glibc malloc arenas capped unless the operator chose."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = "from condastore_web.server import limit_malloc_arenas; print(limit_malloc_arenas())"


def run_probe(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_arenas_are_capped_on_glibc() -> None:
    assert run_probe() == "True"


def test_an_operators_malloc_arena_max_is_left_alone() -> None:
    assert run_probe(MALLOC_ARENA_MAX="4") == "False"
