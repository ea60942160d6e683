"""Resolve a spec's ``pip:`` requirements with uv, for the python the conda solve locked.

``uv pip compile`` does the resolution (no resolver is written here): once with
the spec's requirements, for the exact pins and who needs whom, and once more
with those pins in PEP 751 ``pylock.toml`` form, for each wheel's URL and
sha256. It runs with ``--python-version`` and ``--python-platform`` taken from
the lock (the locked python, the platform's glibc or macOS from the virtual
packages), wheels only (``--no-build``: nothing from a source archive runs on
the server), without user configuration, and with every connection through the
channel gate's proxy when the gate is enforced. Index URLs and direct-URL
requirements pass the gate before uv starts, and every locked wheel URL after.

Of the wheels uv lists as compatible, the lock keeps the one whose tags
``packaging`` ranks first for the target, as an installer would choose.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from condastore_core.channels.gate import ChannelRefused
from condastore_core.errors import SolveError, SpecError
from condastore_core.lock import Lock
from condastore_core.pip.index import PipIndex
from condastore_core.pip.records import PipPackage, canonical_name
from condastore_core.pip.uv import uv_environment, uv_executable

#: pip options a spec's ``pip:`` list may carry (as conda's environment.yaml allows).
INDEX_OPTIONS = {"--index-url": "index", "-i": "index", "--extra-index-url": "extra"}
_ARCH = {"64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
_VIA = re.compile(r"^(?P<req>[^#]+?)\s*#\s*via\s+(?P<via>.+)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Target:
    """What the wheels are for: a python version and a platform, in uv's and packaging's terms."""

    python: str  # full version, e.g. 3.11.7
    subdir: str
    glibc: str = "2.28"
    macos: str = "13.0"

    @property
    def uv_platform(self) -> str:
        os_name, _, arch = self.subdir.partition("-")
        cpu = _ARCH.get(arch)
        if cpu is None or os_name not in ("linux", "osx", "win"):
            raise SolveError(f"pip packages cannot be locked for {self.subdir}")
        if os_name == "linux":
            return f"{cpu}-manylinux_{self.glibc.replace('.', '_')}"
        if os_name == "osx":
            return f"{cpu}-apple-darwin"
        return f"{cpu}-pc-windows-msvc"

    def tag_rank(self) -> dict[str, int]:
        """Wheel tags for this target, best first (packaging's order), as tag -> rank."""
        from packaging import tags

        major, minor = (int(x) for x in self.python.split(".")[:2])
        os_name, _, arch = self.subdir.partition("-")
        cpu = _ARCH[arch]
        if os_name == "linux":
            glibc_minor = int(self.glibc.split(".")[1])
            legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
            platforms = []
            for m in range(glibc_minor, 4, -1):
                platforms.append(f"manylinux_2_{m}_{cpu}")
                if m in legacy:
                    platforms.append(f"{legacy[m]}_{cpu}")
            platforms.append(f"linux_{cpu}")
        elif os_name == "osx":
            mac = tuple(int(x) for x in self.macos.split(".")[:2])
            mac_arch = "arm64" if cpu != "x86_64" else cpu
            platforms = list(tags.mac_platforms((mac[0], mac[1]), mac_arch))
        else:
            platforms = ["win_amd64" if cpu == "x86_64" else "win_arm64"]
        ordered = [
            *tags.cpython_tags((major, minor), platforms=platforms),
            *tags.compatible_tags((major, minor), f"cp{major}{minor}", platforms),
        ]
        return {str(t): i for i, t in reversed(list(enumerate(ordered)))}


@dataclass(frozen=True)
class Requirements:
    """A spec's ``pip:`` list split into requirements and index options."""

    lines: tuple[str, ...]
    index_url: str | None
    extra_index_urls: tuple[str, ...]
    direct_urls: tuple[tuple[str, str], ...]  # (requirement, URL)

    @classmethod
    def parse(cls, entries: Sequence[str]) -> Requirements:
        from packaging.requirements import Requirement

        lines, extra, direct = [], [], []
        index = None
        for entry in entries:
            if entry.startswith("-"):
                option, _, value = entry.replace("=", " ", 1).partition(" ")
                kind = INDEX_OPTIONS.get(option)
                if kind is None or not value.strip():
                    raise SpecError(
                        f"pip option {entry!r} is not supported; only --index-url and "
                        "--extra-index-url may be given with the requirements",
                        field="pip",
                    )
                if kind == "index":
                    index = value.strip()
                else:
                    extra.append(value.strip())
                continue
            requirement = Requirement(entry)
            if requirement.url:
                direct.append((entry, requirement.url))
            lines.append(entry)
        if not lines:
            raise SpecError("the pip: list has options but no requirement", field="pip")
        return cls(tuple(lines), index, tuple(extra), tuple(direct))

    @property
    def names(self) -> list[str]:
        from packaging.requirements import Requirement

        return [canonical_name(Requirement(line).name) for line in self.lines]


def resolve_pip(
    requirements: Sequence[str],
    lock: Lock,
    platform: str,
    index: PipIndex,
    *,
    glibc: str | None = None,
    macos: str | None = None,
    timeout: float | None = None,
) -> list[PipPackage]:
    """The wheels ``requirements`` resolve to for ``platform`` of ``lock`` (whose python).

    Raises :class:`SolveError` naming the requirement uv could not satisfy,
    :class:`ChannelRefused` for an index or URL the gate does not allow.
    """
    reqs = Requirements.parse(requirements)
    python = next((r for r in lock.records(platform) if r.name == "python"), None)
    if python is None:
        raise SolveError(
            f"pip requirements ({', '.join(reqs.lines)}) need python among the conda "
            f"dependencies; the {platform} solve has none"
        )
    target = Target(python.version, platform, glibc or "2.28", macos or "13.0")
    gate = index.gate
    index_url = reqs.index_url or index.index_url
    extras = (*index.extra_index_urls, *reqs.extra_index_urls)
    for url in (index_url, *extras):
        gate.check_url(url, shown=f"pip index {url!r}")
    for line, url in reqs.direct_urls:
        gate.check_url(url, shown=f"pip requirement {line!r}")
    options = ["--index-url", index_url]
    for url in extras:
        options += ["--extra-index-url", url]

    with tempfile.TemporaryDirectory(prefix="condastore-pip-") as tmp:
        source = Path(tmp) / "requirements.in"
        source.write_text("".join(f"{line}\n" for line in reqs.lines))
        resolved = _compile(source, target, options, index, reqs, timeout, pylock=False)
        pins, needed_by = _parse_annotated(resolved)
        pinned = Path(tmp) / "pinned.txt"
        pinned.write_text("".join(f"{line}\n" for line in pins.values()))
        document = _compile(
            pinned, target, [*options, "--no-deps"], index, reqs, timeout, pylock=True
        )
    depends: dict[str, set[str]] = {name: set() for name in pins}
    for name, parents in needed_by.items():
        for parent in parents:
            if parent in depends:
                depends[parent].add(name)
    packages = _packages(document, target, depends, reqs)
    for pkg in packages:
        gate.check_url(pkg.url, shown=f"the wheel URL of pip package {pkg.name!r}")
    return packages


def _compile(
    source: Path,
    target: Target,
    options: list[str],
    index: PipIndex,
    reqs: Requirements,
    timeout: float | None,
    *,
    pylock: bool,
) -> str:
    command = [
        uv_executable(),
        "pip",
        "compile",
        str(source),
        "--python-version",
        target.python,
        "--python-platform",
        target.uv_platform,
        "--no-build",
        "--no-header",
        "--no-config",
        "--no-python-downloads",
        "--color",
        "never",
        "--quiet",
        *options,
    ]
    if index.cache_dir is not None:
        command += ["--cache-dir", str(index.cache_dir)]
    else:
        command += ["--no-cache"]
    if pylock:
        command += ["--format", "pylock.toml"]
    else:
        command += ["--annotation-style", "line", "--no-strip-extras"]
    with index.netrc() as netrc, uv_environment(index.gate, netrc) as (env, refusals):
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, env=env, timeout=timeout or 600
            )
        except subprocess.TimeoutExpired:
            raise SolveError(
                f"resolving the pip requirements ({', '.join(reqs.lines)}) took too long"
            ) from None
        refused = refusals()
    if result.returncode != 0:
        text = _ANSI.sub("", result.stderr).strip()
        if refused:
            raise ChannelRefused(
                "channel gate",
                f"resolving the pip requirements sent this server to a location it may not "
                f"fetch ({', '.join(refused)}); it fetches the configured indexes, public "
                "http(s) hosts, and the networks an administrator allowed "
                "(settings allowed_networks)",
            )
        raise SolveError(_explain(text, target, reqs), detail={"platform": target.subdir})
    return result.stdout


