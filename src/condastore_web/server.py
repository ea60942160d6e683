"""The server of ``condastore serve``: gunicorn, embedded, with threaded workers.

One server from a laptop to production; what changes is how many processes
and threads it runs and which database and store its settings name:

- **gthread workers**: each worker process answers ``threads`` requests at
  once. A worker's heartbeat comes from its main loop, not from the requests
  it is answering, so a slow download of a large blob is never cut by the
  worker timeout (a plain sync worker is killed after 30 seconds mid-download).
- **sendfile**: blobs of the local store go out by ``wsgi.file_wrapper``.
- **chunked request bodies** are decoded by gunicorn (``wsgi.input_terminated``),
  which Go registry clients and skopeo send.
- **graceful restarts**: ``HUP`` replaces the workers, ``TERM`` lets the
  requests in flight finish (``graceful_timeout``) before stopping.

Each worker builds its own context after the fork (database connections, the
in-process job engine, watchers, schedulers): threads and connections do not
survive a fork. The master only migrates the database and creates what every
worker needs before forking, so a bad setting is one clear error, not every
worker failing to boot.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import falcon
from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

from condastore_core.service.context import Context
from condastore_core.service.namespaces import create_namespace
from condastore_core.settings import Settings
from condastore_web.app import create_app
from condastore_web.runtime import DEFAULT_NAMESPACE, start_services

#: Requests one worker process answers at once; a slow download holds one thread.
DEFAULT_THREADS = 8
#: Builds one worker process runs at once (without Redis; with it, `condastore worker` builds).
DEFAULT_BUILD_THREADS = 2
#: Seconds a worker's main loop may stay silent before it is restarted (never a request's length).
WORKER_HEARTBEAT_SECONDS = 60
#: Seconds the requests in flight get to finish on a graceful stop or restart.
GRACEFUL_SECONDS = 30
#: Seconds an idle keep-alive connection is kept (registry clients make many small requests).
KEEPALIVE_SECONDS = 5


#: glibc malloc arenas a server process may use. By default glibc opens up to
#: eight per CPU for threaded programs; with the GIL, threads gain nothing from
#: them, and each keeps the memory a burst of requests left behind. Two halve
#: what a worker holds after a registry load. ``MALLOC_ARENA_MAX`` overrides it.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt parameter number, from glibc's malloc.h


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process and the workers it forks; False off glibc."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False  # the operator chose; glibc read it at start
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))


def default_workers() -> int:
    """One worker process per CPU this process may use, from 2 (one may restart) up to 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(2, min(cpus, 8))


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = field(default_factory=default_workers)
    threads: int = DEFAULT_THREADS
    build_threads: int = DEFAULT_BUILD_THREADS


def prepare(settings: Settings) -> None:
    """Migrate the database and create the default namespace once, before any worker starts."""
    ctx = Context.from_settings(settings)
    try:
        create_namespace(ctx, DEFAULT_NAMESPACE, exist_ok=True)
    finally:
        ctx.engine.dispose()


class Server(BaseApplication):
    """gunicorn's arbiter and gthread workers serving condastore's app."""

    def __init__(
        self,
        settings: Settings,
        options: ServerOptions,
        on_ready: Callable[[str], None] = lambda url: None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.on_ready = on_ready
        self.ctx: Context | None = None  # set in each worker, after the fork
        super().__init__()

    def load_config(self) -> None:
        host = f"[{self.options.host}]" if ":" in self.options.host else self.options.host
        config: dict[str, Any] = {
            "bind": [f"{host}:{self.options.port}"],
            "workers": self.options.workers,
            "worker_class": "gthread",
            "threads": self.options.threads,
            "timeout": WORKER_HEARTBEAT_SECONDS,
            "graceful_timeout": GRACEFUL_SECONDS,
            "keepalive": KEEPALIVE_SECONDS,
            "loglevel": self.settings.log_level.lower(),
            "accesslog": "-" if self._logs_requests() else None,
            "proc_name": "condastore",
            "when_ready": self._when_ready,
            "worker_exit": self._worker_exit,
        }
        if "control_socket_disable" in self.cfg.settings:
            # Recent gunicorn listens on ~/.gunicorn/gunicorn.ctl: one per user, not per server.
            config["control_socket_disable"] = True
        for key, value in config.items():
            self.cfg.set(key, value)

    def _logs_requests(self) -> bool:
        """A line per request at INFO and below, as an operator of a server expects."""
        level = logging.getLevelNamesMapping().get(self.settings.log_level.upper(), logging.INFO)
        return level <= logging.INFO

    def load(self) -> falcon.App:
        """Runs in each worker after the fork: its own connections, job engine and watchers."""
        self.ctx = start_services(self.settings, workers=self.options.build_threads)
        return create_app(self.ctx)

    def _when_ready(self, arbiter: Any) -> None:
        # Workers fork from here. Objects the master holds (every imported module)
        # move out of the collector's reach, so its passes in the workers do not
        # write to their pages and the workers keep sharing them with the master.
        gc.collect()
        gc.freeze()
        for listener in arbiter.LISTENERS:
            host, port = listener.sock.getsockname()[:2]
            self.on_ready(f"http://{f'[{host}]' if ':' in host else host}:{port}")

    def _worker_exit(self, arbiter: Any, worker: Any) -> None:
        """Stop this worker's background services; queued in-process builds are left to recovery."""
        if self.ctx is None:
            return
        for service in self.ctx.background + self.ctx.watchers:
            service.stop()
        if self.ctx.jobs is not None:
            self.ctx.jobs.shutdown(wait=False)
        self.ctx.engine.dispose()
