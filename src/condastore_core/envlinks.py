"""Environment links in a shared environments directory: ``<namespace>/<environment>``.

Builds are installed once at ``.builds/<build key>`` (a conda prefix embeds its
path, so it never moves); what users, JupyterHub kernels and cron jobs name is
the link ``<namespace>/<environment>``, which points at the current build's
prefix. A link is switched by making a new one under a temporary name and
renaming it over the old (``rename`` is atomic on POSIX filesystems and NFS):
a reader sees the old build or the new one, never no link.

Permissions follow RBAC as far as a filesystem can: a namespace mapped to a
unix group gets a directory of that group with mode 2750 (members read, others
cannot even traverse it); an unmapped namespace is 0755. ``.builds`` is 0711:
anyone may reach a prefix whose key they know, nobody may list them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import uuid
from pathlib import Path

from condastore_core import layout
from condastore_core.errors import CondastoreError, ConfigError

GROUP_MODE = 0o2750
OPEN_MODE = 0o755
BUILDS_MODE = 0o711


class LinkError(CondastoreError):
    code = "ENVIRONMENT_LINK_FAILED"


def point(
    environments_dir: Path, namespace: str, name: str, build_key: str, group: str | None = None
) -> Path:
    """Make ``<namespace>/<name>`` point at ``build_key``'s prefix, atomically."""
    link = layout.environment_link(environments_dir, namespace, name)
    target = layout.environment_link_target(build_key)
    ensure_namespace_dir(environments_dir, namespace, group)
    staging = layout.staging_link(environments_dir, namespace, name, uuid.uuid4().hex[:12])
    try:
        os.symlink(target, staging)
        os.replace(staging, link)
    except IsADirectoryError:
        raise LinkError(f"{link} is a directory, not a link: remove it first") from None
    except OSError as exc:
        raise LinkError(f"cannot point {link} at build {build_key}: {exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
    return link


def remove(environments_dir: Path, namespace: str, name: str) -> None:
    """Remove ``<namespace>/<name>`` (the environment was deleted or has no build)."""
    link = layout.environment_link(environments_dir, namespace, name)
    if link.is_symlink():
        try:
            link.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise LinkError(f"cannot remove {link}: {exc}") from None


def current_key(environments_dir: Path, namespace: str, name: str) -> str | None:
    """The build key ``<namespace>/<name>`` points at, or None without a link."""
    try:
        target = os.readlink(layout.environment_link(environments_dir, namespace, name))
    except (FileNotFoundError, OSError):
        return None
    return Path(target).name


def linked_keys(environments_dir: Path) -> set[str]:
    """Build keys some environment link points at (what collection must never remove)."""
    keys: set[str] = set()
    if not environments_dir.is_dir():
        return keys
    for ns_dir in environments_dir.iterdir():
        if ns_dir.name.startswith(".") or not ns_dir.is_dir() or ns_dir.is_symlink():
            continue
        with contextlib.suppress(PermissionError):
            for entry in ns_dir.iterdir():
                if entry.is_symlink():
                    keys.add(Path(os.readlink(entry)).name)
    return keys


def ensure_builds_dir(environments_dir: Path) -> Path:
    """``.builds``, mode 0711 (installs may have made it first, with the umask's mode)."""
    builds = layout.shared_builds_dir(environments_dir)
    builds.mkdir(parents=True, exist_ok=True)
    info = builds.stat()
    if stat.S_IMODE(info.st_mode) != BUILDS_MODE and info.st_uid == os.geteuid():
        builds.chmod(BUILDS_MODE)
    return builds


def ensure_namespace_dir(environments_dir: Path, namespace: str, group: str | None) -> Path:
    """The namespace's directory, with the group and mode its mapping asks for."""
    ensure_builds_dir(environments_dir)
    path = layout.namespace_link_dir(environments_dir, namespace)
    path.mkdir(exist_ok=True)
    mode = GROUP_MODE if group else OPEN_MODE
    info = path.stat()
    try:
        if group is not None and _group_name(info.st_gid) != group:
            shutil.chown(path, group=group)
        if stat.S_IMODE(info.st_mode) != mode:
            path.chmod(mode)
    except LookupError:
        raise ConfigError(
            f"environments_groups maps namespace {namespace!r} to {group!r}, no such group"
        ) from None
    except PermissionError as exc:
        raise LinkError(
            f"cannot give {path} group {group} and mode {mode:o}: {exc} "
            "(the server needs to own it and belong to the group, or to run as root)"
        ) from None
    return path


def _group_name(gid: int) -> str | None:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None
