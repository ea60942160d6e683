"""Shared bits of the benchmarks: locating the sample channel and printing results."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


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
