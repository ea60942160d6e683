"""condastore's registry against the CNCF distribution registry, side by side on loopback.

Both run as they would in production: condastore started exactly as the README
tells users to (``condastore serve``: SQLite, local blob store), with a user for
the authenticated figures and anonymous rights on the benchmark repository for
the rest; Debian's ``docker-registry`` with its filesystem driver and its
in-memory blob descriptor cache (its realistic configuration). Rounds alternate
which registry goes first, and every figure is reported as the per-round ratio,
min-median-max. Figures: blob GET throughput for a large blob at 1 and 8
concurrent clients, with two ceilings for it (``cat`` of the same file to
/dev/null, and a bare socket server that answers with ``sendfile``), manifest
HEAD and GET requests per second at 16 clients, pushes of 100 small blobs, of
300 blobs of 1 MiB with ``Content-Length`` and of 300 blobs of 1 MiB sent as
chunked PATCH bodies, condastore's cost of HTTP Basic on every request against
a Bearer token, and the resident memory of both servers after the load.
Blob GETs are driven by Python threads reading into large buffers over
kept-alive connections, manifest GETs by ``wrk`` (Debian package) when it is
installed, HEADs and pushes by Python threads: the same client for both.

    python -m benchmarks.registry [--rounds 5] [--blob-mib 256]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import (
    alternating,
    median,
    print_json_line,
    print_table,
    ratio_figures,
    spread,
    tree_pss_mib,
    tree_rss_mib,
)

REPO = "bench/app"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port: int, proc: subprocess.Popen, name: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v2/")
            conn.getresponse().read()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start") from None
            time.sleep(0.2)


USER, PASSWORD = "bench", "benchmark password"


def condastore_command() -> str:
    """The ``condastore`` entry point of this interpreter's environment, as users run it."""
    found = Path(sys.executable).with_name("condastore")
    return str(found) if found.exists() else shutil.which("condastore") or "condastore"


