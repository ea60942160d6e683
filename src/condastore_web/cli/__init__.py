"""The ``condastore`` command: one click group, commands in one module per family.

Commands are listed here by where they live and their one-line help; a
command's module is imported only when that command runs (see ``lazy.py``),
so ``condastore env list`` never pays for the server stack or the solver.
The one-line helps must match the commands' own docstrings: a test checks.
"""

from __future__ import annotations

import click

from condastore_core import __version__
from condastore_web.cli.lazy import LazyCommand, LazyGroup

_CLI = "condastore_web.cli"


class BuildGroup(LazyGroup):
    """``build SPEC`` builds on this machine; ``build list|show|log|...`` ask a server."""

    def resolve_command(self, ctx, args):  # type: ignore[no-untyped-def]
        if args and args[0] not in self.lazy and not args[0].startswith("-"):
            args = ["local", *args]
        return super().resolve_command(ctx, args)


build = BuildGroup(
    "build",
    lazy={
        "local": LazyCommand(
            f"{_CLI}.local:build_command",
            "Build SPEC_FILE (an environment.yaml or a conda-lock.yml) on this machine.",
        ),
        "list": LazyCommand(f"{_CLI}.remote:build_list", "List builds, newest first."),
        "show": LazyCommand(f"{_CLI}.remote:build_show", "Show one build and its artifacts."),
        "log": LazyCommand(f"{_CLI}.remote:build_log", "Print a build's log."),
        "watch": LazyCommand(
            f"{_CLI}.remote:build_watch",
            "Show a build's progress until its final state; exit 1 unless it completed.",
        ),
        "cancel": LazyCommand(f"{_CLI}.remote:build_cancel", "Cancel a queued or running build."),
        "rebuild": LazyCommand(
            f"{_CLI}.remote:build_rebuild", "Queue a new build of the same spec."
        ),
        "pack": LazyCommand(
            f"{_CLI}.remote:build_pack",
            "Make a completed build's conda-pack tarball again (after its packing failed).",
        ),
    },
    help="Build SPEC on this machine (`condastore build SPEC`), or manage a server's builds.",
)

COMMANDS = {
    "lock": LazyCommand(
        f"{_CLI}.local:lock_command", "Solve SPEC_FILE and print its conda-lock.yml (no install)."
    ),
    "serve": LazyCommand(
        f"{_CLI}.serve:serve_command",
        "Serve the API, the web UI and the registry: SQLite and a local store unless configured.",
    ),
    "push": LazyCommand(
        f"{_CLI}.push:push_command",
        "Copy NS/ENV[:KEY] (image and artifacts) to REGISTRY/REPO:TAG.",
    ),
    "gc": LazyCommand(
        f"{_CLI}.gc:gc_command",
        "Collect old builds and free the blobs nothing references (on the server's data).",
    ),
    "worker": LazyCommand(
        f"{_CLI}.worker:worker_command",
        "Run builds from Redis (needs CONDASTORE_REDIS_URL); start as many as you like.",
    ),
    "env": LazyCommand(f"{_CLI}.remote:env_group", "Manage environments on a condastore server."),
    "download": LazyCommand(
        f"{_CLI}.remote:download",
        "Download an artifact of NAMESPACE/NAME's current build (or of --build).",
    ),
    "user": LazyCommand(
        f"{_CLI}.users:user_group",
        "Manage users: `add` in the server's database (where its data lives), the rest by API.",
    ),
    "namespace": LazyCommand(
        f"{_CLI}.manage:namespace_group", "Namespaces on a condastore server: list, create, delete."
    ),
    "role-binding": LazyCommand(
        f"{_CLI}.manage:role_binding_group",
        "Role bindings: who may read, write or administer which namespaces.",
    ),
    "package": LazyCommand(
        f"{_CLI}.manage:package_group", "Packages in the channels a server may use."
    ),
    "login": LazyCommand(
        f"{_CLI}.accounts:login", "Log in and keep the token so later commands are authenticated."
    ),
    "logout": LazyCommand(f"{_CLI}.accounts:logout", "Revoke the saved token and forget it."),
    "token": LazyCommand(
        f"{_CLI}.accounts:token_group", "API tokens for scripts, CI jobs and notebooks."
    ),
    "channels": LazyCommand(
        f"{_CLI}.channels:channels_group",
        "Channels of the installation (run where the server's data or Redis is reachable).",
    ),
    "kernels": LazyCommand(
        f"{_CLI}.kernels:kernels_command",
        "Jupyter kernels of every environment you may read that has ipykernel.",
    ),
    "keys": LazyCommand(
        f"{_CLI}.keys:keys_group",
        "Token signing keys (run where the server's database is reachable).",
    ),
}


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, package_name="condastore")
def main() -> None:
    """condastore: environments solved, locked, built once and served in every form."""


main.add_command(build)
