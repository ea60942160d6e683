"""``condastore gc``: apply retention policies, sweep unreferenced blobs, remove leftovers."""

from __future__ import annotations

from pathlib import Path

import click

from condastore_core.service.context import Context
from condastore_core.service.gc import GRACE_SECONDS, collect
from condastore_web.cli.common import config_option, data_dir_option, reports_errors, settings_from
from condastore_web.cli.output import emit_json


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Report what would be collected; change nothing.")
@click.option(
    "--grace-seconds",
    type=float,
    default=GRACE_SECONDS,
    show_default=True,
    help="Never sweep blobs written this recently.",
)
@click.option(
    "--prune-untagged", is_flag=True, help="Also remove registry manifests no tag reaches."
)
@click.option("--json", "as_json", is_flag=True)
@data_dir_option
@config_option
@reports_errors
def gc_command(
    dry_run: bool,
    grace_seconds: float,
    prune_untagged: bool,
    as_json: bool,
    data_dir: Path | None,
    config_file: Path | None,
) -> None:
    """Collect old builds and free the blobs nothing references (on the server's data)."""
    ctx = Context.from_settings(settings_from(config_file, data_dir=data_dir))
    report = collect(
        ctx, dry_run=dry_run, grace_seconds=grace_seconds, prune_untagged=prune_untagged
    )
    if as_json:
        emit_json(report.to_json())
        return
    verb = "would free" if dry_run else "freed"
    if dry_run:
        click.echo(
            f"would collect {len(report.builds_collected)} builds, remove "
            f"{len(report.prefixes_removed)} prefixes and prune {report.manifests_pruned} manifests"
        )
    else:
        click.echo(
            f"builds collected: {len(report.builds_collected)}; prefixes removed: "
            f"{len(report.prefixes_removed)}; manifests pruned: {report.manifests_pruned}"
        )
    click.echo(
        f"{verb} {report.bytes_freed} bytes in {report.blobs_deleted} blobs; "
        f"{report.blobs_kept} blobs kept"
    )
    click.echo(
        f"abandoned uploads {'to purge' if dry_run else 'purged'}: {report.uploads_purged} "
        f"({report.upload_bytes_freed} bytes)"
    )
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{verb} {len(report.leftovers_removed)} leftovers of stopped builds "
        f"({report.leftover_bytes} bytes)"
    )
    for path in report.leftovers_removed:
        click.echo(f"  {path}")
    verb = "would discard" if dry_run else "discarded"
    click.echo(f"{verb} {len(report.uploads_discarded)} abandoned blob uploads")
