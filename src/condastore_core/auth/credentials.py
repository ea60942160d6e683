"""Recently verified HTTP Basic credentials and recent failures, in this process's memory.

scrypt makes a password check cost ~100 ms on purpose; HTTP Basic clients send
the password with every request, so checking it each time would cap a client
at ~10 requests per second per core. :class:`VerifiedCredentials` remembers a
verified (user, password) pair for a short while. It never holds a password:
entries are keyed by an HMAC of the pair under a random key drawn when the
process starts, so the cache's contents are worthless outside it.

An entry also carries a stamp of the user's stored password hash. The caller
reads the user's row on every request anyway (to build the principal) and
compares stamps, so a password change or a disabled account takes effect at
once in every process, whatever the entry's age; the short lifetime bounds
how long anything else (another identity backend's decision) is trusted.

:class:`FailureThrottle` counts failed checks per user and per address in a
sliding window; past the limit the caller refuses before running scrypt and
says when to come back. It is per process: with several processes, the
limit holds in each of them.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True)
class _Entry:
    user: str
    stamp: bytes
    expires: float


class VerifiedCredentials:
    """A bounded, short-lived map of HMAC(name, secret) -> (user, password stamp)."""

    def __init__(
        self, ttl_seconds: float = 60.0, max_entries: int = 10_000, clock: Clock = time.monotonic
    ) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def key(self, name: str, secret: str) -> bytes:
        # The length prefix keeps ("a:b", "c") and ("a", "b:c") apart.
        message = f"{len(name)}:{name}:{secret}".encode()
        return hmac.digest(self._key, message, hashlib.sha256)

    def stamp(self, password_hash: str | None) -> bytes:
        """What the entry is checked against: changes whenever the stored hash does."""
        return hmac.digest(self._key, (password_hash or "").encode(), hashlib.sha256)

    def get(self, key: bytes) -> tuple[str, bytes] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires <= self._clock():
                del self._entries[key]
                return None
            return entry.user, entry.stamp

    def put(self, key: bytes, user: str, stamp: bytes) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = _Entry(user, stamp, self._clock() + self.ttl)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)  # the oldest first

    def drop(self, key: bytes) -> None:
        with self._lock:
            self._entries.pop(key, None)


class FailureThrottle:
    """At most ``limit`` failures per key within ``window`` seconds."""

    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        max_keys: int = 100_000,
        clock: Clock = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str, limit: int | None = None) -> int | None:
        """Seconds until ``key`` may try again, or None when it may now."""
        limit = self.limit if limit is None else limit
        if limit <= 0:
            return None
        with self._lock:
            times = self._failures.get(key)
            if times is None:
                return None
            self._expire(times, self._clock())
            if len(times) < limit:
                return None
            return max(1, math.ceil(times[-limit] + self.window - self._clock()))

    def record(self, key: str) -> None:
        now = self._clock()
        with self._lock:
            times = self._failures.setdefault(key, deque())
            times.append(now)
            if len(times) > 1000:  # more is never needed to answer retry_after
                times.popleft()
            if len(self._failures) > self.max_keys:
                for stale in [k for k, t in self._failures.items() if not self._expire(t, now)]:
                    del self._failures[stale]

    def _expire(self, times: deque[float], now: float) -> int:
        while times and times[0] <= now - self.window:
            times.popleft()
        return len(times)
