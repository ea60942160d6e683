"""condastore's build overhead against bare py-rattler, in one process, alternating.

This isolates the library's own overhead; ``benchmarks/cli.py`` times the same
work as whole commands, start-up included. Each round, with a cold package
cache each time, and the two sides taking turns at going first:
  * condastore: ``condastore build SPEC --json --no-tarball`` (solve, install, lockfile,
    environment export, explicit list, log, all written to the blob store)
  * rattler:    ``rattler.solve`` + ``rattler.install`` of the same spec, nothing else
Then one condastore build with the conda-pack tarball, reported separately.

Target: condastore / rattler <= 1.3, reported per round as min-median-max.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import shutil
import tempfile
import time
from pathlib import Path

import rattler

from benchmarks.common import (
    TEN_TOOLS,
    alternating,
    median,
    print_json_line,
    print_table,
    ratio_figures,
    sample_channel_dir,
    spread,
)
from condastore_core.solve import virtual_packages_for
from condastore_web.cli import main as cli_main

PACKAGES = TEN_TOOLS


def write_spec(path: Path, channel: Path) -> Path:
    deps = "".join(f"  - {p}\n" for p in PACKAGES)
    path.write_text(f"name: bench\nchannels:\n  - {channel.as_uri()}\ndependencies:\n{deps}")
    return path


def condastore_build(spec: Path, data_dir: Path, tarball: bool) -> dict:
    out = io.StringIO()
    args = [
        "build",
        str(spec),
        "--json",
        "--data-dir",
        str(data_dir),
        "--tarball" if tarball else "--no-tarball",
    ]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        cli_main(args, standalone_mode=False)
    return json.loads(out.getvalue())


def rattler_build(channel: Path, prefix: Path, cache: Path) -> int:
    async def run() -> int:
        records = await rattler.solve(
            sources=[channel.as_uri()],
            specs=PACKAGES,
            platforms=["linux-64", "noarch"],
            virtual_packages=virtual_packages_for("linux-64"),
        )
        await rattler.install(records, target_prefix=prefix, cache_dir=cache, show_progress=False)
        return len(records)

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    channel = sample_channel_dir()
    ours: list[float] = []
    peer: list[float] = []
    n_packages = 0
    with tempfile.TemporaryDirectory(prefix="condastore-bench-") as tmp:
        root = Path(tmp)
        spec = write_spec(root / "environment.yaml", channel)
        for i, order in enumerate(alternating(["condastore", "rattler"], args.rounds)):
            for side in order:
                t = time.perf_counter()
                if side == "condastore":
                    data_dir = root / f"cs-{i}"
                    result = condastore_build(spec, data_dir, tarball=False)
                    ours.append(time.perf_counter() - t)
                    assert not result["reused"] and "tarball" not in result["artifacts"]
                    shutil.rmtree(data_dir)
                else:
                    work = root / f"r-{i}"
                    n_packages = rattler_build(channel, work / "env", work / "pkgs")
                    peer.append(time.perf_counter() - t)
                    shutil.rmtree(work)

        data_dir = root / "cs-tarball"
        t = time.perf_counter()
        result = condastore_build(spec, data_dir, tarball=True)
        with_tarball = time.perf_counter() - t
        tarball_size = result["artifacts"]["tarball"]["size"]

    ratios = [o / p for o, p in zip(ours, peer, strict=True)]
    print_table(
        f"build of {len(PACKAGES)} requested / {n_packages} installed packages, cold cache, "
        f"{args.rounds} rounds (seconds)",
        ["run", "median", "min", "max"],
        [
            [
                "condastore build (no tarball)",
                f"{median(ours):.3f}",
                f"{min(ours):.3f}",
                f"{max(ours):.3f}",
            ],
            [
                "bare py-rattler solve+install",
                f"{median(peer):.3f}",
                f"{min(peer):.3f}",
                f"{max(peer):.3f}",
            ],
            ["condastore build with tarball", f"{with_tarball:.3f}", "", ""],
        ],
    )
    print(
        f"\ncondastore / py-rattler per round: {spread(ratios)}x (target <= 1.3x); "
        f"tarball adds {with_tarball - median(ours):.2f}s for {tarball_size} bytes"
    )
    print_json_line(
        {
            "benchmark": "build_overhead",
            "rounds": args.rounds,
            "packages": n_packages,
            "condastore_median_s": round(median(ours), 4),
            "rattler_median_s": round(median(peer), 4),
            **ratio_figures("condastore_vs_rattler", ratios),
            "with_tarball_s": round(with_tarball, 4),
            "tarball_bytes": tarball_size,
        }
    )


if __name__ == "__main__":
    main()
