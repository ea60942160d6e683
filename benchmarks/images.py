"""Environment images on demand against a plain registry serving the same prefix.

condastore runs as users start it (``condastore serve``, the conda-forge sample
channel, anonymous pulls of ``conda/*``); the peer is Debian's
``docker-registry`` (in-memory descriptor cache) holding, for each image, a
single-layer image of exactly the same files. A pull is what a client does:
the manifest, then every blob it names, by one HTTP client for both sides.

For 1, 3, 6 and 10 packages, each round:
  * cold pull: a new server with an empty data directory solves, installs,
    builds every layer and serves the image (the peer's figure beside it is
    its plain pull of the prebuilt single-layer image);
  * warm pull: the same image again, on both sides, taking turns at going
    first (target at 10 packages: <= 1.2x the peer).
Then cold pulls of the 10-package image with 4 parallel layer jobs against 1,
alternating. Ratios are per round, min-median-max, over >= 5 rounds; resident
memory of the server is reported after the warm pulls.

The cost of reproducibility: the 10-package prefix packed as conda-pack packs
it (the build machine's paths, owners and clock in the bytes) against
condastore's reproducible tarball (its packages linked again at a canonical
path, the tar rewritten sorted and dated by the lock), taking turns at going first.

    python -m benchmarks.images [--rounds 5] [--only-tarball]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import requests

from benchmarks.common import (
    alternating,
    median,
    print_json_line,
    print_table,
    ratio_figures,
    sample_channel_dir,
    spread,
    tree_rss_mib,
)
from benchmarks.registry import condastore_command, free_port, start_distribution, wait_up

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
PACKAGES = ["zstd", "openssl", "xz", "bzip2", "lz4-c", "ncurses", "readline", "tk", "libsqlite"]
PACKAGES.append("libcurl")
SIZES = [1, 3, 6, 10]
WARM_PULLS = 5


def start_server(workdir: Path, channel: Path, layer_jobs: int = 4) -> tuple[subprocess.Popen, int]:
    """``condastore serve`` on an empty data directory, pulling from the sample channel."""
    port = free_port()
    env = {
        **os.environ,
        "CONDASTORE_CHANNELS": channel.as_uri(),
        "CONDASTORE_ALLOWED_CHANNEL_DIRS": str(channel),
        "CONDASTORE_ANONYMOUS_BINDINGS": "conda/*=viewer",
        "CONDASTORE_IMAGE_LAYER_JOBS": str(layer_jobs),
        "CONDASTORE_TARBALL": "false",
        "CONDASTORE_LOG_LEVEL": "WARNING",
        # The peer's single-layer image has no base either: the same bytes on both sides.
        "CONDASTORE_IMAGE_BASE": "scratch",
    }
    proc = subprocess.Popen(
        [condastore_command(), "serve", "--port", str(port), "--data-dir", str(workdir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(workdir.parent / f"{workdir.name}.log").open("wb"),
    )
    wait_up(port, proc, "condastore")
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=60)


def pull(base: str, repo: str, tag: str) -> tuple[float, dict, list[bytes]]:
    """Seconds to fetch the manifest and every blob it names; the manifest and layers."""
    session = requests.Session()
    start = time.perf_counter()
    r = session.get(f"{base}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST})
    if r.status_code != 200:
        raise SystemExit(f"pull of {repo}:{tag} from {base}: {r.status_code} {r.text[:300]}")
    manifest = r.json()
    blobs = []
    for blob in [manifest["config"], *manifest["layers"]]:
        got = session.get(f"{base}/v2/{repo}/blobs/{blob['digest']}")
        got.raise_for_status()
        blobs.append(got.content)
    return time.perf_counter() - start, manifest, blobs[1:]


def single_layer(layers: list[bytes]) -> bytes:
    """The files of ``layers`` applied in order, as one gzip layer (the peer's image)."""
    files: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    for blob in layers:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tf:
            for member in tf.getmembers():
                data = tf.extractfile(member).read() if member.isfile() else None
                files[member.name] = (member, data)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        for name in sorted(files):
            member, data = files[name]
            tf.addfile(member, io.BytesIO(data) if data is not None else None)
    return gzip.compress(out.getvalue(), compresslevel=6, mtime=0)


def push_peer(base: str, repo: str, layer: bytes) -> None:
    def blob(data: bytes) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = requests.post(f"{base}/v2/{repo}/blobs/uploads/")
        location = r.headers["Location"]
        url = location if location.startswith("http") else base + location
        sep = "&" if "?" in url else "?"
        requests.put(f"{url}{sep}digest={digest}", data=data).raise_for_status()
        return {"digest": digest, "size": len(data)}

    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **blob(layer)}],
    }
    r = requests.put(
        f"{base}/v2/{repo}/manifests/v1",
        data=json.dumps(manifest).encode(),
        headers={"Content-Type": MANIFEST},
    )
    r.raise_for_status()


