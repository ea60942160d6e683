"""Digests in the OCI form ``algorithm:hex``: parsing, validation and streaming hashers."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from condastore_core.errors import InvalidDigest

#: Algorithms we accept, with the exact hex length of each. sha256 is the default.
ALGORITHMS = {"sha256": 64, "sha512": 128}
DEFAULT_ALGORITHM = "sha256"

_HEX = re.compile(r"^[a-f0-9]+$")


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @classmethod
    def parse(cls, value: str) -> Digest:
        """Parse and validate; rejects anything that could escape a path or key."""
        algorithm, sep, hexpart = value.partition(":")
        if not sep or algorithm not in ALGORITHMS:
            raise InvalidDigest(f"unsupported or malformed digest: {value!r}")
        if len(hexpart) != ALGORITHMS[algorithm] or not _HEX.match(hexpart):
            raise InvalidDigest(f"malformed {algorithm} digest: {value!r}")
        return cls(algorithm, hexpart)


def new_hasher(algorithm: str = DEFAULT_ALGORITHM) -> hashlib._Hash:
    if algorithm not in ALGORITHMS:
        raise InvalidDigest(f"unsupported digest algorithm: {algorithm!r}")
    return hashlib.new(algorithm)


def digest_bytes(data: bytes, algorithm: str = DEFAULT_ALGORITHM) -> Digest:
    return Digest(algorithm, hashlib.new(algorithm, data).hexdigest())
