"""conda-store's routes hold the same trust boundaries as ours.

Its ``GET /api/v1/specification/`` (the CLI's ``solve``) solves in a child
process under the solve time limit, never in the serving process: a channel
that never answers costs the caller the limit, and the server goes on.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.service import users
from condastore_core.service.context import Context
from condastore_core.settings import load_settings
from condastore_web.app import create_app
from tests.support.gate import gate_env
from tests.support.live_server import live_server

PASSWORD = "a long password"
SOLVE_LIMIT = 3


@contextmanager
def silent_channel() -> Iterator[str]:
    """A loopback listener that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()
    server.settimeout(0.1)

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/silent"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


@pytest.fixture
def app_url(tmp_path):
    settings = load_settings(
        {"data_dir": tmp_path / "data", "tarball": False, "solve_limit_seconds": SOLVE_LIMIT},
        environ=gate_env(),
    )
    ctx = Context.from_settings(settings)
    ctx.jobs = InProcessQueue(ctx)
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    with live_server(create_app(ctx)) as url:
        yield url
    ctx.jobs.shutdown()
    ctx.engine.dispose()


@pytest.mark.slow
def test_the_compat_solve_runs_in_a_child_under_the_solve_limit(app_url):
    with silent_channel() as channel:
        started = time.monotonic()
        answer = requests.get(
            f"{app_url}/api/v1/specification/",
            params={"channel": channel, "conda": "tool"},
            auth=("ada", PASSWORD),
            timeout=SOLVE_LIMIT + 30,
        )
        took = time.monotonic() - started
    assert answer.status_code >= 400, answer.text
    assert f"solve exceeded {SOLVE_LIMIT} s" in answer.text, answer.text
    assert took < SOLVE_LIMIT + 10
    assert requests.get(f"{app_url}/api/v1/", timeout=10).status_code == 200
