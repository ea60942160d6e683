"""Where token signing keys come from: the database, shared by every server, or one file.

Several servers behind a load balancer must accept each other's tokens, and
past one machine they share nothing but the database, Redis and the object
store. So by default the Ed25519 keys live in the database: the first process
to need one creates generation 1 (importing the key file an older installation
kept in its data directory, so its tokens stay valid), the newest generation
signs, and every generation still present verifies. Tokens name their key in
the JWT header (``kid``); a process that meets a key it does not know reloads
the ring once, which is how a rotation made elsewhere reaches it.

An administrator who prefers to hand the key to every machine as a secret
sets ``signing_key_path``: that file then is the only key.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import os
import threading
import time
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from condastore_core.db.models import SigningKey, as_utc, utcnow

#: A process looks for keys made elsewhere at most this often (seconds).
RELOAD_INTERVAL = 30.0
#: ... and, for a token naming a key it does not know, at most this often.
UNKNOWN_KID_INTERVAL = 1.0


class KeyRing(Protocol):
    def signing_key(self) -> tuple[str, Ed25519PrivateKey]:
        """The key new tokens are signed with, and its id."""
        ...

    def public_keys(self, kid: str | None) -> list[Ed25519PublicKey]:
        """Keys that may have signed a token naming ``kid`` (all of them for None)."""
        ...


def key_id(key: Ed25519PrivateKey) -> str:
    """A key's id: a digest of its public key, short and stable."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:12]).decode().rstrip("=")


def new_key_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def parse_key(pem: bytes, where: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{where} does not hold an Ed25519 private key")
    return key


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The key in ``path``; created on first use (exclusively, mode 0600), never replaced."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = new_key_pem()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race: use its key
            data = path.read_bytes()
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            data = pem
    return parse_key(data, str(path))


class FileKeyRing:
    """One key from a file every machine is given (``signing_key_path``)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._key: Ed25519PrivateKey | None = None

    def _load(self) -> Ed25519PrivateKey:
        if self._key is None:
            self._key = load_or_create_key(self._path)
        return self._key

    def signing_key(self) -> tuple[str, Ed25519PrivateKey]:
        key = self._load()
        return key_id(key), key

    def public_keys(self, kid: str | None) -> list[Ed25519PublicKey]:
        key = self._load()
        return [key.public_key()] if kid in (None, key_id(key)) else []


class DatabaseKeyRing:
    """Generations of keys in the ``signing_keys`` table, cached by this process."""

    def __init__(self, engine: Engine, legacy_key_file: Path | None = None) -> None:
        self._engine = engine
        self._legacy = legacy_key_file
        self._lock = threading.Lock()
        self._keys: dict[str, Ed25519PrivateKey] = {}
        self._current: tuple[str, Ed25519PrivateKey] | None = None
        self._loaded_at = -float("inf")

    def _reload(self) -> None:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(SigningKey.kid, SigningKey.private_pem).order_by(SigningKey.generation)
            ).all()
        if not rows:
            self._create_first()
            return self._reload()
        keys = {kid: parse_key(pem.encode(), f"signing key {kid}") for kid, pem in rows}
        self._keys = keys
        self._current = (rows[-1].kid, keys[rows[-1].kid])
        self._loaded_at = time.monotonic()

    def _create_first(self) -> None:
        if self._legacy is not None and self._legacy.is_file():
            pem = self._legacy.read_bytes()  # the key of an older installation: tokens survive
        else:
            pem = new_key_pem()
        _insert(self._engine, 1, pem)

    def _fresh(self, older_than: float) -> None:
        with self._lock:
            if time.monotonic() - self._loaded_at >= older_than:
                self._reload()

    def signing_key(self) -> tuple[str, Ed25519PrivateKey]:
        self._fresh(RELOAD_INTERVAL)
        assert self._current is not None
        return self._current

    def public_keys(self, kid: str | None) -> list[Ed25519PublicKey]:
        self._fresh(RELOAD_INTERVAL)
        if kid is not None and kid not in self._keys:
            self._fresh(UNKNOWN_KID_INTERVAL)  # rotated elsewhere since we last looked?
        if kid is None:
            return [k.public_key() for k in self._keys.values()]
        key = self._keys.get(kid)
        return [key.public_key()] if key is not None else []

    def rotate(self, keep_for: dt.timedelta) -> str:
        """Make a new key the signing one; drop keys whose tokens have all expired.

        A key is dropped once its successor has signed for longer than ``keep_for``
        (the longest a token may live): every token it signed has expired by then.
        """
        pem = new_key_pem()
        with self._engine.connect() as conn:
            newest = conn.scalar(
                select(SigningKey.generation).order_by(SigningKey.generation.desc()).limit(1)
            )
        _insert(self._engine, (newest or 0) + 1, pem)
        self._prune(keep_for)
        with self._lock:
            self._reload()
            assert self._current is not None
            return self._current[0]  # ours, or the one a concurrent rotation made

    def _prune(self, keep_for: dt.timedelta) -> None:
        cutoff = utcnow() - keep_for
        with self._engine.begin() as conn:
            rows = conn.execute(
                select(SigningKey.generation, SigningKey.created_at).order_by(SigningKey.generation)
            ).all()
            expired = [
                older.generation
                for older, newer in itertools.pairwise(rows)
                if as_utc(newer.created_at) < cutoff
            ]
            if expired:
                conn.execute(delete(SigningKey).where(SigningKey.generation.in_(expired)))


def _insert(engine: Engine, generation: int, pem: bytes) -> None:
    """Add a generation; if another process added it first, theirs stands."""
    kid = key_id(parse_key(pem, "signing key"))
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(SigningKey),
                {
                    "generation": generation,
                    "kid": kid,
                    "private_pem": pem.decode(),
                    "created_at": utcnow(),
                },
            )
    except IntegrityError:
        pass
