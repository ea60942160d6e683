"""Environment policies, set by admins and inherited global -> namespace -> environment.

A level sets only what it overrides; :func:`merge` folds them. :func:`apply`
checks a spec against the merged policy and returns the spec with default
packages added, or raises :class:`PolicyViolation` naming the rule it breaks.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from rattler import MatchSpec

from condastore_core.channels import DEFAULT_CHANNEL_ALIAS, channel_url
from condastore_core.errors import CondastoreError
from condastore_core.spec import EnvironmentSpec


class PolicyViolation(CondastoreError):
    code = "POLICY_VIOLATION"

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"policy '{rule}': {message}", detail={"rule": rule})
        self.rule = rule


class Policy(BaseModel):
    """One level's settings; None means "inherit"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_channels: tuple[str, ...] | None = None
    required_packages: tuple[str, ...] | None = None
    default_packages: tuple[str, ...] | None = None
    allowed_platforms: tuple[str, ...] | None = None
    max_builds_kept: int | None = Field(default=None, ge=1)
    #: Completed builds younger than this are kept whatever ``max_builds_kept`` says.
    keep_days: float | None = Field(default=None, ge=0)


def merge(*levels: Policy | None) -> Policy:
    """Later levels override earlier ones, field by field."""
    merged: dict[str, Any] = {}
    for level in levels:
        if level is not None:
            merged.update(level.model_dump(exclude_none=True))
    return Policy(**merged)


def apply(
    spec: EnvironmentSpec,
    policy: Policy,
    *,
    default_channels: tuple[str, ...] = ("conda-forge",),
    channel_alias: str = DEFAULT_CHANNEL_ALIAS,
) -> EnvironmentSpec:
    if policy.allowed_channels is not None:
        allowed = {channel_url(c, channel_alias) for c in policy.allowed_channels}
        for channel in spec.channels or default_channels:
            if channel_url(channel, channel_alias) not in allowed:
                raise PolicyViolation(
                    "allowed_channels",
                    f"channel {channel!r} is not allowed here; allowed: "
                    + ", ".join(policy.allowed_channels),
                )
    if policy.allowed_platforms is not None:
        for platform in spec.platforms:
            if platform not in policy.allowed_platforms:
                raise PolicyViolation(
                    "allowed_platforms",
                    f"platform {platform!r} is not allowed here; allowed: "
                    + ", ".join(policy.allowed_platforms),
                )
    names = {MatchSpec(d).name.normalized for d in spec.dependencies}
    for required in policy.required_packages or ():
        if MatchSpec(required).name.normalized not in names:
            raise PolicyViolation("required_packages", f"the spec must include {required!r}")
    extra = [d for d in policy.default_packages or () if MatchSpec(d).name.normalized not in names]
    if extra:
        spec = EnvironmentSpec.from_dict(
            {**spec.model_dump(), "dependencies": [*spec.dependencies, *extra]}
        )
    return spec
