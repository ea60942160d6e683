"""Solving against a channel the size of conda-forge: condastore beside bare py-rattler.

A channel with the shape of conda-forge's linux-64 + noarch is generated
deterministically (``--records`` 520,000 over ``--names`` 31,000 by default:
a few names with hundreds of builds, most with a handful; each record
depends on a few names more popular than itself, with ``>=`` bounds that some
of their versions meet) and served over HTTP on loopback twice: as one
``repodata.json`` with its ``.zst`` (``/mono/``) and sharded after CEP-16
(``/sharded/``: ``repodata_shards.msgpack.zst`` and content-addressed shards).

Figures, each over ``--rounds`` alternating rounds (which side goes first
alternates), with the per-round ratio as min-median-max:

- a cold solve (empty cache) and a warm solve (same cache again) of a
  10-name spec, as whole processes: ``condastore lock`` against a bare
  py-rattler script doing the same solve; wall time and peak RSS;
- the server: ``condastore serve`` answering ``POST /api/v1/solve`` for
  ``--previews`` specs of different names; its memory (PSS and RSS of the
  whole process tree) after the first ten and after all of them, and the
  median time of a warm preview against a warm solve in one long-lived
  py-rattler process (``Gateway`` kept).

    python -m benchmarks.channel_scale [--rounds 5] [--records 520000] [--names 31000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import hashlib
import http.client
import http.server
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgpack
import zstandard

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
from benchmarks.registry import PASSWORD, USER, condastore_command, start_condastore

SEED = 20240516
SUBDIRS = ("linux-64", "noarch")


def _records_per_name(rng: random.Random, names: int, records: int) -> list[int]:
    """A long-tailed spread: popular names get hundreds of builds, most a few."""
    weights = [rng.paretovariate(1.2) for _ in range(names)]
    weights.sort(reverse=True)
    scale = records / sum(weights)
    counts = [max(1, round(w * scale)) for w in weights]
    counts[0] += records - sum(counts)  # exact total
    return counts


def generate(root: Path, records: int, names: int) -> list[str]:
    """Write the channel under ``root`` (both layouts); return the names, most popular first."""
    rng = random.Random(SEED)
    counts = _records_per_name(rng, names, records)
    name_list = [f"pkg{i:05d}" for i in range(names)]
    versions: list[list[str]] = []
    subdir_repodata: dict[str, dict[str, dict]] = {s: {} for s in SUBDIRS}
    for i, name in enumerate(name_list):
        total = max(1, counts[i])
        n_versions = max(1, min(total, int(total**0.6)))
        vers = [f"{1 + v // 10}.{v % 10}.{rng.randrange(5)}" for v in range(n_versions)]
        versions.append(vers)
        subdir = "noarch" if rng.random() < 0.22 else "linux-64"
        fanout = min(i, max(0, int(rng.expovariate(1 / 3.5))))
        deps_names = sorted({int(i * rng.random() ** 2) for _ in range(fanout)})
        for r in range(total):
            version = vers[r % n_versions]
            build_number = r // n_versions
            digest = hashlib.sha256(f"{name}-{r}".encode()).hexdigest()
            depends = []
            for j in deps_names:
                target = versions[j]
                bound = target[rng.randrange(max(1, len(target) // 2))]
                depends.append(f"{name_list[j]} >={bound}" if rng.random() < 0.7 else name_list[j])
            build = f"h{digest[:8]}_{build_number}"
            filename = f"{name}-{version}-{build}.conda"
            subdir_repodata[subdir][filename] = {
                "build": build,
                "build_number": build_number,
                "depends": depends,
                "license": "BSD-3-Clause",
                "md5": digest[:32],
                "name": name,
                "sha256": digest,
                "size": 10_000 + int(digest[:5], 16),
                "subdir": subdir,
                "timestamp": 1_700_000_000_000 + r,
                "version": version,
                **({"noarch": "generic"} if subdir == "noarch" else {}),
            }
    cctx = zstandard.ZstdCompressor(level=3)
    for subdir, packages in subdir_repodata.items():
        mono = root / "mono" / subdir
        mono.mkdir(parents=True, exist_ok=True)
        text = json.dumps(
            {
                "info": {"subdir": subdir},
                "packages": {},
                "packages.conda": packages,
                "repodata_version": 1,
            }
        ).encode()
        (mono / "repodata.json").write_bytes(text)
        (mono / "repodata.json.zst").write_bytes(cctx.compress(text))
        sharded = root / "sharded" / subdir
        (sharded / "shards").mkdir(parents=True, exist_ok=True)
        by_name: dict[str, dict[str, dict]] = {}
        for filename, record in packages.items():
            binary = {
                **record,
                "sha256": bytes.fromhex(record["sha256"]),
                "md5": bytes.fromhex(record["md5"]),
            }
            by_name.setdefault(record["name"], {})[filename] = binary
        index: dict[str, bytes] = {}
        for name, conda in by_name.items():
            shard = cctx.compress(
                msgpack.packb({"packages": {}, "packages.conda": conda, "removed": []})
            )
            digest = hashlib.sha256(shard).digest()
            (sharded / "shards" / f"{digest.hex()}.msgpack.zst").write_bytes(shard)
            index[name] = digest
        (sharded / "repodata_shards.msgpack.zst").write_bytes(
            cctx.compress(
                msgpack.packb(
                    {
                        "version": 1,
                        "info": {
                            "base_url": "./",
                            "shards_base_url": "./shards/",
                            "subdir": subdir,
                        },
                        "shards": index,
                    }
                )
            )
        )
        # A sharded channel still serves repodata.json for clients that do not shard.
        shutil.copy(mono / "repodata.json", sharded / "repodata.json")
    return name_list


class ChannelHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with ``Last-Modified`` revalidation, quietly.

    The shard index is always sent whole: py-rattler 0.28 fails a sharded
    fetch that gets ``304 Not Modified`` for ``repodata_shards.msgpack.zst``
    ("received unexpected status code (304 Not Modified)"), and the index is
    small. Everything else revalidates as a static server would.
    """

    def send_head(self):  # type: ignore[no-untyped-def]
        if self.path.endswith("repodata_shards.msgpack.zst"):
            for header in ("If-Modified-Since", "If-None-Match"):
                del self.headers[header]
        return super().send_head()

    def log_message(self, *args: object) -> None:
        pass


