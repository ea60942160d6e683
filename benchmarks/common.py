"""Shared bits of the benchmarks: locating the sample channel and printing results."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Ten native tools of the conda-forge sample channel (24 packages once solved).
TEN_TOOLS = [
    "zstd",
    "openssl",
    "xz",
    "libcurl",
    "krb5",
    "readline",
    "tk",
    "libsqlite",
    "libsolv",
    "yaml-cpp",
]


def sample_channel_dir() -> Path:
    path = Path(
        os.environ.get(
            "CONDASTORE_SAMPLE_CHANNEL", REPO_ROOT.parent / "shared" / "conda-forge-sample"
        )
    )
    if not (path / "linux-64" / "repodata.json").is_file():
        raise SystemExit(f"sample channel not found at {path}; set CONDASTORE_SAMPLE_CHANNEL")
    return path.resolve()


def median(values: list[float]) -> float:
    return statistics.median(values)


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def print_json_line(figures: dict[str, object]) -> None:
    print(json.dumps(figures, sort_keys=True))


def spread(values: list[float], digits: int = 2) -> str:
    """``min-median-max`` of per-round figures, the way every benchmark reports ratios."""
    return "-".join(f"{v:.{digits}f}" for v in (min(values), median(values), max(values)))


def ratio_figures(name: str, ratios: list[float]) -> dict[str, float]:
    """The JSON figures of one per-pair ratio: median as ``*_ratio``, and its bounds."""
    return {
        f"{name}_ratio": round(median(ratios), 3),
        f"{name}_min_ratio": round(min(ratios), 3),
        f"{name}_max_ratio": round(max(ratios), 3),
    }


def alternating(pair: list[str], rounds: int) -> list[list[str]]:
    """Who goes first in each round: the two sides take turns, so drift hits both alike."""
    return [pair if i % 2 == 0 else pair[::-1] for i in range(rounds)]


def tree_pids(pid: int) -> list[int]:
    """A process and all its descendants, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo.extend(children.get(current, []))
    return pids


def _tree_sum_kib(pid: int, path: str, field: str) -> int:
    total = 0
    for current in tree_pids(pid):
        try:
            for line in Path(f"/proc/{current}/{path}").read_text().splitlines():
                if line.startswith(field):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants (gunicorn: master + workers).

    Pages that forked workers share with their master count once per process here.
    """
    return _tree_sum_kib(pid, "status", "VmRSS:") / 1024


def tree_pss_mib(pid: int) -> float:
    """Proportional memory of a process tree: each shared page split among its sharers.

    The memory the tree really takes from the machine; what ``tree_rss_mib``
    over-counts for a server of forked workers.
    """
    return _tree_sum_kib(pid, "smaps_rollup", "Pss:") / 1024