def _explain(text: str, target: Target, reqs: Requirements) -> str:
    """uv's message, headed by the requirement it is about."""
    lowered = text.lower()
    named = [
        line
        for line, name in zip(reqs.lines, reqs.names, strict=True)
        if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", lowered.replace("_", "-"))
    ]
    which = ", ".join(repr(n) for n in named) if named else ", ".join(reqs.lines)
    label = "pip requirement" if len(named) == 1 else "pip requirements"
    return (
        f"{label} {which} cannot be resolved for {target.subdir} (python {target.python}, "
        f"wheels only):\n{text}"
    )


def _parse_annotated(text: str) -> tuple[dict[str, str], dict[str, set[str]]]:
    """``uv pip compile`` output: name -> pinned line, and name -> the names that need it."""
    from packaging.requirements import Requirement

    pins: dict[str, str] = {}
    needed_by: dict[str, set[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _VIA.match(line)
        req_text, via = (match["req"], match["via"]) if match else (line, "")
        name = canonical_name(Requirement(req_text).name)
        pins[name] = req_text.strip()
        needed_by[name] = {
            canonical_name(v.strip())
            for v in via.split(",")
            if v.strip() and not v.strip().startswith("-r")
        }
    return pins, needed_by


def _packages(
    document: str, target: Target, depends: dict[str, set[str]], reqs: Requirements
) -> list[PipPackage]:
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    rank = target.tag_rank()
    packages = []
    for entry in tomllib.loads(document).get("packages", []):
        name = canonical_name(entry["name"])
        candidates = list(entry.get("wheels", []))
        if "archive" in entry:
            candidates.append(entry["archive"])
        best: tuple[int, dict] | None = None
        for wheel in candidates:
            url = wheel["url"]
            try:
                _, _, _, wheel_tags = parse_wheel_filename(url.rsplit("/", 1)[-1])
            except InvalidWheelFilename:
                continue  # a source archive: never built here
            score = min((rank.get(str(t), len(rank)) for t in wheel_tags), default=len(rank))
            if score < len(rank) and (best is None or score < best[0]):
                best = (score, wheel)
        if best is None or "sha256" not in best[1].get("hashes", {}):
            raise SolveError(
                f"pip package {name!r} has no wheel with a sha256 for {target.subdir} "
                f"(python {target.python}); source archives are not built"
            )
        packages.append(
            PipPackage(
                name=name,
                version=str(entry.get("version") or _version_of(best[1]["url"])),
                url=best[1]["url"],
                sha256=best[1]["hashes"]["sha256"],
                depends=tuple(sorted(depends.get(name, ()))),
            )
        )
    return packages


def _version_of(url: str) -> str:
    from packaging.utils import parse_wheel_filename

    return str(parse_wheel_filename(url.rsplit("/", 1)[-1])[1])
