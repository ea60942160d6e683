"""``condastore kernels``: Jupyter kernels for the environments of a shared directory.

The server says which environments the logged-in user may read (the API's
list, filtered by RBAC); the shared ``environments_dir`` says which of them
hold ``ipykernel`` and where. A kernelspec names the environment's link, not
its build, so a kernel started after a new build or a rollback runs the
environment's current build without writing the kernelspecs again.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from condastore_core import layout
from condastore_web.cli.common import reports_errors, settings_from
from condastore_web.cli.output import emit_json, table

KERNEL_PREFIX = "condastore-"
#: A kernelspec made here says so, and only such kernelspecs are ever replaced or removed.
MARKER = "condastore"


@dataclass(frozen=True)
class Kernel:
    namespace: str
    environment: str
    build_key: str | None
    prefix: Path

    @property
    def name(self) -> str:
        return f"{KERNEL_PREFIX}{self.namespace}-{self.environment}"

    def spec(self) -> dict[str, Any]:
        python = self.prefix / "bin" / "python"
        return {
            "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"{self.namespace}/{self.environment}",
            "language": "python",
            # jupyter_client expands ${PATH} from the server's environment.
            "env": {"CONDA_PREFIX": str(self.prefix), "PATH": f"{self.prefix / 'bin'}:${{PATH}}"},
            "metadata": {MARKER: {"namespace": self.namespace, "environment": self.environment}},
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "environment": self.environment,
            "build_key": self.build_key,
            "prefix": str(self.prefix),
        }


def default_kernels_dir() -> Path:
    """The user's Jupyter kernels directory (``$JUPYTER_DATA_DIR/kernels`` when set)."""
    data = os.environ.get("JUPYTER_DATA_DIR") or str(Path.home() / ".local/share/jupyter")
    return Path(data) / "kernels"


def has_ipykernel(prefix: Path) -> bool:
    """Whether the prefix has the package ``ipykernel`` (its conda-meta record)."""
    for record in (prefix / "conda-meta").glob("ipykernel-*.json"):
        if record.name.removesuffix(".json").rsplit("-", 2)[0] == "ipykernel":
            return True
    return False


def readable_environments(client: Any) -> list[dict[str, Any]]:
    """Every environment the server lets this user read, all pages."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.get("/environments", cursor=cursor, limit=200)
        items.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return items


def find_kernels(environments_dir: Path, environments: list[dict[str, Any]]) -> list[Kernel]:
    kernels = []
    for env in environments:
        try:
            link = layout.environment_link(environments_dir, env["namespace"], env["name"])
        except (ValueError, KeyError, TypeError):
            continue  # not a name this directory can hold: never a path out of it
        if env.get("current_build_id") is None or not has_ipykernel(link):
            continue
        kernels.append(Kernel(env["namespace"], env["name"], env.get("current_build_key"), link))
    return sorted(kernels, key=lambda k: k.name)


def install(kernels: list[Kernel], target: Path) -> list[str]:
    """Write the kernelspecs and remove ours for environments no longer listed; returns
    the names removed."""
    target.mkdir(parents=True, exist_ok=True)
    wanted = {k.name for k in kernels}
    for kernel in kernels:
        directory = target / kernel.name
        if directory.is_symlink() or (directory.exists() and not _ours(directory)):
            raise click.ClickException(f"{directory} exists and was not made by condastore")
        directory.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".kernel-")
        with os.fdopen(fd, "w") as f:
            json.dump(kernel.spec(), f, indent=2, sort_keys=True)
        os.replace(tmp, directory / "kernel.json")
    removed = []
    for directory in sorted(target.glob(f"{KERNEL_PREFIX}*")):
        if directory.name not in wanted and not directory.is_symlink() and _ours(directory):
            shutil.rmtree(directory)
            removed.append(directory.name)
    return removed


def _ours(directory: Path) -> bool:
    try:
        spec = json.loads((directory / "kernel.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(spec, dict) and MARKER in (spec.get("metadata") or {})


@click.command("kernels")
@click.option(
    "--install",
    "install_dir",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="DIR",
    help="Write the kernelspecs into DIR (alone: the user's Jupyter kernels directory).",
)
@click.option(
    "--environments-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="The shared environments directory (env CONDASTORE_ENVIRONMENTS_DIR).",
)
@click.option("--url", envvar="CONDASTORE_URL", help="Server URL (env CONDASTORE_URL).")
@click.option("--token", envvar="CONDASTORE_TOKEN", help="API token (env CONDASTORE_TOKEN).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@reports_errors
def kernels_command(install_dir, environments_dir, url, token, as_json):  # type: ignore[no-untyped-def]
    """Jupyter kernels of every environment you may read that has ipykernel."""
    from condastore_web.cli.client import ApiClient

    shared = environments_dir or settings_from(None).environments_dir
    if shared is None:
        raise click.UsageError(
            "no environments directory: pass --environments-dir or set "
            "CONDASTORE_ENVIRONMENTS_DIR to the server's environments_dir"
        )
    kernels = find_kernels(Path(shared), readable_environments(ApiClient(url, token)))
    removed: list[str] = []
    if install_dir is not None:
        target = Path(install_dir) if install_dir else default_kernels_dir()
        removed = install(kernels, target)
    if as_json:
        emit_json({"kernels": [k.to_json() for k in kernels], "removed": removed})
        return
    table(
        [(k.name, f"{k.namespace}/{k.environment}", k.build_key, k.prefix) for k in kernels],
        ["kernel", "environment", "build", "prefix"],
    )
    if install_dir is not None:
        click.echo(f"{len(kernels)} kernelspecs written, {len(removed)} removed")