def start_condastore(
    workdir: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, int]:
    """``condastore serve`` on its defaults, as the README's quick start runs it."""
    port = free_port()
    data_dir = workdir / "condastore"
    env = {
        **os.environ,
        "CONDASTORE_ANONYMOUS_BINDINGS": "bench/*=admin",
        "CONDASTORE_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    subprocess.run(
        [
            condastore_command(),
            "user",
            "add",
            USER,
            "--admin",
            "--init",
            "--password-stdin",
            "--data-dir",
            str(data_dir),
        ],
        input=PASSWORD + "\n",
        text=True,
        env=env,
        check=True,
        capture_output=True,
    )
    proc = subprocess.Popen(
        [condastore_command(), "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        # Kept so that a failed run can show what the server said (printed by main()).
        stderr=(workdir / "condastore.log").open("wb"),
    )
    wait_up(port, proc, "condastore")
    return proc, port


def start_distribution(workdir: Path) -> tuple[subprocess.Popen, int]:
    binary = shutil.which("docker-registry")
    if binary is None:
        raise SystemExit("docker-registry is not installed (Debian package docker-registry)")
    port = free_port()
    config = workdir / "distribution.yml"
    config.write_text(
        json.dumps(
            {
                "version": 0.1,
                "log": {"level": "error", "accesslog": {"disabled": True}},
                "storage": {
                    "filesystem": {"rootdirectory": str(workdir / "distribution")},
                    "delete": {"enabled": True},
                    "cache": {"blobdescriptor": "inmemory"},
                },
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    proc = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_up(port, proc, "docker-registry")
    return proc, port


def request(port, method, path, body=None, headers=None):  # type: ignore[no-untyped-def]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def upload_path(location: str) -> str:
    path = location.split("://", 1)[-1]
    return path[path.index("/") :] if not location.startswith("/") else location


def push_blob(port: int, data: bytes) -> str:
    """A monolithic push: POST, then PUT with the whole body and its ``Content-Length``."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    resp, _ = request(port, "POST", f"/v2/{REPO}/blobs/uploads/")
    path = upload_path(resp.getheader("Location"))
    sep = "&" if "?" in path else "?"
    resp, body = request(
        port,
        "PUT",
        f"{path}{sep}digest={digest}",
        body=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    if resp.status != 201:
        raise SystemExit(f"push failed on port {port}: {resp.status} {body[:200]!r}")
    return digest


def pieces(data: bytes, size: int = 64 << 10) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def push_blob_chunked(port: int, data: bytes) -> str:
    """A streamed push as Go clients send it: POST, PATCH with a chunked body, empty PUT."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", f"/v2/{REPO}/blobs/uploads/")
        resp = conn.getresponse()
        resp.read()
        path = upload_path(resp.getheader("Location"))
        conn.request(
            "PATCH",
            path,
            body=pieces(data),
            headers={"Content-Type": "application/octet-stream"},
            encode_chunked=True,
        )
        resp = conn.getresponse()
        resp.read()
        if resp.status != 202:
            raise SystemExit(f"chunked PATCH failed on port {port}: {resp.status}")
        path = upload_path(resp.getheader("Location"))
        sep = "&" if "?" in path else "?"
        conn.request("PUT", f"{path}{sep}digest={digest}", headers={"Content-Length": "0"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 201:
            raise SystemExit(f"chunked push failed on port {port}: {resp.status} {body[:200]!r}")
    finally:
        conn.close()
    return digest


def push_manifest(
    port: int,
    layer: str,
    size: int,
    tag: str = "v1",
    config: bytes = b'{"architecture":"amd64","os":"linux"}',
) -> None:
    config_digest = push_blob(port, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer,
                    "size": size,
                }
            ],
        }
    ).encode()
    resp, body = request(
        port,
        "PUT",
        f"/v2/{REPO}/manifests/{tag}",
        body=manifest,
        headers={"Content-Type": MANIFEST},
    )
    if resp.status != 201:
        raise SystemExit(f"manifest push failed on port {port}: {resp.status} {body[:200]!r}")


def download_for(port: int, path: str, seconds: float) -> int:
    """Bytes read by one client GETting ``path`` again and again over one kept-alive
    connection for about ``seconds``, as a puller fetching layers does.

    It reads into one 4 MiB buffer straight from the socket, so that the client is not
    what limits the figure (``wrk`` and ``curl`` read 8 to 16 KiB at a time and top out
    well below what the kernel can move over loopback).
    """
    buffer = memoryview(bytearray(4 << 20))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    total = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        conn.request("GET", path)
        resp = conn.getresponse()
        if resp.status != 200:
            raise SystemExit(f"GET {path} on port {port}: {resp.status}")
        while n := resp.readinto(buffer):
            total += n
    conn.close()
    return total


def blob_throughput(port: int, path: str, clients: int, seconds: float = 3.0) -> float:
    """MiB/s summed over ``clients`` concurrent clients, each downloading the whole blob."""
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        total = sum(pool.map(lambda _: download_for(port, path, seconds), range(clients)))
    return total / (1 << 20) / (time.perf_counter() - start)


WRK_SCRIPT = """
wrk.method = "{method}"
wrk.headers["Accept"] = "{accept}"
"""


def wrk_rps(url: str, connections: int, method: str = "GET", seconds: int = 5) -> float:
    """Requests/s that wrk (a native load generator) measures against ``url``."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT.format(method=method, accept=MANIFEST))
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(min(connections, 2)),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "-s",
            script.name,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)
    rps = None
    for line in out.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Requests/sec":
            rps = float(value)
        elif "Non-2xx" in line:
            raise SystemExit(f"wrk saw errors against {url}: {line.strip()}")
    if rps is None:
        raise SystemExit(f"wrk printed no request rate for {url}:\n{out}")
    return rps


def manifest_rps(port: int, method: str, clients: int = 16, per_client: int = 100) -> float:
    if shutil.which("wrk") and method == "GET":  # wrk waits for a body after HEAD
        return wrk_rps(f"http://127.0.0.1:{port}/v2/{REPO}/manifests/v1", clients, method)

    def work(_: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(per_client):
            conn.request(method, f"/v2/{REPO}/manifests/v1", headers={"Accept": MANIFEST})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise SystemExit(f"manifest {method} failed: {resp.status}")
        conn.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(work, range(clients)))
    return clients * per_client / (time.perf_counter() - start)


def push_many(port: int, count: int, size: int, chunked: bool = False) -> float:
    """Seconds to push ``count`` new blobs of ``size`` bytes, one after another."""
    prefix = os.urandom(16)
    blobs = [prefix + i.to_bytes(8, "big") + bytes(max(size - 24, 0)) for i in range(count)]
    push = push_blob_chunked if chunked else push_blob
    start = time.perf_counter()
    for blob in blobs:
        push(port, blob)
    return time.perf_counter() - start


def registry_token(port: int) -> str:
    credentials = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    resp, body = request(
        port,
        "GET",
        f"/auth/token?service=condastore&scope=repository:{REPO}:pull",
        headers={"Authorization": f"Basic {credentials}"},
    )
    if resp.status != 200:
        raise SystemExit(f"token request failed: {resp.status} {body[:200]!r}")
    return json.loads(body)["token"]


def authenticated_head_rps(port: int, authorization: str, clients: int = 4, per_client: int = 200):  # type: ignore[no-untyped-def]
    """Manifest HEADs per second by clients that send ``authorization`` on every request."""

    def work(_: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Accept": MANIFEST, "Authorization": authorization}
        for _ in range(per_client):
            conn.request("HEAD", f"/v2/{REPO}/manifests/v1", headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise SystemExit(f"authenticated HEAD failed: {resp.status}")
        conn.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(work, range(clients)))
    return clients * per_client / (time.perf_counter() - start)


def start_sendfile_server(path: Path) -> int:
    """A bare HTTP/1.1 server answering every request with ``sendfile`` of ``path``.

    The transport's ceiling: what loopback TCP and the same client allow when
    the server does nothing but hand the kernel the file.
    """
    size = path.stat().st_size
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode()
    listener = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with conn, open(path, "rb") as f:
            while conn.recv(65536):  # one request per read is enough for GETs without body
                conn.sendall(head)
                f.seek(0)
                conn.sendfile(f)

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]


def cat_throughput(path: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)
    return path.stat().st_size / (1 << 20) / (time.perf_counter() - start)


#: Figures measured on both registries: (key, unit, higher is better).
FIGURES = [
    ("blob_1", "MiB/s", True),
    ("blob_8", "MiB/s", True),
    ("manifest_head", "req/s", True),
    ("manifest_get", "req/s", True),
    ("push_100_small", "s", False),
    ("push_300x1mib", "s", False),
    ("push_300x1mib_chunked", "s", False),
]


def measure(port: int, blob_path: str) -> dict[str, float]:
    return {
        "blob_1": blob_throughput(port, blob_path, 1),
        "blob_8": blob_throughput(port, blob_path, 8),
        "manifest_head": manifest_rps(port, "HEAD"),
        "manifest_get": manifest_rps(port, "GET"),
        "push_100_small": push_many(port, 100, 64),
        "push_300x1mib": push_many(port, 300, 1 << 20),
        "push_300x1mib_chunked": push_many(port, 300, 1 << 20, chunked=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--blob-mib", type=int, default=256)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="condastore-registry-bench-"))
    blob_file = workdir / "blob"
    with open(blob_file, "wb") as f:
        for _ in range(args.blob_mib):
            f.write(os.urandom(1 << 20))
    data = blob_file.read_bytes()
    servers: dict[str, tuple[subprocess.Popen, int]] = {}
    results: dict[str, list[dict[str, float]]] = {"condastore": [], "distribution": []}
    auth: dict[str, list[float]] = {"basic": [], "bearer": []}
    ceilings: dict[str, list[float]] = {"cat": [], "sendfile": []}
    rss: dict[str, float] = {}
    pss: dict[str, float] = {}
    try:
        servers["condastore"] = start_condastore(workdir)
        servers["distribution"] = start_distribution(workdir)
        digests = {}
        for name, (_, port) in servers.items():
            digests[name] = push_blob(port, data)
            push_manifest(port, digests[name], len(data))
        del data
        sendfile_port = start_sendfile_server(blob_file)
        port = servers["condastore"][1]
        basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        for order in alternating(list(servers), args.rounds):
            ceilings["cat"].append(cat_throughput(blob_file))
            ceilings["sendfile"].append(blob_throughput(sendfile_port, "/blob", 1))
            for name in order:
                blob = f"/v2/{REPO}/blobs/{digests[name]}"
                results[name].append(measure(servers[name][1], blob))
            # Basic and Bearer take turns going first too.
            kinds = ["basic", "bearer"] if order[0] == "condastore" else ["bearer", "basic"]
            for kind in kinds:
                header = basic if kind == "basic" else f"Bearer {registry_token(port)}"
                auth[kind].append(authenticated_head_rps(port, header))
        for name, (proc, _) in servers.items():
            rss[name] = tree_rss_mib(proc.pid)
            pss[name] = tree_pss_mib(proc.pid)
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

    figures: dict[str, float] = {}
    rows = []
    for key, unit, higher_better in FIGURES:
        ours = [r[key] for r in results["condastore"]]
        peer = [r[key] for r in results["distribution"]]
        # The ratio is always "> 1: condastore ahead": ours/peer for rates, peer/ours for times.
        ratios = [o / p if higher_better else p / o for o, p in zip(ours, peer, strict=True)]
        figures[f"condastore_{key}_{unit.replace('/', 'p').lower()}"] = round(median(ours), 2)
        figures[f"distribution_{key}_{unit.replace('/', 'p').lower()}"] = round(median(peer), 2)
        figures.update(ratio_figures(key, ratios))
        rows.append(
            [f"{key} ({unit})", f"{median(ours):.1f}", f"{median(peer):.1f}", spread(ratios)]
        )
    blob_1 = [r["blob_1"] for r in results["condastore"]]
    for ceiling, values in ceilings.items():
        ratios = [b / c for b, c in zip(blob_1, values, strict=True)]
        figures.update(ratio_figures(f"blob_vs_{ceiling}", ratios))
        rows.append(
            [
                f"blob_1 vs {ceiling}",
                f"{median(blob_1):.1f}",
                f"{median(values):.1f} ({ceiling})",
                spread(ratios),
            ]
        )
    # Basic on every request against a Bearer token: the cost ratio (target <= 2).
    cost = [bearer / b for bearer, b in zip(auth["bearer"], auth["basic"], strict=True)]
    figures.update(ratio_figures("basic_vs_bearer_cost", cost))
    rows.append(
        [
            "HEAD with Basic / Bearer (req/s)",
            f"{median(auth['basic']):.0f} / {median(auth['bearer']):.0f}",
            "-",
            f"cost {spread(cost)}",
        ]
    )
    figures["condastore_rss_mib"] = round(rss["condastore"], 1)
    figures["distribution_rss_mib"] = round(rss["distribution"], 1)
    figures["condastore_pss_mib"] = round(pss["condastore"], 1)
    figures["distribution_pss_mib"] = round(pss["distribution"], 1)
    figures.update(ratio_figures("rss", [rss["distribution"] / rss["condastore"]]))
    figures.update(ratio_figures("pss", [pss["distribution"] / pss["condastore"]]))
    rows.append(
        ["RSS after the load (MiB)", f"{rss['condastore']:.0f}", f"{rss['distribution']:.0f}", "-"]
    )
    rows.append(
        ["PSS after the load (MiB)", f"{pss['condastore']:.0f}", f"{pss['distribution']:.0f}", "-"]
    )
    print_table(
        f"registry, {args.blob_mib} MiB blob, {args.rounds} alternating rounds"
        " (medians; ratio min-median-max per round, > 1: condastore ahead)",
        ["figure", "condastore", "distribution", "ratio"],
        rows,
    )
    print_json_line(figures)


if __name__ == "__main__":
    main()
