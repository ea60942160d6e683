"""Environment specs (``environment.yaml``): parse, validate, canonicalise, hash.

A spec is parsed into :class:`EnvironmentSpec`, a strict model that rejects
unknown keys. Errors name the field and, when the input was YAML, the line.

The canonical form is what the spec hash covers (see DESIGN.md): dependencies
normalised by the match-spec parser and sorted, channel order kept (it decides
priority), ``variables`` kept, platforms sorted. Changing it is a breaking
change; the golden vectors in ``tests/core/test_spec.py`` pin it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    ValidationError,
    field_validator,
    model_validator,
)
from rattler import MatchSpec

from condastore_core.bounded import MAX_SPEC_BYTES, check_size, check_yaml, yaml_loader
from condastore_core.errors import SpecError
from condastore_core.hashing import content_hash

#: conda subdirs we can lock for.
KNOWN_PLATFORMS = frozenset(
    {
        "linux-64",
        "linux-aarch64",
        "linux-ppc64le",
        "linux-s390x",
        "osx-64",
        "osx-arm64",
        "win-64",
        "win-arm64",
        "noarch",
    }
)

#: Environment names must be usable as a directory name and as an OCI repository component.
NAME_PATTERN = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
MAX_NAME_LENGTH = 128
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def normalize_match_spec(text: str) -> str:
    stripped = text.strip()
    if not stripped:
        raise ValueError("empty dependency")
    try:
        return str(MatchSpec(stripped))
    except Exception as exc:  # rattler raises its own exception types
        raise ValueError(f"malformed match spec {stripped!r}: {exc}") from None


def normalize_pip_requirement(text: str) -> str:
    stripped = text.strip()
    if not stripped:
        raise ValueError("empty pip requirement")
    if stripped.startswith("-"):
        # pip options (--index-url, -e) pass through untouched: they are not requirements.
        return stripped
    # Deferred: few specs list pip packages, and packaging's parser takes ~20 ms to import.
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return str(Requirement(stripped))
    except InvalidRequirement as exc:
        raise ValueError(f"malformed pip requirement {stripped!r}: {exc}") from None


# Validated item by item, so an error points at the offending line.
CondaDependency = Annotated[str, AfterValidator(normalize_match_spec)]
PipRequirement = Annotated[str, AfterValidator(normalize_pip_requirement)]


def normalize_channel(channel: str) -> str:
    """``channel`` as the spec hash sees it: trailing slashes off, a URL's scheme and host
    lowercased, so one channel written two ways is one spec. Normal input is unchanged
    (the spec hash is a contract)."""
    text = channel.strip()
    if "://" in text:
        scheme, _, rest = text.partition("://")
        host, slash, path = rest.partition("/")
        text = f"{scheme.lower()}://{host.lower()}{slash}{path}"
    stripped = text.rstrip("/")
    if stripped.endswith(":") or stripped in ("", ".", "..", "~") or stripped.endswith("/."):
        return text  # a root (file:///, /) or a relative directory keeps its slash
    return stripped


class EnvironmentSpec(BaseModel):
    """A validated environment spec. Construct with :func:`parse_spec` or :meth:`from_dict`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    channels: tuple[str, ...] = ()
    dependencies: tuple[CondaDependency, ...]
    pip: tuple[PipRequirement, ...] = ()
    variables: dict[str, str] = {}
    platforms: tuple[str, ...] = ()
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if len(v) > MAX_NAME_LENGTH or not NAME_PATTERN.match(v):
            raise ValueError(
                f"invalid environment name {v!r}: use lowercase letters, digits and single "
                f"'.', '_' or '-' between them (at most {MAX_NAME_LENGTH} characters), so the "
                "name works as a directory and as an image name"
            )
        return v

    @field_validator("channels")
    @classmethod
    def _check_channels(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        seen = []
        for ch in v:
            ch = normalize_channel(ch)
            if not ch:
                raise ValueError("empty channel name")
            if ch in seen:
                raise ValueError(f"channel {ch!r} is listed twice")
            seen.append(ch)
        return tuple(seen)

    @field_validator("dependencies", mode="after")
    @classmethod
    def _check_dependencies(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("at least one conda dependency is required")
        return tuple(sorted(set(v)))

    @field_validator("pip", mode="after")
    @classmethod
    def _check_pip(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(v)))

    @field_validator("variables", mode="before")
    @classmethod
    def _check_variables(cls, v: Any) -> dict[str, str]:
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise ValueError("must be a mapping of NAME: value")
        out = {}
        for key, value in v.items():
            if not isinstance(key, str) or not _VARIABLE_NAME.match(key):
                raise ValueError(f"invalid variable name {key!r}")
            if isinstance(value, dict | list) or value is None:
                raise ValueError(f"variable {key!r} must be a string, number or boolean")
            out[key] = str(value).lower() if isinstance(value, bool) else str(value)
        return out

    @field_validator("platforms")
    @classmethod
    def _check_platforms(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for p in v:
            if p not in KNOWN_PLATFORMS or p == "noarch":
                raise ValueError(
                    f"unknown platform {p!r}; use one of "
                    + ", ".join(sorted(KNOWN_PLATFORMS - {"noarch"}))
                )
        return tuple(sorted(set(v)))

    @model_validator(mode="before")
    @classmethod
    def _split_pip(cls, data: Any) -> Any:
        """Accept conda's layout, where pip requirements hide in ``dependencies``."""
        if not isinstance(data, dict) or "pip" in data:
            return data
        deps = data.get("dependencies")
        if not isinstance(deps, list):
            return data
        conda, pip = [], []
        for item in deps:
            if isinstance(item, dict):
                if set(item) != {"pip"} or not isinstance(item["pip"], list):
                    raise ValueError("a mapping in dependencies may only be {pip: [...]}")
                pip.extend(item["pip"])
            else:
                conda.append(item)
        return {**data, "dependencies": conda, "pip": pip}

    @classmethod
    def from_dict(cls, data: Any) -> EnvironmentSpec:
        """Validate a mapping (for example a JSON API body) into a spec."""
        return _validate(data, lines=None)

    def canonical(self) -> dict[str, Any]:
        """The canonical form the spec hash covers."""
        return {
            "name": self.name,
            "channels": list(self.channels),
            "dependencies": list(self.dependencies),
            "pip": list(self.pip),
            "variables": dict(sorted(self.variables.items())),
            "platforms": list(self.platforms),
            "description": self.description,
        }

    @property
    def spec_hash(self) -> str:
        return content_hash("spec", self.canonical())

    def to_environment_yaml(self) -> dict[str, Any]:
        """The spec in conda's ``environment.yaml`` layout (our ``platforms`` extension kept)."""
        deps: list[Any] = list(self.dependencies)
        if self.pip:
            deps.append({"pip": list(self.pip)})
        out: dict[str, Any] = {"name": self.name, "channels": list(self.channels)}
        out["dependencies"] = deps
        if self.variables:
            out["variables"] = dict(self.variables)
        if self.platforms:
            out["platforms"] = list(self.platforms)
        if self.description:
            out["description"] = self.description
        return out

    def with_channels(self, channels: list[str]) -> EnvironmentSpec:
        return self.model_copy(update={"channels": tuple(channels)})


def parse_spec(text: str | bytes, source: str = "environment.yaml") -> EnvironmentSpec:
    """Parse YAML text into a spec; every error names the line and field it is about.

    The text is bounded first (:mod:`condastore_core.bounded`): too large a spec
    raises ``DocumentTooLarge``, anchors or too deep nesting ``DocumentRefused``.
    """
    check_size(text, MAX_SPEC_BYTES, source)
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise SpecError(f"{source} is not UTF-8 text") from None
    try:
        check_yaml(text, source)
        node, data = _load(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise SpecError(f"invalid YAML in {source}: {exc.problem}", line=line) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML in {source}: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{source} must be a mapping with name, channels and dependencies")
    return _validate(data, lines=_line_index(node))


def _load(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers) and the data of one checked YAML document."""
    loader = yaml_loader()(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def _validate(data: Any, lines: dict[tuple[Any, ...], int] | None) -> EnvironmentSpec:
    try:
        return EnvironmentSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc) or None
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}"
        elif err["type"] == "missing":
            message = "is required"
        raise SpecError(message, field=field, line=_lookup_line(lines, loc)) from None
    except ValueError as exc:  # raised by the before-validator
        raise SpecError(str(exc), field="dependencies") from None


def _line_index(node: yaml.Node | None) -> dict[tuple[Any, ...], int]:
    """Map key paths (``("dependencies", 2)``) to 1-based line numbers."""
    index: dict[tuple[Any, ...], int] = {}

    def walk(n: yaml.Node, path: tuple[Any, ...]) -> None:
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = (*path, k.value)
                index[key] = k.start_mark.line + 1
                walk(v, key)
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                index[(*path, i)] = item.start_mark.line + 1
                walk(item, (*path, i))

    if node is not None:
        walk(node, ())
    return index


def _lookup_line(lines: dict[tuple[Any, ...], int] | None, loc: tuple[Any, ...]) -> int | None:
    if not lines:
        return None
    # pip entries were moved out of `dependencies` before validation; find them there.
    if loc and loc[0] == "pip":
        for key, line in lines.items():
            if len(key) >= 3 and key[0] == "dependencies" and key[2] == "pip":
                return lines.get((*key, *loc[1:2]), line)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None
