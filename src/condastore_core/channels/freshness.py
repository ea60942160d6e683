"""How fresh each channel's repodata is, shared by every process of an installation.

rattler keeps two caches of a channel: on disk (``<data_dir>/repodata-cache``,
with the server's ``ETag``, ``Last-Modified`` and ``Cache-Control`` beside each
file; a stale copy is revalidated with ``If-None-Match``, and a ``304`` keeps
it) and in the memory of its ``Gateway``, which it never drops on its own. A
long-lived process therefore solved against the repodata of its first solve
forever. This module decides, before each solve, which channels a process must
drop from memory so rattler reads them again through its disk cache, and with
it the HTTP caching rules:

* ``local_repodata_ttl = 1`` (default, as conda): honour the server. Memory is
  dropped before every solve; rattler's disk cache asks the server again once
  its ``max-age`` is over (and not before), conditionally.
* ``local_repodata_ttl = 0``: revalidate before every solve. As above, and a
  server that sent no ``max-age`` is asked every time (a ``304`` keeps the copy).
* ``local_repodata_ttl = N`` seconds: keep a channel for N seconds after any
  process of the installation last revalidated it, then read it again.
* ``file://`` channels are read again when a repodata file's mtime changes.

The record of when a channel was last revalidated, and when an administrator
last asked for a refresh (``condastore channels refresh``), lives in Redis when
the installation has one (every machine), else in a file of the data directory
(every process of this machine). A refresh also clears the disk cache, so the
next solve fetches the channel in full whatever the server's ``max-age``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from condastore_core import layout
from condastore_core.locks import file_lock

#: ``local_repodata_ttl`` values with a meaning of their own (conda's).
ALWAYS_REVALIDATE = 0
HONOUR_SERVER = 1
_REPODATA_FILES = ("repodata.json", "repodata_shards.msgpack.zst", "repodata.json.zst")


@dataclass(frozen=True)
class ChannelState:
    """What every process knows of one channel (epoch seconds; 0 for never)."""

    validated_at: float = 0.0
    refresh_requested_at: float = 0.0


class FreshnessRecord(Protocol):
    """Where the shared :class:`ChannelState` of each channel is kept."""

    def read(self, channels: Iterable[str]) -> dict[str, ChannelState]: ...

    def validated(self, channel: str, at: float) -> None: ...

    def refresh_requested(self, channels: Iterable[str], at: float) -> None: ...


class FileRecord:
    """The record in one JSON file, for the processes of one machine (no Redis)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def read(self, channels: Iterable[str]) -> dict[str, ChannelState]:
        data = self._load()
        return {c: _state(data.get(c)) for c in channels}

    def _update(self, channels: Iterable[str], key: str, at: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(self.path.with_suffix(".lock")):
            data = self._load()
            for channel in channels:
                entry = data.setdefault(channel, {})
                entry[key] = max(float(entry.get(key, 0)), at)
            staging = self.path.with_suffix(f".{os.getpid()}.tmp")
            staging.write_text(json.dumps(data, sort_keys=True))
            staging.replace(self.path)

    def validated(self, channel: str, at: float) -> None:
        self._update([channel], "validated_at", at)

    def refresh_requested(self, channels: Iterable[str], at: float) -> None:
        self._update(channels, "refresh_requested_at", at)


class RedisRecord:
    """The record in one Redis hash per field, for every machine of a cluster."""

    def __init__(self, redis: Any, url: str | None = None) -> None:
        self.redis = redis
        #: The server's URL, so a child process connects anew (a connection does not pickle).
        self.url = url

    def __reduce__(self) -> tuple[Any, ...]:
        if self.url is None:
            raise TypeError("a RedisRecord made without its URL cannot cross to another process")
        return (_redis_record, (self.url,))

    def read(self, channels: Iterable[str]) -> dict[str, ChannelState]:
        names = list(channels)
        if not names:
            return {}
        validated = self.redis.hmget(layout.CHANNEL_VALIDATED_KEY, names)
        requested = self.redis.hmget(layout.CHANNEL_REFRESH_KEY, names)
        return {
            c: ChannelState(float(v or 0), float(r or 0))
            for c, v, r in zip(names, validated, requested, strict=True)
        }

    def validated(self, channel: str, at: float) -> None:
        self.redis.hset(layout.CHANNEL_VALIDATED_KEY, channel, repr(at))

    def refresh_requested(self, channels: Iterable[str], at: float) -> None:
        mapping = {c: repr(at) for c in channels}
        if mapping:
            self.redis.hset(layout.CHANNEL_REFRESH_KEY, mapping=mapping)


def _redis_record(url: str) -> RedisRecord:
    from redis import Redis

    return RedisRecord(Redis.from_url(url), url=url)


def _state(entry: Any) -> ChannelState:
    if not isinstance(entry, dict):
        return ChannelState()
    try:
        return ChannelState(
            float(entry.get("validated_at", 0)), float(entry.get("refresh_requested_at", 0))
        )
    except (TypeError, ValueError):
        return ChannelState()


@dataclass(frozen=True)
class Decision:
    """What a process does with one channel before a solve."""

    #: Drop the channel from the gateway's memory (rattler then reads it through its disk cache).
    drop: bool = False
    #: Also drop rattler's disk copy (an administrator's refresh).
    drop_disk: bool = False


@dataclass
class Freshness:
    """One process's view: when it last read each channel, and the shared record.

    ``clock`` is injectable for tests; it returns epoch seconds.
    """

    record: FreshnessRecord
    ttl: int = HONOUR_SERVER
    clock: Any = time.time
    _read_at: dict[str, float] = field(default_factory=dict)
    _mtimes: dict[str, tuple[float, ...]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (for a solve in a child process) with this process's view, without its lock."""
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def before_solve(self, channels: Iterable[str], subdirs: Iterable[str]) -> dict[str, Decision]:
        """What to drop, per channel URL, so no solve uses repodata older than the TTL."""
        channels = list(dict.fromkeys(channels))
        subdirs = list(subdirs)
        now = self.clock()
        shared = self.record.read(channels)
        decisions = {}
        with self._lock:
            for channel in channels:
                decisions[channel] = self._decide(channel, subdirs, shared[channel], now)
        for channel, decision in decisions.items():
            if decision.drop and not channel.startswith("file:"):
                self.record.validated(channel, now)
        return decisions

    def _decide(
        self, channel: str, subdirs: list[str], state: ChannelState, now: float
    ) -> Decision:
        read_at = self._read_at.get(channel)
        self._read_at[channel] = now
        if read_at is not None and state.refresh_requested_at > read_at:
            self._mtimes.pop(channel, None)
            return Decision(drop=True, drop_disk=True)
        if channel.startswith("file:"):
            mtimes = _mtimes(channel, subdirs)
            changed = self._mtimes.get(channel) != mtimes
            self._mtimes[channel] = mtimes
            return Decision(drop=read_at is not None and changed)
        if read_at is None:
            return Decision()  # nothing of it in memory yet: rattler reads its disk cache
        if self.ttl in (ALWAYS_REVALIDATE, HONOUR_SERVER):
            return Decision(drop=True)
        if now - max(state.validated_at, read_at) >= self.ttl or state.validated_at > read_at:
            return Decision(drop=True)
        self._read_at[channel] = read_at  # kept: still within the TTL
        return Decision()

    def refresh(self, channels: Iterable[str]) -> None:
        """Ask every process to fetch ``channels`` again at their next solve."""
        self.record.refresh_requested(channels, self.clock())


def _mtimes(channel: str, subdirs: list[str]) -> tuple[float, ...]:
    root = Path(unquote(urlsplit(channel).path))
    stamps = []
    for subdir in subdirs:
        for name in _REPODATA_FILES:
            try:
                stamps.append(os.stat(root / subdir / name).st_mtime_ns / 1e9)
            except OSError:
                stamps.append(0.0)
    return tuple(stamps)


def record_for(data_dir: Path, redis_url: str | None) -> FreshnessRecord:
    """The shared record of an installation: Redis when it has one, else the data directory."""
    if redis_url:
        from redis import Redis

        return RedisRecord(Redis.from_url(redis_url), url=redis_url)
    return FileRecord(layout.channel_freshness_path(data_dir))
