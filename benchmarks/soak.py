"""Memory of the default server under a long, mixed load, beside the CNCF distribution registry.

``condastore serve`` is started as the README's quick start runs it; Debian's
``docker-registry`` beside it as the peer. For ``--minutes`` (10 by default),
client threads on loopback send a steady mix: registry pushes of small blobs
and manifests under new tags, manifest HEAD and GET, tag lists and blob GETs
(to both registries alike), and, to condastore only, API reads (environments,
namespaces, builds, the caller), UI pages and failed logins. Every
``--sample-seconds`` the memory of both process trees is read: RSS (shared
pages counted once per process) and PSS (each shared page split among the
processes that share it: what the tree takes from the machine).

The figures: memory at warm-up (the end of the first sample period), at the
end and at its peak, and the growth from warm-up to the end as a ratio
(``*_growth_ratio``; 1.0 is flat). Requests served and errors are counted.

    python -m benchmarks.soak [--minutes 10] [--clients 4] [--sample-seconds 30]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import (
    median,
    print_json_line,
    print_table,
    tree_pids,
    tree_pss_mib,
    tree_rss_mib,
)
from benchmarks.registry import (
    MANIFEST,
    PASSWORD,
    REPO,
    USER,
    push_blob,
    push_manifest,
    request,
    start_condastore,
    start_distribution,
)


class Counters:
    """Requests and errors per server, shared by the client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.errors: dict[str, int] = {}

    def count(self, server: str, ok: bool) -> None:
        with self.lock:
            self.requests[server] = self.requests.get(server, 0) + 1
            if not ok:
                self.errors[server] = self.errors.get(server, 0) + 1


def registry_round(port: int, i: int, layer: str, size: int) -> list[bool]:
    """One pass of registry traffic: a new small blob and tag, then reads of what is there."""
    results = []
    blob = f"soak {i} {os.urandom(8).hex()}".encode()
    try:
        push_blob(port, blob)
        results.append(True)
    except (Exception, SystemExit):
        results.append(False)
    try:
        push_manifest(
            port, layer, size, tag=f"soak-{i % 200}", config=json.dumps({"soak": i}).encode()
        )
        results.append(True)
    except (Exception, SystemExit):
        results.append(False)
    accept = {"Accept": MANIFEST}
    for method, path in [
        ("HEAD", f"/v2/{REPO}/manifests/v1"),
        ("GET", f"/v2/{REPO}/manifests/v1"),
        ("GET", f"/v2/{REPO}/tags/list?n=50"),
        ("GET", f"/v2/{REPO}/blobs/{layer}"),
    ]:
        try:
            resp, _ = request(port, method, path, headers=accept)
            results.append(resp.status == 200)
        except (Exception, SystemExit):
            results.append(False)
    return results


def web_round(port: int) -> list[bool]:
    """API reads as a logged-in user, UI pages, and a failed login: condastore only."""
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    results = []
    for path, headers, expected in [
        ("/api/v1/environments", {"Authorization": basic}, 200),
        ("/api/v1/namespaces", {"Authorization": basic}, 200),
        ("/api/v1/builds?limit=20", {"Authorization": basic}, 200),
        ("/api/v1/auth/me", {"Authorization": basic}, 200),
        ("/ui/environments", {}, 200),
        ("/ui/login", {}, 200),
        (
            "/api/v1/environments",
            {"Authorization": "Basic " + base64.b64encode(b"x:y").decode()},
            401,
        ),
    ]:
        try:
            resp, _ = request(port, "GET", path, headers=headers)
            results.append(resp.status in (expected, 429))
        except (Exception, SystemExit):
            results.append(False)
    return results


