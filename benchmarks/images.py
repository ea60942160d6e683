"""Environment images on demand: cold, shared and warm pulls of nixery-style names.

Against the real conda-forge sample channel, with the registry served over
HTTP in this process: a cold pull of a new dynamic image (solve, install,
layers), a pull of a second image sharing all packages but one, and warm
pulls of an already-made image. A pull here is the manifest plus every blob
it names. The warm manifest request is compared with the same manifest pushed
as a static image, in the same run; the cold pull with parallel layer jobs is
compared with the same pull, into an empty store, with one layer job.

    python -m benchmarks.images [--requests 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import requests
from sqlalchemy import func, select
from tests.support.live_server import live_server

from benchmarks.common import median, print_json_line, print_table, sample_channel_dir
from condastore_core.db.models import ImageLayer
from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.service import users
from condastore_core.service.context import Context
from condastore_core.settings import load_settings
from condastore_web.app import create_app

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
PASSWORD = "benchmark password"


def layer_cache_entries(ctx: Context) -> int:
    with ctx.sessions() as session:
        return session.scalar(select(func.count()).select_from(ImageLayer)) or 0


def service(channel: str, layer_jobs: int) -> Context:
    data_dir = Path(tempfile.mkdtemp(prefix="condastore-images-bench-"))
    settings = {"data_dir": data_dir, "channels": channel, "tarball": False}
    ctx = Context.from_settings(
        load_settings({**settings, "image_layer_jobs": layer_jobs}, environ={})
    )
    ctx.jobs = InProcessQueue(ctx)  # layer jobs in threads, as `condastore serve` runs them
    users.create_user(ctx, "bench", PASSWORD, admin=True)
    return ctx


def cold_pull_alone(channel: str, repo: str, layer_jobs: int) -> float:
    """A cold pull into a store of its own (the peer figure, and a page-cache warm-up)."""
    ctx = service(channel, layer_jobs)
    with live_server(create_app(ctx)) as url:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {users.issue_token(ctx, 'bench').token}"
        seconds = pull(session, url, repo)[0]
    ctx.jobs.shutdown()
    return seconds


def pull(session: requests.Session, url: str, repo: str) -> tuple[float, dict, int]:
    start = time.perf_counter()
    r = session.get(f"{url}/v2/{repo}/manifests/latest", headers={"Accept": MANIFEST})
    r.raise_for_status()
    manifest = r.json()
    fetched = 0
    for blob in [manifest["config"], *manifest["layers"]]:
        fetched += len(session.get(f"{url}/v2/{repo}/blobs/{blob['digest']}").content)
    return time.perf_counter() - start, manifest, fetched


def manifest_seconds(session: requests.Session, url: str, repo: str, tag: str, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        session.get(f"{url}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST})
        times.append(time.perf_counter() - start)
    return median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    channel = sample_channel_dir().as_uri()
    first_repo, second_repo = "conda/openssl/zstd/libcurl", "conda/openssl/zstd/libcurl/xz"
    cold_pull_alone(channel, first_repo, 4)  # reads the channel once: both runs find it cached
    ctx = service(channel, 4)
    with live_server(create_app(ctx)) as url:
        session = requests.Session()  # a token, as registry clients use after a login
        session.headers["Authorization"] = f"Bearer {users.issue_token(ctx, 'bench').token}"
        cold_s, first, first_bytes = pull(session, url, first_repo)
        cached_after_first = layer_cache_entries(ctx)
        shared_s, second, second_bytes = pull(session, url, second_repo)
        built_for_second = layer_cache_entries(ctx) - cached_after_first
        warm_s, _, _ = pull(session, url, first_repo)
        # The same manifest as a plain pushed image, for the warm-request comparison.
        body = session.get(f"{url}/v2/{first_repo}/manifests/latest").content
        for blob in [first["config"], *first["layers"]]:
            session.post(
                f"{url}/v2/static/image/blobs/uploads/",
                params={"mount": blob["digest"], "from": first_repo},
            )
        session.put(
            f"{url}/v2/static/image/manifests/v1", data=body, headers={"Content-Type": MANIFEST}
        ).raise_for_status()
        dynamic = static = 0.0
        for _ in range(3):  # alternate, so noise hits both
            dynamic += manifest_seconds(session, url, first_repo, "latest", args.requests)
            static += manifest_seconds(session, url, "static/image", "v1", args.requests)
    ctx.jobs.shutdown()
    serial_s = cold_pull_alone(channel, first_repo, 1)
    referenced = sum(x["size"] for m in (first, second) for x in m["layers"])
    stored = sum(
        x["size"] for x in {x["digest"]: x for m in (first, second) for x in m["layers"]}.values()
    )
    figures = {
        "cold_pull_s": round(cold_s, 3),
        "cold_layers": len(first["layers"]),
        "cold_pull_one_job_s": round(serial_s, 3),
        "parallel_layers_ratio": round(serial_s / cold_s, 3),
        "shared_pull_s": round(shared_s, 3),
        "shared_layers_built": built_for_second,
        "warm_pull_s": round(warm_s, 3),
        "warm_manifest_ms": round(dynamic / 3 * 1000, 3),
        "static_manifest_ms": round(static / 3 * 1000, 3),
        "warm_manifest_ratio": round(dynamic / static, 3),
        "bytes_referenced": referenced,
        "bytes_stored": stored,
        "dedupe_ratio": round(referenced / stored, 3),
        "pulled_bytes_first": first_bytes,
        "pulled_bytes_second": second_bytes,
    }
    print_table(
        "environment images from the conda-forge sample channel",
        ["figure", "value"],
        [
            [
                "cold pull (solve, install, layers, fetch)",
                f"{cold_s:.2f} s, {len(first['layers'])} layers",
            ],
            [
                "the same cold pull with one layer job",
                f"{serial_s:.2f} s ({serial_s / cold_s:.2f}x the parallel pull's time)",
            ],
            [
                "second image, one more package",
                f"{shared_s:.2f} s, {built_for_second} package layer(s) built",
            ],
            ["warm pull", f"{warm_s:.3f} s"],
            [
                "warm manifest / static manifest",
                f"{figures['warm_manifest_ms']} ms / "
                f"{figures['static_manifest_ms']} ms = {figures['warm_manifest_ratio']}x",
            ],
            ["bytes referenced / stored", f"{referenced} / {stored} = {figures['dedupe_ratio']}x"],
        ],
    )
    print_json_line(figures)


if __name__ == "__main__":
    main()
