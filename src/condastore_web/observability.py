"""Health endpoints and Prometheus metrics.

``/healthz`` answers while the process runs; ``/readyz`` only when the
database, the blob store and (with Redis) the queue answer, and the data
directory has at least ``min_free_bytes`` free. ``/metrics`` is
the Prometheus text format: requests by route, method and status with a
latency histogram (this process), and, read at scrape time from the shared
state, builds by status, build durations, queue depths and blob store size.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import falcon
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select, text

from condastore_core import diskspace
from condastore_core.db.models import Build, BuildStatus
from condastore_core.digests import Digest
from condastore_core.service.context import Context

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
_REGISTRY_FAMILIES = ("blobs/uploads", "blobs", "manifests", "tags", "referrers")
STORE_SCAN_SECONDS = 60.0


def route_of(req: falcon.Request) -> str:
    """A low-cardinality route label: the URI template, or the registry endpoint family."""
    if req.path.startswith("/v2"):
        for family in _REGISTRY_FAMILIES:
            if f"/{family}/" in req.path or req.path.endswith(f"/{family}/list"):
                return f"/v2/<name>/{family}"
        return "/v2/"
    return req.uri_template or "unmatched"


class RequestMetrics:
    """Middleware: counts and times every request."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "condastore_http_request_duration_seconds",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=registry,
        )

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(self, req, resp, resource, req_succeeded) -> None:  # type: ignore[no-untyped-def]
        started = getattr(req.context, "started", None)
        if started is not None:
            self.latency.labels(route_of(req), req.method, str(resp.status_code)).observe(
                time.perf_counter() - started
            )


class StateCollector:
    """Figures read from the database, the queue and the store when Prometheus scrapes."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._store_figures: tuple[float, int, int] | None = None

    def collect(self) -> Iterator[Metric]:
        with self.ctx.sessions() as session:
            counts = dict(
                session.execute(select(Build.status, func.count()).group_by(Build.status)).all()
            )
            rows = session.execute(
                select(Build.started_at, Build.ended_at)
                .where(Build.status == BuildStatus.COMPLETED, Build.started_at.is_not(None))
                .order_by(Build.id.desc())
                .limit(10_000)
            ).all()
        builds = GaugeMetricFamily("condastore_builds", "Builds by status", labels=["status"])
        for status in BuildStatus:
            builds.add_metric([status.value], counts.get(status, 0))
        yield builds
        durations = [(e - s).total_seconds() for s, e in rows if s is not None and e is not None]
        buckets = [
            (str(b) if b != float("inf") else "+Inf", sum(1 for d in durations if d <= b))
            for b in DURATION_BUCKETS
        ]
        yield HistogramMetricFamily(
            "condastore_build_duration_seconds",
            "Duration of completed builds",
            buckets=buckets,
            sum_value=sum(durations),
        )
        depth = GaugeMetricFamily("condastore_queue_depth", "Jobs waiting", labels=["queue"])
        queue_depths = getattr(self.ctx.jobs, "queue_depths", None)
        for kind, size in (queue_depths() if queue_depths is not None else {}).items():
            depth.add_metric([kind], size)
        yield depth
        _, objects, size = self._store()
        yield GaugeMetricFamily("condastore_blob_store_objects", "Blobs stored", value=objects)
        yield GaugeMetricFamily("condastore_blob_store_bytes", "Bytes stored", value=size)

    def _store(self) -> tuple[float, int, int]:
        now = time.monotonic()
        if self._store_figures is None or now - self._store_figures[0] > STORE_SCAN_SECONDS:
            objects = size = 0
            for info in self.ctx.store.iterate():
                objects += 1
                size += info.size
            self._store_figures = (now, objects, size)
        return self._store_figures


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(self.registry)


class Healthz:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class Readyz:
    """Ready when every collaborator answers; 503 names those that do not."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks = {}
        try:
            with self.ctx.sessions() as session:
                session.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # reported, not raised: this is the health report
            checks["database"] = f"error: {exc}"
        try:
            self.ctx.store.exists(Digest("sha256", "0" * 64))
            checks["store"] = "ok"
        except Exception as exc:
            checks["store"] = f"error: {exc}"
        problem = diskspace.shortfall(self.ctx.settings)
        checks["disk"] = "ok" if problem is None else f"error: {problem}"
        ping = getattr(self.ctx.jobs, "ping", None)
        if ping is not None:
            try:
                ping()
                checks["queue"] = "ok"
            except Exception as exc:
                checks["queue"] = f"error: {exc}"
        ready = all(v == "ok" for v in checks.values())
        resp.status = falcon.HTTP_200 if ready else falcon.HTTP_503
        resp.media = {"status": "ready" if ready else "not ready", "checks": checks}


def mount(app: falcon.App, ctx: Context, registry: CollectorRegistry) -> None:
    registry.register(StateCollector(ctx))
    app.add_route("/metrics", Metrics(registry))
    app.add_route("/healthz", Healthz())
    app.add_route("/readyz", Readyz(ctx))
