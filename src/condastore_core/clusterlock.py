"""Locks that serialise work across every process of an installation, on any machine.

Past one machine, servers and workers share nothing but PostgreSQL, Redis and
the object store, so a lock that serialises work (the build of a lock hash,
the assembly of an image, a layer job, a garbage collection round) must live
in one of them:

- PostgreSQL: a session advisory lock on a connection held for the block; the
  server drops it when the holder's connection does, however the holder died.
- Redis (with a SQLite database): ``SET NX`` with a lease renewed by a thread
  while the block runs; a holder that died loses it when the lease runs out.
- neither (the embedded, single-machine setup): a ``flock`` in the data directory.

:func:`cluster_locks` picks one from the settings; callers only see
:class:`ClusterLocks`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, text

from condastore_core import layout

logger = logging.getLogger(__name__)

#: How often a waiting holder tries again (and calls its ``waiting`` callback).
POLL_SECONDS = 0.1


class ClusterLocks(Protocol):
    def hold(
        self, name: str, *, waiting: Callable[[], None] | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """Hold lock ``name`` for the block, waiting for it; ``waiting`` is called while
        waiting (it may raise to give up, a canceled build say)."""

    def try_hold(self, name: str) -> contextlib.AbstractContextManager[bool]:
        """Hold lock ``name`` for the block if nobody does; yields whether it is held."""


class _PollingLocks:
    """Waiting by polling a non-blocking acquire, so a waiter can be told to give up."""

    def _acquire(self, name: str) -> Any | None:
        raise NotImplementedError

    def _release(self, handle: Any) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def hold(self, name: str, *, waiting: Callable[[], None] | None = None) -> Iterator[None]:
        while (handle := self._acquire(name)) is None:
            if waiting is not None:
                waiting()
            time.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            self._release(handle)

    @contextlib.contextmanager
    def try_hold(self, name: str) -> Iterator[bool]:
        handle = self._acquire(name)
        try:
            yield handle is not None
        finally:
            if handle is not None:
                self._release(handle)


class FileLocks(_PollingLocks):
    """``flock`` on ``<data_dir>/locks/<name>.lock``: one machine only."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def _acquire(self, name: str) -> Any | None:
        path = layout.lock_file_path(self.data_dir, _safe(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def _release(self, handle: Any) -> None:
        fcntl.flock(handle, fcntl.LOCK_UN)
        os.close(handle)


class PostgresLocks(_PollingLocks):
    """Session advisory locks, keyed by the first 8 bytes of the name's sha256."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _acquire(self, name: str) -> Any | None:
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": advisory_key(name)}
            ).scalar()
        except Exception:
            conn.close()
            raise
        if not got:
            conn.close()
            return None
        return conn, name

    def _release(self, handle: Any) -> None:
        conn, name = handle
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": advisory_key(name)})
        except Exception:  # the lock goes with the connection: make sure it is not reused
            logger.warning("could not release cluster lock %s", name, exc_info=True)
            conn.invalidate()
        finally:
            conn.close()


#: Extend a lease only if it is still ours; delete only if it is still ours.
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"  # noqa: E501
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"  # noqa: E501


class RedisLocks(_PollingLocks):
    """``SET NX PX`` with a lease, renewed every third of it while the block runs."""

    def __init__(self, redis: Any, lease_seconds: float = 30.0) -> None:
        self.redis = redis
        self.lease_ms = max(1000, int(lease_seconds * 1000))

    def _acquire(self, name: str) -> Any | None:
        key, token = layout.cluster_lock_key(name), uuid.uuid4().hex
        if not self.redis.set(key, token, nx=True, px=self.lease_ms):
            return None
        stop = threading.Event()
        thread = threading.Thread(
            target=self._renew, args=(key, token, stop), name=f"lease-{name}", daemon=True
        )
        thread.start()
        return key, token, stop, thread

    def _renew(self, key: str, token: str, stop: threading.Event) -> None:
        while not stop.wait(self.lease_ms / 3000):
            try:
                if not self.redis.eval(_RENEW, 1, key, token, self.lease_ms):
                    logger.warning("cluster lock %s was lost (its lease ran out)", key)
                    return
            except Exception:  # retried at the next beat; the lease covers several
                logger.warning("renewing cluster lock %s failed", key, exc_info=True)

    def _release(self, handle: Any) -> None:
        key, token, stop, thread = handle
        stop.set()
        thread.join()
        try:
            self.redis.eval(_RELEASE, 1, key, token)
        except Exception:  # the lease ends it
            logger.warning("could not release cluster lock %s", key, exc_info=True)


def advisory_key(name: str) -> int:
    """A signed 64-bit PostgreSQL advisory lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _safe(name: str) -> str:
    """A file name for a lock name: readable where it can be, unique always."""
    readable = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:80]
    return f"{readable}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def cluster_locks(
    engine: Engine, data_dir: Path, redis_url: str | None, lease_seconds: float = 30.0
) -> ClusterLocks:
    """PostgreSQL's advisory locks, else Redis leases, else file locks (one machine)."""
    if engine.dialect.name == "postgresql":
        return PostgresLocks(engine)
    if redis_url:
        from redis import Redis

        return RedisLocks(Redis.from_url(redis_url), lease_seconds)
    return FileLocks(data_dir)
