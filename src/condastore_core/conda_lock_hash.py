"""conda-lock's input hash (``metadata.content_hash``), computed without importing conda-lock.

``conda-lock lock --check-input-hash`` compares this hash with one it computes
from the spec, so ours must be conda-lock's to the byte. conda-lock serialises
its parsed spec and its default virtual packages per platform as sorted JSON
and hashes that with SHA-256 (``conda_lock.content_hash.compute_content_hashes``
with its defaults: the v2-compatible build strings, new null fields dropped).
Importing conda-lock to do so costs half a second, more than a small build.

The common case is computed here: conda dependencies in the canonical
match-spec form the spec parser writes, plain channels. Anything else (pip
requirements, channels with credentials or variables, selectors, unusual
match specs) returns None and the caller asks conda-lock itself. A golden test
holds this module to conda-lock's own function over many specs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse, urlunparse

#: conda-lock's ``default-virtual-packages.yaml``: (package, "version[ build string]").
_LINUX = (("__unix", "0"), ("__linux", "5.10"), ("__glibc", "2.28"), ("__cuda", "11.4"))
DEFAULT_VIRTUAL_PACKAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "linux-64": (*_LINUX, ("__archspec", "1 x86_64")),
    "linux-aarch64": (*_LINUX, ("__archspec", "1 aarch64")),
    "linux-ppc64le": (*_LINUX, ("__archspec", "1 ppc64le")),
    # conda-lock keeps a redundant __osx 10.15 beside 11.0 (its add_duplicate_osx_package).
    "osx-64": (("__unix", "0"), ("__archspec", "1 x86_64"), ("__osx", "11.0"), ("__osx", "10.15")),
    "osx-arm64": (("__unix", "0"), ("__archspec", "1 arm64"), ("__osx", "11.0")),
    "win-64": (("__win", "0"), ("__archspec", "1 x86_64"), ("__cuda", "11.4")),
}
#: The timestamp conda-lock gives every virtual package (2020-01-01).
_VIRTUAL_TIMESTAMP = 1577854800000

_NAME = r"[a-z0-9_][a-z0-9_.-]*"
_SIMPLE_VERSION = r"[0-9A-Za-z_.+!]+"
#: ``[channel::]name[ version[ build]]`` as ``str(rattler.MatchSpec)`` writes it.
_MATCH_SPEC = re.compile(
    rf"^(?:(?P<channel>[a-z0-9][a-z0-9_.-]*)::)?(?P<name>{_NAME})"
    r"(?: (?P<version>[^ ]+)(?: (?P<build>[A-Za-z0-9_.*+]+))?)?$"
)
#: One version constraint conda passes through as written.
_CONSTRAINT = re.compile(rf"^(?:(?:>=|<=|>|<|!=|~=|==)?{_SIMPLE_VERSION}(?:\.\*)?|\*)$")
_EXACT = re.compile(rf"^=={_SIMPLE_VERSION}$")


def content_hashes(
    environment_yaml: Mapping[str, Any], platforms: list[str]
) -> dict[str, str] | None:
    """conda-lock's input hash of ``environment_yaml`` per platform; None when not handled here."""
    if set(environment_yaml) - {
        "name",
        "channels",
        "dependencies",
        "variables",
        "platforms",
        "description",
    }:
        return None
    if _mentions_comment(environment_yaml):
        return None  # conda-lock would read "# [selector]" in the YAML text
    channels = list(environment_yaml.get("channels") or [])
    if "nodefaults" in channels:
        channels.remove("nodefaults")
    if not all(isinstance(c, str) and _plain_channel(c) for c in channels):
        return None
    dependencies = environment_yaml.get("dependencies") or []
    specs: dict[str, dict[str, Any]] = {}
    for dependency in dependencies:
        spec = _versioned_dependency(dependency) if isinstance(dependency, str) else None
        if spec is None:
            return None
        specs[spec["name"]] = spec  # conda-lock keeps the last of one name
    ordered = [specs[name] for name in sorted(specs)]
    channel_json = [
        json.dumps({"url": c, "used_env_vars": []}, separators=(",", ":"), ensure_ascii=False)
        for c in channels
    ]
    hashes = {}
    for platform in platforms:
        content = {
            "channels": channel_json,
            "specs": ordered,
            "virtual_package_hash": _virtual_packages(platform),
        }
        text = json.dumps(content, sort_keys=True)
        hashes[platform] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return hashes


def _versioned_dependency(text: str) -> dict[str, Any] | None:
    """conda-lock's serialised ``VersionedDependency`` of a canonical match spec, if simple."""
    match = _MATCH_SPEC.match(text)
    if match is None:
        return None
    version = match["version"] or ""
    build = match["build"]
    if version and not all(
        _CONSTRAINT.match(part)
        for alternative in version.split("|")
        for part in alternative.split(",")
    ):
        return None
    if build is None and _EXACT.match(version):
        version = version[2:]  # conda's MatchSpec writes an exact version without "=="
    return {
        "name": match["name"],
        "manager": "conda",
        "category": "main",
        "extras": [],
        "version": version,
        "build": build,
        "conda_channel": match["channel"],
        "hash": None,
    }


def _plain_channel(url: str) -> bool:
    """A channel conda-lock keeps as written: no credentials, token, variable or odd URL."""
    if not url or "$" in url or "@" in url or "/t/" in url or not url.isascii():
        return False
    if '"' in url or "\\" in url or not url.isprintable():
        return False
    if "://" not in url:
        return True
    parts = urlparse(url)
    return parts.netloc == (parts.hostname or "") and urlunparse(parts) == url


def _mentions_comment(value: Any) -> bool:
    if isinstance(value, str):
        return "#" in value
    if isinstance(value, Mapping):
        return any(_mentions_comment(k) or _mentions_comment(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_mentions_comment(v) for v in value)
    return False


def _virtual_packages(platform: str) -> dict[str, Any]:
    """What conda-lock hashes of its default virtual packages for ``platform``."""
    noarch = {"info": {"subdir": "noarch"}, "packages": {}}
    table = DEFAULT_VIRTUAL_PACKAGES.get(platform)
    if platform == "noarch":
        return {"noarch": noarch}
    if table is None:
        return {"noarch": noarch, platform: {}}
    packages = {}
    for name, spec in table:
        version, _, build_string = spec.partition(" ")
        build = f"{build_string}_0" if build_string else "0"
        packages[f"{name}-{version}-{build}.tar.bz2"] = {
            "name": name,
            "version": version,
            "build_string": build_string,
            "build_number": 0,
            "noarch": "",
            "depends": [],
            "timestamp": _VIRTUAL_TIMESTAMP,
            "package_type": "virtual_system",
            "build": build,
            "subdir": platform,
        }
    return {"noarch": noarch, platform: {"info": {"subdir": platform}, "packages": packages}}