def client(
    stop: threading.Event,
    counters: Counters,
    ports: dict[str, int],
    layers: dict[str, tuple[str, int]],
    offset: int,
) -> None:
    i = offset
    while not stop.is_set():
        for name, port in ports.items():
            layer, size = layers[name]
            for ok in registry_round(port, i, layer, size):
                counters.count(name, ok)
        for ok in web_round(ports["condastore"]):
            counters.count("condastore", ok)
        i += 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--sample-seconds", type=float, default=30.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="condastore-soak-"))
    servers = {}
    counters = Counters()
    samples: dict[str, list[tuple[float, float, float, int]]] = {
        "condastore": [],
        "distribution": [],
    }
    try:
        servers["condastore"] = start_condastore(workdir)
        servers["distribution"] = start_distribution(workdir)
        ports = {name: port for name, (_, port) in servers.items()}
        layer_bytes = os.urandom(1 << 20)
        layers = {}
        for name, port in ports.items():
            layers[name] = (push_blob(port, layer_bytes), len(layer_bytes))
            push_manifest(port, layers[name][0], len(layer_bytes))
        stop = threading.Event()
        threads = [
            threading.Thread(target=client, args=(stop, counters, ports, layers, n), daemon=True)
            for n in range(args.clients)
        ]
        for t in threads:
            t.start()
        started = time.monotonic()
        deadline = started + args.minutes * 60
        while time.monotonic() < deadline:
            time.sleep(min(args.sample_seconds, max(0.0, deadline - time.monotonic())))
            elapsed = time.monotonic() - started
            for name, (proc, _) in servers.items():
                if proc.poll() is not None:
                    raise SystemExit(f"{name} exited during the soak")
                samples[name].append(
                    (
                        elapsed,
                        tree_rss_mib(proc.pid),
                        tree_pss_mib(proc.pid),
                        len(tree_pids(proc.pid)),
                    )
                )
            print(
                f"{elapsed:6.0f} s  "
                + "  ".join(
                    f"{name} RSS {s[-1][1]:.0f} PSS {s[-1][2]:.0f} MiB in {s[-1][3]} processes"
                    for name, s in samples.items()
                ),
                file=sys.stderr,
                flush=True,
            )
        stop.set()
        for t in threads:
            t.join(timeout=60)
    except BaseException:
        log = workdir / "condastore.log"
        if log.exists():
            print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
        raise
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)

    figures: dict[str, float] = {"minutes": args.minutes, "clients": args.clients}
    rows = []
    for name, series in samples.items():
        warm, end = series[0], series[-1]
        peak_rss = max(s[1] for s in series)
        peak_pss = max(s[2] for s in series)
        after_warmup = [s[2] for s in series[1:]] or [end[2]]
        figures[f"{name}_warm_pss_mib"] = round(warm[2], 1)
        figures[f"{name}_end_pss_mib"] = round(end[2], 1)
        figures[f"{name}_peak_pss_mib"] = round(peak_pss, 1)
        figures[f"{name}_end_rss_mib"] = round(end[1], 1)
        figures[f"{name}_pss_growth_ratio"] = round(end[2] / warm[2], 3)
        figures[f"{name}_requests"] = counters.requests.get(name, 0)
        figures[f"{name}_errors"] = counters.errors.get(name, 0)
        rows.append(
            [
                name,
                f"{warm[2]:.0f}",
                f"{median(after_warmup):.0f}",
                f"{end[2]:.0f}",
                f"{peak_pss:.0f}",
                f"{end[1]:.0f} (peak {peak_rss:.0f})",
                f"{end[2] / warm[2]:.3f}",
                f"{counters.requests.get(name, 0)} / {counters.errors.get(name, 0)}",
            ]
        )
    print_table(
        f"soak: {args.minutes:g} min of mixed traffic, {args.clients} clients, "
        f"memory sampled every {args.sample_seconds:g} s (MiB)",
        [
            "server",
            "PSS warm",
            "PSS median",
            "PSS end",
            "PSS peak",
            "RSS end",
            "growth",
            "requests / errors",
        ],
        rows,
    )
    print_json_line(figures)


if __name__ == "__main__":
    main()