def serve_channel(root: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = functools.partial(ChannelHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


BARE_SCRIPT = """
import asyncio, sys, rattler
async def main():
    gateway = rattler.Gateway(cache_dir=sys.argv[2])
    records = await rattler.solve(
        [sys.argv[1]], sys.argv[3:], gateway=gateway, platforms=["linux-64", "noarch"]
    )
    print(len(records))
asyncio.run(main())
"""


def run_measured(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one whole process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        assert proc.stderr is not None
        raise SystemExit(
            f"{argv[:3]} failed: {proc.stderr.read().decode(errors='replace')[-2000:]}"
        )
    return seconds, usage.ru_maxrss / 1024


def spec_text(url: str, names: list[str]) -> str:
    return (
        "name: scale\nchannels:\n  - "
        + url
        + "\ndependencies:\n"
        + "".join(f"  - {n}\n" for n in names)
    )


def whole_process_figures(
    workdir: Path, url: str, names: list[str], rounds: int
) -> dict[str, list[float]]:
    """Cold and warm solves, condastore lock vs bare rattler, as whole processes."""
    spec = workdir / "spec.yaml"
    spec.write_text(spec_text(url, names))
    figures: dict[str, list[float]] = {
        f"{side}_{phase}_{what}": []
        for side in ("condastore", "rattler")
        for phase in ("cold", "warm")
        for what in ("s", "mib")
    }
    for n, order in enumerate(alternating(["condastore", "rattler"], rounds)):
        for side in order:
            scratch = workdir / f"{side}-{n}"
            if side == "condastore":
                argv = [
                    condastore_command(),
                    "lock",
                    str(spec),
                    "-o",
                    str(scratch / "lock.yml"),
                    "--data-dir",
                    str(scratch),
                ]
            else:
                argv = [sys.executable, "-c", BARE_SCRIPT, url, str(scratch / "cache"), *names]
            scratch.mkdir(parents=True)
            for phase in ("cold", "warm"):
                seconds, mib = run_measured(argv)
                figures[f"{side}_{phase}_s"].append(seconds)
                figures[f"{side}_{phase}_mib"].append(mib)
            shutil.rmtree(scratch, ignore_errors=True)
    return figures


def start_server(workdir: Path) -> tuple[subprocess.Popen, int]:
    """``condastore serve`` as in the registry benchmark, allowed to fetch from loopback."""
    return start_condastore(workdir, {"CONDASTORE_ALLOWED_NETWORKS": "127.0.0.0/8"})


def preview(port: int, url: str, names: list[str]) -> float:
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    body = json.dumps({"specification": spec_text(url, names), "platforms": ["linux-64"]})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    start = time.perf_counter()
    conn.request(
        "POST",
        "/api/v1/solve",
        body=body,
        headers={"Authorization": basic, "Content-Type": "application/json"},
    )
    resp = conn.getresponse()
    data = resp.read()
    seconds = time.perf_counter() - start
    conn.close()
    if resp.status != 200:
        raise SystemExit(f"solve preview failed: {resp.status} {data[:500]!r}")
    return seconds


def warm_gateway_seconds(url: str, spec_sets: list[list[str]], cache: Path) -> list[float]:
    """Warm solves in one long-lived process that keeps its ``Gateway``: the in-process floor."""
    import rattler

    async def solve_all() -> list[float]:
        gateway = rattler.Gateway(cache_dir=cache)
        times = []
        for names in spec_sets:
            await rattler.solve(
                [url], names, gateway=gateway, platforms=["linux-64", "noarch"]
            )  # warm-up
            start = time.perf_counter()
            await rattler.solve([url], names, gateway=gateway, platforms=["linux-64", "noarch"])
            times.append(time.perf_counter() - start)
        return times

    return asyncio.run(solve_all())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=520_000)
    parser.add_argument("--names", type=int, default=31_000)
    parser.add_argument("--previews", type=int, default=100)
    parser.add_argument(
        "--channel-dir", type=Path, default=None, help="Reuse a generated channel here."
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="condastore-scale-"))
    root = args.channel_dir or workdir / "channel"
    marker = root / f"generated-{args.records}-{args.names}-{SEED}.json"
    if marker.exists():
        name_list = json.loads(marker.read_text())
    else:
        start = time.perf_counter()
        name_list = generate(root, args.records, args.names)
        marker.write_text(json.dumps(name_list))
        print(
            f"generated {args.records} records over {args.names} names"
            f" in {time.perf_counter() - start:.0f} s",
            file=sys.stderr,
        )
    rng = random.Random(SEED + 1)
    mid = name_list[len(name_list) // 50 : len(name_list) // 5]
    spec_names = rng.sample(mid, 10)
    httpd, port = serve_channel(root)
    rows = []
    figures: dict[str, float] = {"records": args.records, "names": args.names}
    try:
        for layout in ("mono", "sharded"):
            url = f"http://127.0.0.1:{port}/{layout}"
            results = whole_process_figures(workdir, url, spec_names, args.rounds)
            for phase in ("cold", "warm"):
                ours_s = results[f"condastore_{phase}_s"]
                bare_s = results[f"rattler_{phase}_s"]
                ours_m = results[f"condastore_{phase}_mib"]
                bare_m = results[f"rattler_{phase}_mib"]
                time_ratios = [o / b for o, b in zip(ours_s, bare_s, strict=True)]
                mem_ratios = [o / b for o, b in zip(ours_m, bare_m, strict=True)]
                figures.update(ratio_figures(f"{layout}_{phase}_time", time_ratios))
                figures.update(ratio_figures(f"{layout}_{phase}_memory", mem_ratios))
                figures[f"{layout}_{phase}_condastore_s"] = round(median(ours_s), 2)
                figures[f"{layout}_{phase}_rattler_s"] = round(median(bare_s), 2)
                figures[f"{layout}_{phase}_condastore_mib"] = round(median(ours_m), 1)
                figures[f"{layout}_{phase}_rattler_mib"] = round(median(bare_m), 1)
                rows.append(
                    [
                        f"{layout} {phase} solve (s)",
                        f"{median(ours_s):.2f}",
                        f"{median(bare_s):.2f}",
                        spread(time_ratios),
                    ]
                )
                rows.append(
                    [
                        f"{layout} {phase} peak RSS (MiB)",
                        f"{median(ours_m):.0f}",
                        f"{median(bare_m):.0f}",
                        spread(mem_ratios),
                    ]
                )
        # The server: many previews of different names; its memory must stay flat.
        url = f"http://127.0.0.1:{port}/sharded"
        spec_sets = [rng.sample(mid, 10) for _ in range(args.previews)]
        proc, api_port = start_server(workdir)
        try:
            preview_times = []
            memory = []
            for n, names in enumerate(spec_sets, 1):
                preview_times.append(preview(api_port, url, names))
                if n in (10, len(spec_sets)):
                    memory.append((tree_pss_mib(proc.pid), tree_rss_mib(proc.pid)))
            warm_previews = [preview(api_port, url, names) for names in spec_sets[:10]]
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        in_process = warm_gateway_seconds(url, spec_sets[:10], workdir / "gateway-cache")
        warm_ratios = [p / g for p, g in zip(warm_previews, in_process, strict=True)]
        figures.update(ratio_figures("warm_preview_vs_gateway_time", warm_ratios))
        figures["server_pss_after_10_mib"] = round(memory[0][0], 1)
        figures[f"server_pss_after_{args.previews}_mib"] = round(memory[-1][0], 1)
        figures["server_rss_after_10_mib"] = round(memory[0][1], 1)
        figures[f"server_rss_after_{args.previews}_mib"] = round(memory[-1][1], 1)
        figures.update(ratio_figures("server_pss_growth", [memory[-1][0] / memory[0][0]]))
        rows.append(
            [
                "warm preview vs warm in-process Gateway (s)",
                f"{median(warm_previews):.2f}",
                f"{median(in_process):.2f}",
                spread(warm_ratios),
            ]
        )
        rows.append(
            [
                f"server PSS after 10 / {args.previews} previews (MiB)",
                f"{memory[0][0]:.0f} / {memory[-1][0]:.0f}",
                "-",
                f"growth {memory[-1][0] / memory[0][0]:.2f}",
            ]
        )
        rows.append(
            [
                f"server RSS after 10 / {args.previews} previews (MiB)",
                f"{memory[0][1]:.0f} / {memory[-1][1]:.0f}",
                "-",
                "-",
            ]
        )
    finally:
        httpd.shutdown()
        shutil.rmtree(workdir / "condastore", ignore_errors=True)
        if args.channel_dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(
        f"conda-forge-scale channel: {args.records} records, {args.names} names, "
        f"{args.rounds} alternating rounds"
        " (ratio condastore / rattler, min-median-max; < 1: condastore ahead)",
        ["figure", "condastore", "bare rattler", "ratio"],
        rows,
    )
    print_json_line(figures)


if __name__ == "__main__":
    main()
