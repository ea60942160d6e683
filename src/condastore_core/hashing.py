"""Canonical JSON and content hashes: the contract that names specs, locks and builds.

Any change to what goes into a hash is a breaking change: identical
environments would stop sharing their builds. Each hashed payload therefore
carries a scheme version, and the golden vectors in the tests pin the output.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: Bump only together with a migration story; it is part of every hashed payload.
HASH_SCHEME = 1


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` the one way we hash it: sorted keys, no whitespace, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_hash(kind: str, payload: Any) -> str:
    """sha256 of a typed, versioned, canonical payload.

    ``kind`` keeps a spec and a lock with coincidentally equal bodies apart.
    """
    return sha256_hex(canonical_json({"kind": kind, "scheme": HASH_SCHEME, "payload": payload}))
