"""Inter-process locks on files: one holder at a time on this machine, released on exit or crash."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def shared_file_lock(path: Path) -> Iterator[None]:
    """Hold a shared ``flock`` on ``path``: many holders at once, none beside an exclusive one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def try_file_lock(path: Path) -> Iterator[bool]:
    """Hold ``path``'s exclusive ``flock`` for the block if nobody else does; yields whether.

    ``path`` may be a directory (a scratch directory is locked by its holder).
    A missing ``path`` yields True: nothing holds what does not exist.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def claim_period(path: Path, seconds: float) -> bool:
    """True for one caller per ``seconds`` among the processes of this machine sharing ``path``.

    What Redis's ``SET NX EX`` gives a cluster, for processes without Redis (the
    workers of one gunicorn): the last claim's time is kept in ``path``.
    """
    with file_lock(path):
        try:
            last = float(path.read_text() or 0)
        except ValueError:
            last = 0.0
        now = time.time()
        if 0 <= now - last < seconds * 0.9:
            return False
        path.write_text(repr(now))
        return True
