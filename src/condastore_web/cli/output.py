"""Human tables by default, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def fields(data: dict[str, Any], keys: Sequence[str]) -> None:
    width = max(len(k) for k in keys)
    for key in keys:
        click.echo(f"{key.ljust(width)}  {'' if data.get(key) is None else data[key]}")


def more_hint(next_cursor: str | None) -> None:
    """Tell the reader (on stderr, so piped tables stay clean) how to get the next page."""
    if next_cursor:
        click.echo(f"more: repeat with --cursor {next_cursor}", err=True)


def anonymous_hint(url: str) -> None:
    """An empty answer to a caller without a token is rarely what they meant to ask."""
    click.echo(
        f"note: not logged in to {url}; only what anonymous callers may see is listed "
        "(condastore login)",
        err=True,
    )
