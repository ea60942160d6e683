"""condastore's registry against the CNCF distribution registry, side by side on loopback.

Both run as they would in production: condastore by `condastore serve` (SQLite, local
blob store, anonymous rights granted for the benchmark repository so neither
side authenticates), Debian's ``docker-registry`` with its filesystem driver.
Rounds alternate between the two so machine noise hits both alike. Figures:
blob GET throughput for a 256 MiB blob at 1 and 8 concurrent clients, with two
ceilings for it: ``cat`` of the same file to /dev/null (no network at all) and
a bare socket server that answers every request with ``sendfile`` of the file
(loopback TCP and the client, nothing else), manifest HEAD and GET requests per
second at 16 clients, and the time to push 100 small blobs. Blob GETs are
driven by Python threads reading into large buffers over kept-alive
connections, manifest GETs by ``wrk`` (Debian package) when it is installed,
HEADs and pushes by Python threads: the same client for both registries.

    python -m benchmarks.registry [--rounds 3] [--blob-mib 256]
"""

from __future__ import annotations

import argparse
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import median, print_json_line, print_table

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


def start_condastore(workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {
        **os.environ,
        "CONDASTORE_DATA_DIR": str(workdir / "condastore"),
        "CONDASTORE_ANONYMOUS_BINDINGS": "bench/*=admin",
        "CONDASTORE_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "condastore_web",
            "serve",
            "--port",
            str(port),
            "--workers",
            "4",
            "--threads",
            "8",
        ],
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


def push_blob(port: int, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    resp, _ = request(port, "POST", f"/v2/{REPO}/blobs/uploads/")
    location = resp.getheader("Location")
    path = location.split("://", 1)[-1]
    path = path[path.index("/") :] if not location.startswith("/") else location
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


def push_manifest(port: int, layer: str, size: int) -> None:
    config = b'{"architecture":"amd64","os":"linux"}'
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
        port, "PUT", f"/v2/{REPO}/manifests/v1", body=manifest, headers={"Content-Type": MANIFEST}
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


def push_small(port: int, count: int = 100) -> float:
    start = time.perf_counter()
    for i in range(count):
        push_blob(port, f"small blob {i} {time.time_ns()}".encode())
    return time.perf_counter() - start


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--blob-mib", type=int, default=256)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="condastore-registry-bench-"))
    blob_file = workdir / "blob"
    with open(blob_file, "wb") as f:
        for _ in range(args.blob_mib):
            f.write(os.urandom(1 << 20))
    data = blob_file.read_bytes()
    servers = {}
    try:
        servers["condastore"] = start_condastore(workdir)
        servers["distribution"] = start_distribution(workdir)
        digests = {}
        for name, (_, port) in servers.items():
            digests[name] = push_blob(port, data)
            push_manifest(port, digests[name], len(data))
        del data
        results: dict[str, dict[str, list[float]]] = {n: {} for n in servers}
        sendfile_port = start_sendfile_server(blob_file)
        ceilings: dict[str, list[float]] = {"cat": [], "sendfile": []}
        for _ in range(args.rounds):
            ceilings["cat"].append(cat_throughput(blob_file))
            ceilings["sendfile"].append(blob_throughput(sendfile_port, "/blob", 1))
            for name, (_, port) in servers.items():
                r = results[name]
                blob = f"/v2/{REPO}/blobs/{digests[name]}"
                r.setdefault("blob_1_mibps", []).append(blob_throughput(port, blob, 1))
                r.setdefault("blob_8_mibps", []).append(blob_throughput(port, blob, 8))
                r.setdefault("manifest_head_rps", []).append(manifest_rps(port, "HEAD"))
                r.setdefault("manifest_get_rps", []).append(manifest_rps(port, "GET"))
                r.setdefault("push_100_s", []).append(push_small(port))
        cat, sendfile = median(ceilings["cat"]), median(ceilings["sendfile"])
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

    figures: dict[str, float] = {"cat_mibps": round(cat, 1), "sendfile_mibps": round(sendfile, 1)}
    rows = []
    for key in (
        "blob_1_mibps",
        "blob_8_mibps",
        "manifest_head_rps",
        "manifest_get_rps",
        "push_100_s",
    ):
        ours = median(results["condastore"][key])
        peer = median(results["distribution"][key])
        # For times, lower is better: the ratio is peer/ours so that > 1 always means faster.
        ratio = peer / ours if key.endswith("_s") else ours / peer
        figures[f"condastore_{key}"] = round(ours, 2)
        figures[f"distribution_{key}"] = round(peer, 2)
        figures[f"{key.rsplit('_', 1)[0]}_ratio"] = round(ratio, 3)
        rows.append([key, f"{ours:.1f}", f"{peer:.1f}", f"{ratio:.2f}x"])
    blob_1 = median(results["condastore"]["blob_1_mibps"])
    for ceiling, value in (("cat", cat), ("sendfile", sendfile)):
        figures[f"blob_vs_{ceiling}_ratio"] = round(blob_1 / value, 3)
        rows.append(
            [
                f"blob_1 vs {ceiling}",
                f"{blob_1:.1f}",
                f"{value:.1f} ({ceiling})",
                f"{blob_1 / value:.2f}x",
            ]
        )
    print_table(
        f"registry, {args.blob_mib} MiB blob, {args.rounds} rounds (median)",
        ["figure", "condastore", "distribution", "ratio (>1: condastore ahead)"],
        rows,
    )
    print_json_line(figures)


if __name__ == "__main__":
    main()
