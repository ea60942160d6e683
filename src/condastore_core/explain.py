"""A solver failure in plain words: one first line that names the real cause.

rattler explains an unsolvable spec as a tree (``app 1.0 would require liba
>=2, for which no candidates were found``). Its wording is exact but does not
say which of three things happened, and the registry, a CLI and a log line
often show only the first line. So the first line is ours and says it:

* no package of that name exists in the channels;
* the package exists, but no version matches the constraint (with the
  versions that exist), and which package asked for it (the chain);
* two requirements conflict (with the chain of each);
* a virtual package the platform lacks (``__cuda``, ``__glibc``);
* a version only a lower-priority channel has (strict channel priority).

rattler's whole explanation follows it, unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import rattler

_NO_CANDIDATES = (
    re.compile(r"No candidates were found for (?P<spec>.+?)\.?$"),
    re.compile(r"^[\s│├└─]*(?P<spec>.+?), for which no candidates were found\.?$"),
)
_CHANNEL_KEY = re.compile(r"\[channel=\"[^\"]*\"\]")
_REQUIRES = re.compile(r"^[\s│├└─]*(?P<pkg>\S+ \S+) would require")
_BRANCH = re.compile(r"^[├└]─ (?P<spec>.+?) (?:cannot be installed|can be installed|is excluded)")
_EXCLUDED = re.compile(r"^[\s│├└─]*(?P<pkg>\S+ \S+) is excluded because (?P<why>.+)$")
_MAX_VERSIONS = 8


def missing_specs(text: str) -> list[str]:
    """The match specs rattler found no candidates for, first seen first."""
    specs: list[str] = []
    for line in text.splitlines():
        for pattern in _NO_CANDIDATES:
            match = pattern.search(line)
            if match:
                spec = _CHANNEL_KEY.sub("", match["spec"]).strip()
                if spec not in specs:
                    specs.append(spec)
                break
    return specs


def spec_name(spec: str) -> str:
    try:
        parsed = rattler.MatchSpec(spec)
    except Exception:  # rattler's text, not the user's: its first word is the name
        return spec.split(" ", 1)[0].split("::")[-1]
    return parsed.name.normalized if parsed.name is not None else spec.split(" ", 1)[0]


def cause(
    text: str,
    channels: Sequence[str],
    versions: Mapping[str, Sequence[str]],
    *,
    satisfiable: frozenset[str] = frozenset(),
    requested: Sequence[str] = (),
) -> str | None:
    """The first line's cause, from rattler's ``text`` and the ``versions`` each name has.

    ``satisfiable`` holds the specs rattler found no candidates for although the
    channels have a matching record: another requirement (one of ``requested``)
    ruled those out, a conflict.
    """
    lines = text.splitlines()
    for spec in missing_specs(text):
        name = spec_name(spec)
        chain = _chain(lines, spec)
        needed = f" (needed by {' -> '.join(chain)})" if chain else ""
        if spec in satisfiable:
            rivals = [r for r in requested if spec_name(r) == name]
            by = chain[-1] if chain else "the spec"
            if rivals:
                return f"conflict between {rivals[0]} and {by} (requires {spec})"
            return f"{spec}{needed} conflicts with the other requirements of the spec"
        if name.startswith("__"):
            return (
                f"{spec} is required{needed}, but the platform has no {name} virtual package "
                "that matches (settings virtual_packages can declare one)"
            )
        found = versions.get(name) or ()
        if not found:
            return f"no package named {name!r} in channels {', '.join(channels)}{needed}"
        shown = ", ".join(found[:_MAX_VERSIONS]) + (", ..." if len(found) > _MAX_VERSIONS else "")
        return f"no version of {name!r} matches {spec!r}{needed}; the channels have {shown}"
    for line in lines:
        excluded = _EXCLUDED.match(line)
        if excluded and "not in requested channel" in excluded["why"]:
            return (
                f"{excluded['pkg']} is only in a lower-priority channel; with strict channel "
                "priority a package comes from the first channel that has it"
            )
    if any("are incompatible" in line for line in lines[:2]):
        branches = [_CHANNEL_KEY.sub("", m["spec"]).strip() for m in map(_BRANCH.match, lines) if m]
        chains = []
        for branch in branches:
            requires = _first_requirement(lines, branch)
            chains.append(f"{branch} ({requires})" if requires else branch)
        if len(chains) >= 2:
            return f"conflict between {' and '.join(chains)}"
        if chains:
            return f"{chains[0]} cannot be installed"
    return None


def _chain(lines: list[str], spec: str) -> list[str]:
    """The packages that lead to the line mentioning ``spec``: ``top 1.0 -> mid 1.0``."""
    for index, line in enumerate(lines):
        if spec not in _CHANNEL_KEY.sub("", line):
            continue
        depth = _depth(line)
        chain = []
        for above in reversed(lines[:index]):
            if _depth(above) < depth:
                depth = _depth(above)
                match = _REQUIRES.match(above)
                if match:
                    chain.append(match["pkg"])
        return list(reversed(chain))
    return []


def _first_requirement(lines: list[str], branch: str) -> str | None:
    """``old 1.0 requires liba <2`` for a branch of a conflict tree."""
    inside = False
    package = None
    for line in lines:
        clean = _CHANNEL_KEY.sub("", line)
        if _BRANCH.match(line):
            inside = branch in clean
            continue
        if not inside:
            continue
        match = _REQUIRES.match(line)
        if match and package is None:
            package = match["pkg"]
            continue
        if package is not None:
            requirement = clean.lstrip(" │├└─").split(",", 1)[0]
            return f"{package} requires {requirement}"
    return None


def _depth(line: str) -> int:
    stripped = line.lstrip(" │├└─")
    return len(line) - len(stripped) if line.strip() else 0


#: Record fields rattler reads as lists, which old repodata sometimes writes as null.
_LIST_FIELDS = ("depends", "constrains", "track_features")


def null_fields(repodata: Mapping[str, object]) -> list[tuple[str, str]]:
    """``(file name, field)`` of each record whose list field is null, first ones first."""
    found: list[tuple[str, str]] = []
    for key in ("packages", "packages.conda"):
        records = repodata.get(key)
        if not isinstance(records, Mapping):
            continue
        for filename, record in records.items():
            if isinstance(record, Mapping):
                found.extend(
                    (str(filename), f) for f in _LIST_FIELDS if f in record and record[f] is None
                )
    return found
