"""Commands that work on this machine with nothing else running: ``lock`` and ``build``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import click
import yaml

from condastore_core.bounded import MAX_LOCK_BYTES, check_size, check_yaml, yaml_loader
from condastore_core.errors import SpecError
from condastore_core.lock import Lock, parse_conda_lock_yaml
from condastore_core.progress import StreamReporter
from condastore_core.render import conda_lock_yml
from condastore_core.solve import solver_for
from condastore_core.spec import EnvironmentSpec, parse_spec
from condastore_web.cli.common import (
    config_option,
    data_dir_option,
    reports_errors,
    settings_from,
)

#: These commands run on the user's own machine for the user: they may fetch any channel the
#: user could fetch themselves, so the server's channel gate is open (policies do not apply:
#: there is no namespace).
LOCAL_GATE = "open"
#: For the same reason their package work runs in this process: a crash costs this command
#: only, and a fork server would cost about a second each time (servers always isolate).
LOCAL_ISOLATION: Final = "inline"


def read_input(path: Path, channels: tuple[str, ...]) -> tuple[EnvironmentSpec | None, Lock | None]:
    """A spec (``environment.yaml``) or a lock (``conda-lock.yml``), told apart by content."""
    text = path.read_text()
    check_size(text, MAX_LOCK_BYTES, str(path))
    try:
        check_yaml(text, str(path))
        data = yaml.load(text, Loader=yaml_loader())
    except yaml.YAMLError:
        data = None
    if isinstance(data, dict) and "version" in data and "package" in data:
        if channels:
            raise SpecError("--channel cannot change a lockfile: it is built exactly as locked")
        return None, parse_conda_lock_yaml(text)
    spec = parse_spec(text, source=str(path))
    if channels:
        spec = spec.with_channels(list(channels))
    return spec, None


channel_option = click.option(
    "--channel",
    "-c",
    "channels",
    multiple=True,
    help="Use these channels (URL, path or name) instead of the spec's; repeat for several.",
)


@click.command("lock")
@click.argument("spec_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--platform",
    "-p",
    "platforms",
    multiple=True,
    help="Lock for this platform (repeatable); default: the spec's, else this machine's.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write conda-lock.yml here instead of standard output.",
)
@channel_option
@data_dir_option
@config_option
@reports_errors
def lock_command(
    spec_file: Path,
    platforms: tuple[str, ...],
    output: Path | None,
    channels: tuple[str, ...],
    data_dir: Path | None,
    config_file: Path | None,
) -> None:
    """Solve SPEC_FILE and print its conda-lock.yml (no install)."""
    settings = settings_from(config_file, data_dir=data_dir, channel_gate=LOCAL_GATE)
    spec, _ = read_input(spec_file, channels)
    if spec is None:
        raise SpecError(f"{spec_file} is already a lockfile")
    lock = solver_for(settings).solve(spec, list(platforms) or None)
    text = conda_lock_yml(spec, lock)
    if output:
        output.write_text(text)
        click.echo(
            f"locked {spec.name} for {', '.join(lock.platforms)}: "
            f"lock hash {lock.lock_hash} -> {output}",
            err=True,
        )
    else:
        click.echo(text, nl=False)


@click.command("build")
@click.argument("spec_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--platform",
    "-p",
    "platforms",
    multiple=True,
    help="Lock for these platforms; the prefix is installed for this machine's.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option(
    "--tarball/--no-tarball",
    default=None,
    help="Also write a conda-pack tarball (default on; env CONDASTORE_TARBALL).",
)
@channel_option
@data_dir_option
@config_option
@reports_errors
def build_command(
    spec_file: Path,
    platforms: tuple[str, ...],
    as_json: bool,
    tarball: bool | None,
    channels: tuple[str, ...],
    data_dir: Path | None,
    config_file: Path | None,
) -> None:
    """Build SPEC_FILE (an environment.yaml or a conda-lock.yml) on this machine."""
    settings = settings_from(
        config_file, data_dir=data_dir, tarball=tarball, channel_gate=LOCAL_GATE
    )
    # Deferred: only building needs the installer, the packer and the blob store.
    from condastore_core.builds import LocalBuilder
    from condastore_core.store import open_store

    spec, lock = read_input(spec_file, channels)
    store = open_store(settings.resolved_store_url)
    builder = LocalBuilder(
        settings.data_dir,
        store,
        solver_for(settings),
        tarball=settings.tarball,
        isolation=LOCAL_ISOLATION,
    )
    result = builder.build(
        spec, lock=lock, platforms=list(platforms) or None, reporter=StreamReporter()
    )
    data = result.to_json(store)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    click.echo(f"build key   {result.build_key}{'  (reused)' if result.reused else ''}")
    click.echo(f"spec hash   {result.spec_hash}")
    click.echo(f"lock hash   {result.lock_hash}")
    click.echo(f"prefix      {result.prefix or '-'}")
    artifacts: dict[str, Any] = data["artifacts"]  # type: ignore[assignment]
    for kind, info in artifacts.items():
        click.echo(f"{kind:<11} {info['digest']}  {info['size']:>10}  {info['path'] or ''}")
