"""Pieces every command shares: settings from flags, error reporting."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from condastore_core.errors import CondastoreError
from condastore_core.settings import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])


def data_dir_option(f: F) -> F:
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Where builds, blobs and the database live (default: the platform's data dir; "
        "env CONDASTORE_DATA_DIR).",
    )(f)


def config_option(f: F) -> F:
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        help="A TOML config file (env CONDASTORE_CONFIG).",
    )(f)


def settings_from(config_file: Path | None, **overrides: Any) -> Settings:
    return load_settings(overrides, config_file=config_file)


def reports_errors(f: F) -> F:
    """Print a condastore error as one clear message, without a traceback, and exit non-zero.

    1 for most errors; a server's answer picks its own (``client.ApiError.exit_code``:
    3 not found, 4 not allowed, 5 conflict), so scripts can tell them apart.
    """

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except CondastoreError as exc:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(getattr(exc, "exit_code", 1))

    return wrapper  # type: ignore[return-value]


def read_password(password_stdin: bool, confirm: bool) -> str:
    """The first line of standard input (for scripts), else a hidden prompt."""
    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=confirm)
