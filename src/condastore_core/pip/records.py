"""Locked pip packages: one wheel per project and platform, named by URL and sha256.

A :class:`PipPackage` is what conda-lock writes for ``manager: pip``: name,
version, the one archive's URL, its sha256 and the names it depends on. The
lock hash covers these fields (tagged ``manager: pip`` so they never read as a
conda record), and only when a lock has pip packages: locks without them keep
their hashes.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def canonical_name(name: str) -> str:
    """PEP 503 normalised project name (``Foo_Bar`` -> ``foo-bar``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


class PipPackage(BaseModel):
    """One locked wheel."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    url: str
    sha256: str
    #: Names of the pip packages this one requires (conda-lock's ``dependencies``).
    depends: tuple[str, ...] = ()

    @field_validator("sha256")
    @classmethod
    def _check_sha256(cls, v: str) -> str:
        v = v.lower()
        if not _SHA256.match(v):
            raise ValueError(f"not a sha256 hex digest: {v!r}")
        return v

    @property
    def file_name(self) -> str:
        return self.url.split("#", 1)[0].rsplit("/", 1)[-1]

    def dependency_map(self) -> dict[str, str]:
        """``depends`` as conda-lock stores them: name -> constraint (``*``: any)."""
        return {d: "*" for d in sorted(self.depends)}

    def hashed_fields(self) -> dict[str, Any]:
        return {
            "manager": "pip",
            "name": self.name,
            "version": self.version,
            "url": self.url,
            "sha256": self.sha256,
            "depends": sorted(self.depends),
        }

    def requirement_line(self) -> str:
        """The line of a ``requirements.txt`` that installs exactly this wheel."""
        return f"{self.name} @ {self.url} --hash=sha256:{self.sha256}"
