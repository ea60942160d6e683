"""The ``condastore`` command: one click group, commands in one module per family."""

from __future__ import annotations

import click

from condastore_web.cli.accounts import login, logout, token_group, user_group
from condastore_web.cli.gc import gc_command
from condastore_web.cli.keys import keys_group
from condastore_web.cli.local import build_command, lock_command
from condastore_web.cli.push import push_command
from condastore_web.cli.remote import build_group, download, env_group
from condastore_web.cli.serve import serve_command
from condastore_web.cli.worker import worker_command


class BuildGroup(click.Group):
    """``build SPEC`` builds on this machine; ``build list|show|log|...`` ask a server."""

    def resolve_command(self, ctx, args):  # type: ignore[no-untyped-def]
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["local", *args]
        return super().resolve_command(ctx, args)


build = BuildGroup(
    "build",
    commands={**build_group.commands, "local": build_command},
    help="Build SPEC on this machine (`condastore build SPEC`), or manage a server's builds.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="condastore")
def main() -> None:
    """condastore: environments solved, locked, built once and served in every form."""


main.add_command(lock_command)
main.add_command(build)
main.add_command(serve_command)
main.add_command(push_command)
main.add_command(gc_command)
main.add_command(worker_command)
main.add_command(env_group)
main.add_command(download)
main.add_command(user_group)
main.add_command(login)
main.add_command(logout)
main.add_command(token_group)
main.add_command(keys_group)