def warm_seconds(base: str, repo: str, tag: str) -> float:
    return median([pull(base, repo, tag)[0] for _ in range(WARM_PULLS)])


def plain_conda_pack(prefix: Path, output: Path) -> None:
    """The tarball as conda-pack alone makes it (condastore's before it was reproducible)."""
    import conda_pack

    conda_pack.pack(prefix=str(prefix), output=str(output), format="tar.gz", compress_level=4)


def tarball_cost(root: Path, channel: Path, rounds: int) -> dict[str, float]:
    """Seconds to pack the 10-package prefix: plain conda-pack against the reproducible one."""
    from condastore_core.install import install_lock
    from condastore_core.pack import pack_prefix
    from condastore_core.solve import Solver
    from condastore_core.spec import EnvironmentSpec

    spec = EnvironmentSpec.from_dict(
        {"name": "bench", "channels": [channel.as_uri()], "dependencies": PACKAGES}
    )
    lock = Solver(cache_dir=root / "repodata").solve(spec, ["linux-64"])
    prefix = install_lock(lock, "linux-64", root / "pack-env", root / "pkgs")
    times: dict[str, list[float]] = {"plain": [], "reproducible": []}
    digests: dict[str, set[str]] = {"plain": set(), "reproducible": set()}
    for round_no, order in enumerate(alternating(["plain", "reproducible"], rounds)):
        for side in order:
            output = root / f"pack-{round_no}-{side}.tar.gz"
            start = time.perf_counter()
            if side == "plain":
                plain_conda_pack(prefix, output)
            else:
                pack_prefix(prefix, output)
            times[side].append(time.perf_counter() - start)
            digests[side].add(hashlib.sha256(output.read_bytes()).hexdigest())
            output.unlink()
    ratios = [r / p for r, p in zip(times["reproducible"], times["plain"], strict=True)]
    print_table(
        f"cost of reproducibility: packing the 10-package prefix, {rounds} alternating rounds",
        ["tarball", "median", "min-median-max (s)", "distinct digests"],
        [
            [
                side,
                f"{median(times[side]):.2f} s",
                spread(times[side]),
                str(len(digests[side])),
            ]
            for side in ("plain", "reproducible")
        ]
        + [["ratio", "", spread(ratios), ""]],
    )
    return {
        **ratio_figures("tarball_reproducible", ratios),
        "tarball_plain_s": round(median(times["plain"]), 3),
        "tarball_reproducible_s": round(median(times["reproducible"]), 3),
        "tarball_reproducible_digests": len(digests["reproducible"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only-tarball", action="store_true", help="only the tarball cost")
    args = parser.parse_args()
    channel = sample_channel_dir()
    if args.only_tarball:
        root = Path(tempfile.mkdtemp(prefix="condastore-pack-bench-"))
        try:
            print_json_line(tarball_cost(root, channel, args.rounds))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    root = Path(tempfile.mkdtemp(prefix="condastore-images-bench-"))
    cold: dict[int, list[float]] = {n: [] for n in SIZES}
    peer_pull: dict[int, list[float]] = {n: [] for n in SIZES}
    warm: dict[int, list[float]] = {n: [] for n in SIZES}
    peer_warm: dict[int, list[float]] = {n: [] for n in SIZES}
    layers: dict[int, int] = {}
    jobs: dict[str, list[float]] = {"4": [], "1": []}
    rss: list[float] = []
    peer_proc, peer_port = start_distribution(root)
    peer = f"http://127.0.0.1:{peer_port}"
    try:
        for round_no, order in enumerate(alternating(["condastore", "peer"], args.rounds)):
            for n in SIZES:
                repo = "conda/" + "/".join(PACKAGES[:n])
                proc, port = start_server(root / f"cs-{round_no}-{n}", channel)
                ours = f"http://127.0.0.1:{port}"
                try:
                    seconds, manifest, blobs = pull(ours, repo, "latest")
                    cold[n].append(seconds)
                    layers[n] = len(manifest["layers"])
                    if round_no == 0:
                        push_peer(peer, f"single/{n}", single_layer(blobs))
                    peer_pull[n].append(pull(peer, f"single/{n}", "v1")[0])
                    for side in order:
                        if side == "condastore":
                            warm[n].append(warm_seconds(ours, repo, "latest"))
                        else:
                            peer_warm[n].append(warm_seconds(peer, f"single/{n}", "v1"))
                    if n == SIZES[-1]:
                        rss.append(tree_rss_mib(proc.pid))
                finally:
                    stop(proc)
                    shutil.rmtree(root / f"cs-{round_no}-{n}", ignore_errors=True)
            for count in ["4", "1"] if round_no % 2 == 0 else ["1", "4"]:
                work = root / f"jobs-{round_no}-{count}"
                proc, port = start_server(work, channel, layer_jobs=int(count))
                try:
                    repo = "conda/" + "/".join(PACKAGES[: SIZES[-1]])
                    jobs[count].append(pull(f"http://127.0.0.1:{port}", repo, "latest")[0])
                finally:
                    stop(proc)
                    shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        for log in sorted(root.glob("*.log"))[-1:]:
            print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
        raise
    finally:
        stop(peer_proc)
        shutil.rmtree(root, ignore_errors=True)

    figures: dict[str, float] = {}
    rows = []
    for n in SIZES:
        warm_ratios = [o / p for o, p in zip(warm[n], peer_warm[n], strict=True)]
        cold_ratios = [o / p for o, p in zip(cold[n], peer_pull[n], strict=True)]
        figures.update(ratio_figures(f"warm_pull_{n}", warm_ratios))
        figures.update(ratio_figures(f"cold_pull_{n}", cold_ratios))
        figures[f"cold_pull_{n}_s"] = round(median(cold[n]), 3)
        figures[f"warm_pull_{n}_s"] = round(median(warm[n]), 4)
        figures[f"peer_pull_{n}_s"] = round(median(peer_warm[n]), 4)
        rows.append(
            [
                f"{n} packages ({layers[n]} layers)",
                f"{median(cold[n]):.2f} s",
                f"{median(warm[n]) * 1000:.1f} ms",
                f"{median(peer_warm[n]) * 1000:.1f} ms",
                spread(warm_ratios),
            ]
        )
    print_table(
        f"image pulls, {args.rounds} alternating rounds (medians; warm ratio per round "
        "min-median-max, < 1: condastore faster; target <= 1.2 at 10 packages)",
        ["image", "cold pull", "warm pull", "peer (1 layer)", "warm ratio"],
        rows,
    )
    parallel = [one / four for one, four in zip(jobs["1"], jobs["4"], strict=True)]
    figures.update(ratio_figures("parallel_layer_jobs", parallel))
    figures["server_rss_mib"] = round(median(rss), 1)
    print_table(
        "cold pull of 10 packages: 4 layer jobs against 1",
        ["layer jobs", "median", "speed-up per round (min-median-max)"],
        [
            ["4", f"{median(jobs['4']):.2f} s", spread(parallel)],
            ["1", f"{median(jobs['1']):.2f} s", ""],
        ],
    )
    print(f"\nserver RSS after the pulls of 10 packages: {median(rss):.0f} MiB")
    pack_root = Path(tempfile.mkdtemp(prefix="condastore-pack-bench-"))
    try:
        figures.update(tarball_cost(pack_root, channel, args.rounds))
    finally:
        shutil.rmtree(pack_root, ignore_errors=True)
    print_json_line(figures)


if __name__ == "__main__":
    main()
