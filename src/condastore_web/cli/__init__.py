"""The ``condastore`` command: one click group, commands in one module per family."""

from __future__ import annotations

import click

from condastore_web.cli.local import build_command, lock_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="condastore")
def main() -> None:
    """condastore: environments solved, locked, built once and served in every form."""


main.add_command(lock_command)
main.add_command(build_command)
