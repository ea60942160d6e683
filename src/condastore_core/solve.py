"""Solve a spec into a :class:`~condastore_core.lock.Lock` with py-rattler.

One solve per platform (each with ``noarch``), strict channel priority, and a
virtual-package set per platform that settings may override (``__glibc``,
``__cuda``...), so a linux machine can lock for osx-arm64 and the other way
round. The solver's own explanation of a failure reaches the user verbatim.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import platform as _platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import rattler
from rattler import ChannelPriority, Gateway, GenericVirtualPackage

from condastore_core import explain, layout
from condastore_core.channels import (
    DEFAULT_CHANNEL_ALIAS,
    OPEN_GATE,
    ChannelGate,
    gate_for,
)
from condastore_core.channels.freshness import Freshness, record_for
from condastore_core.channels.gate import ChannelRefused, normalize_url
from condastore_core.channels.proxy import client_for, refused_hop
from condastore_core.errors import SolveError
from condastore_core.lock import Lock, LockedPackage
from condastore_core.pip.index import PipIndex
from condastore_core.settings import Settings
from condastore_core.spec import EnvironmentSpec

#: Virtual packages assumed per OS unless overridden (version strings).
DEFAULT_VIRTUAL_PACKAGES = {
    "linux": {"__unix": "0", "__linux": "5.10", "__glibc": "2.28"},
    "osx": {"__unix": "0", "__osx": "13.0"},
    "win": {"__win": "0"},
}
_ARCHSPEC = {
    "64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "arm64",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}


def native_platform() -> str:
    system = {"Linux": "linux", "Darwin": "osx", "Windows": "win"}[_platform.system()]
    machine = _platform.machine().lower()
    arch = {"x86_64": "64", "amd64": "64", "aarch64": "aarch64", "arm64": "arm64"}.get(machine)
    if arch is None:
        raise SolveError(f"unsupported machine architecture {machine!r}")
    if system == "osx" and arch == "aarch64":
        arch = "arm64"
    return f"{system}-{arch}"


def virtual_packages_for(
    platform: str, overrides: Mapping[str, str | None] | None = None
) -> list[GenericVirtualPackage]:
    """The virtual packages a solve for ``platform`` assumes.

    ``overrides`` maps a name to a version (``{"__cuda": "12.2"}``) or to None to
    remove it.
    """
    os_name, _, arch = platform.partition("-")
    packages: dict[str, str | None] = dict(DEFAULT_VIRTUAL_PACKAGES.get(os_name, {}))
    if arch in _ARCHSPEC:
        packages["__archspec"] = "1"
    packages.update(overrides or {})
    result = []
    for name, version in sorted(packages.items()):
        if version is None:
            continue
        build = _ARCHSPEC.get(arch, "0") if name == "__archspec" else "0"
        result.append(
            GenericVirtualPackage(
                rattler.PackageName(name), rattler.Version(version), rattler.BuildString(build)
            )
        )
    return result


class Solver:
    """Solves specs against channels; keeps one repodata gateway (and its cache) alive."""

    def __init__(
        self,
        *,
        cache_dir: Path | None = None,
        channel_alias: str = DEFAULT_CHANNEL_ALIAS,
        default_channels: Sequence[str] = ("conda-forge",),
        virtual_package_overrides: Mapping[str, str | None] | None = None,
        timeout: dt.timedelta | None = None,
        gate: ChannelGate = OPEN_GATE,
        freshness: Freshness | None = None,
        pip: PipIndex | None = None,
    ) -> None:
        #: What builds this solver again in another process (see ``__reduce__``).
        self._recipe: dict[str, Any] = {
            "cache_dir": cache_dir,
            "channel_alias": channel_alias,
            "default_channels": tuple(default_channels),
            "virtual_package_overrides": dict(virtual_package_overrides or {}),
            "timeout": timeout,
            "gate": gate,
            "freshness": freshness,
        }
        #: rattler's HTTP client: through the gate's proxy when the gate is enforced, so the
        #: hops rattler makes on its own (redirects, packages' URLs) are checked too; with the
        #: installation's mirrors and credentials.
        self.client = client_for(gate)
        self._gateway = Gateway(cache_dir=cache_dir, client=self.client)
        #: When to read a channel again (None: once per solver, as rattler does on its own).
        self.freshness = freshness
        self.channel_alias = channel_alias
        self.default_channels = list(default_channels)
        self.virtual_package_overrides = dict(virtual_package_overrides or {})
        self.timeout = timeout
        #: Every channel and package URL this solver hands to rattler passed it.
        self.gate = gate
        #: Where ``pip:`` requirements resolve and their wheels come from (PyPI by default).
        self.pip = pip or PipIndex(gate=gate)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its settings: a child process builds its own gateway, proxy and client
        (native handles that do not cross processes)."""
        return (_rebuild_solver, ({**self._recipe, "pip": self.pip},))

    def channels_for(self, spec: EnvironmentSpec, gate: ChannelGate | None = None) -> list[str]:
        """The channel URLs of ``spec``; each must pass ``gate`` (default: this solver's)."""
        gate = gate or self.gate
        return [gate.check_channel(c) for c in spec.channels or self.default_channels]

    def solve(
        self,
        spec: EnvironmentSpec,
        platforms: Sequence[str] | None = None,
        *,
        gate: ChannelGate | None = None,
    ) -> Lock:
        """Lock ``spec`` for ``platforms`` (default: the spec's, else this machine's).

        Channels are checked by ``gate`` (a namespace's narrower gate, or this
        solver's) before rattler sees them, and so are the package URLs of the
        result: a channel's repodata may point its packages elsewhere (``base_url``).
        """
        targets = sorted(set(platforms or spec.platforms or [native_platform()]))
        channels = self.channels_for(spec, gate)
        lock = asyncio.run(self._solve_all(channels, list(spec.dependencies), targets))
        (gate or self.gate).check_lock(lock)
        if spec.pip:
            lock = self._solve_pip(spec, lock)
        return lock

    def _solve_pip(self, spec: EnvironmentSpec, lock: Lock) -> Lock:
        """``lock`` with the spec's pip requirements resolved for each platform's python.

        pip indexes pass the installation's gate: a namespace's ``allowed_channels``
        names conda channels, not indexes.
        """
        # Deferred: only specs with a pip: list pay for the resolver's imports.
        from condastore_core.pip.resolve import resolve_pip

        overrides = self.virtual_package_overrides
        timeout = self.timeout.total_seconds() if self.timeout else None
        return lock.with_pip(
            {
                platform: resolve_pip(
                    spec.pip,
                    lock,
                    platform,
                    self.pip,
                    glibc=overrides.get("__glibc") or DEFAULT_VIRTUAL_PACKAGES["linux"]["__glibc"],
                    macos=overrides.get("__osx") or DEFAULT_VIRTUAL_PACKAGES["osx"]["__osx"],
                    timeout=timeout,
                )
                for platform in lock.platforms
            }
        )

    def _revalidate(self, channels: Sequence[str], subdirs: Sequence[str]) -> None:
        """Drop what the freshness rules say is stale, so rattler reads it again."""
        if self.freshness is None:
            return
        for channel, decision in self.freshness.before_solve(channels, subdirs).items():
            if decision.drop:
                self._gateway.clear_repodata_cache(channel, clear_disk=decision.drop_disk)

    def refresh(self, channels: Sequence[str]) -> list[str]:
        """Fetch ``channels`` (names or URLs) afresh at the next solve of every process."""
        urls = [self.gate.channel_url(c) for c in channels]
        for url in urls:
            self._gateway.clear_repodata_cache(url, clear_disk=True)
        if self.freshness is not None:
            self.freshness.refresh(urls)
        return urls

    async def _solve_all(self, channels: list[str], specs: list[str], targets: list[str]) -> Lock:
        self._revalidate(channels, [*targets, "noarch"])
        results = await asyncio.gather(*(self._solve_one(channels, specs, t) for t in targets))
        return Lock.create(channels, dict(zip(targets, results, strict=True)))

    async def _solve_one(
        self, channels: list[str], specs: list[str], platform: str
    ) -> list[LockedPackage]:
        subdirs: list[Any] = [platform, "noarch"]  # rattler types them as literals

        async def solve() -> list[rattler.RepoDataRecord]:
            return await rattler.solve(
                sources=channels,
                specs=await self._pinned(channels, subdirs, specs),
                gateway=self._gateway,
                platforms=subdirs,
                virtual_packages=virtual_packages_for(platform, self.virtual_package_overrides),
                channel_priority=ChannelPriority.Strict,
                timeout=self.timeout,
            )

        try:
            try:
                records = await solve()
            except Exception as exc:
                if type(exc).__name__ == "SolverError":
                    raise
                # The repodata cache is shared by every build; a process killed while it
                # was fetching can leave it unusable. Fetch afresh once before giving up.
                for channel in channels:
                    self._gateway.clear_repodata_cache(channel, subdirs, clear_disk=True)
                records = await solve()
        except Exception as exc:
            found: tuple[dict[str, list[str]], frozenset[str]] = ({}, frozenset())
            if type(exc).__name__ == "SolverError":
                found = await self._versions(channels, subdirs, str(exc))
            elif "invalid type: null" in str(exc):
                raise self._malformed(exc, channels, subdirs) from None
            raise self._explain(exc, platform, channels, *found, requested=specs) from None
        return [locked_package_from_record(r) for r in records]

    def _malformed(self, exc: Exception, channels: list[str], subdirs: list[str]) -> SolveError:
        """rattler's "invalid type: null" names no record: find it (the failure path only)."""
        import json

        import requests  # deferred: only this error path needs it, and it costs 0.1-0.2 s

        from condastore_core.channels.fetch import GatedSession

        for channel in channels:
            for subdir in subdirs:
                url = f"{channel}/{subdir}/repodata.json"
                try:
                    if url.startswith("file:"):
                        text = Path(unquote(urlsplit(url).path)).read_bytes()
                    else:
                        fetched = self.gate.access.fetched_url(url)
                        with GatedSession(self.gate) as session:
                            response = session.get(
                                fetched, timeout=60, headers=self._headers(fetched)
                            )
                            response.raise_for_status()
                            text = response.content
                    repodata = json.loads(text)
                except (OSError, ValueError, ChannelRefused, requests.RequestException):
                    continue
                bad = explain.null_fields(repodata) if isinstance(repodata, dict) else []
                if bad:
                    filename, field = bad[0]
                    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
                    return SolveError(
                        f"channel {channel}, subdir {subdir}: record {filename} has "
                        f'"{field}": null, which cannot be read{more}; the channel\'s repodata '
                        f"needs a list there.\n{exc}",
                        detail={"channel": channel, "subdir": subdir, "record": filename},
                    )
        return SolveError(f"cannot read the channels {', '.join(channels)}: {exc}")

    def _headers(self, url: str) -> dict[str, str]:
        return self.gate.access.headers(urlsplit(url).hostname or "", urlsplit(url).path) or {}

    async def _versions(
        self, channels: list[str], subdirs: list[Any], text: str
    ) -> tuple[dict[str, list[str]], frozenset[str]]:
        """The versions the channels hold of each name rattler found no candidates for, and
        which of those specs a record does match (ruled out by another requirement)."""
        specs = explain.missing_specs(text)
        names = sorted({n for n in map(explain.spec_name, specs) if not n.startswith("__")})
        if not names:
            return {}, frozenset()
        try:
            found = await self._gateway.query(channels, subdirs, names, recursive=False)
        except Exception:  # the explanation goes on without versions
            return {}, frozenset()
        records = sorted((r for rs in found for r in rs), key=lambda r: r.version, reverse=True)
        versions: dict[str, list[str]] = {}
        for record in records:
            listed = versions.setdefault(record.name.normalized, [])
            if str(record.version) not in listed:
                listed.append(str(record.version))
        satisfiable = set()
        for spec in specs:
            try:
                match = rattler.MatchSpec(spec)
            except Exception:
                continue
            if any(match.matches(r) for r in records):
                satisfiable.add(spec)
        return versions, frozenset(satisfiable)

    async def _pinned(self, channels: list[str], subdirs: list[Any], specs: list[str]) -> list[str]:
        """``specs``, each name pinned to the first channel that has it (strict priority).

        rattler fetches only the records matching a requested spec, so with
        ``tool >=2`` a higher-priority channel holding only ``tool 1.0`` would look
        as if it had no ``tool`` and a lower one would win. Asking for the bare
        name too (as before) lengthened every explanation with branches of its own;
        naming the channel keeps the user's constraint as the only one.
        """
        names = {
            text: spec.name.normalized
            for text in specs
            if (spec := rattler.MatchSpec(text)).name is not None and spec.channel is None
        }
        if len(channels) < 2 or not names:
            return specs
        found = await self._gateway.query(
            channels, subdirs, sorted(set(names.values())), recursive=False
        )
        by_url = {normalize_url(c): c for c in channels}
        holders: dict[str, set[str]] = {}
        for records in found:
            for record in records:
                channel = by_url.get(normalize_url(str(record.channel or "")))
                if channel is not None:
                    holders.setdefault(record.name.normalized, set()).add(channel)
        pinned = []
        for text in specs:
            held = holders.get(names.get(text, ""), set())
            first = next((c for c in channels if c in held), None)
            pinned.append(f"{first}::{text}" if len(held) > 1 else text)
        return pinned

    def _explain(
        self,
        exc: Exception,
        platform: str,
        channels: list[str],
        versions: Mapping[str, Sequence[str]] | None = None,
        satisfiable: frozenset[str] = frozenset(),
        *,
        requested: Sequence[str] = (),
    ) -> SolveError | ChannelRefused:
        """A hop the gate's proxy refused is told as the gate's refusal; the rest as before."""
        refused = refused_hop(str(exc), f"the channels {', '.join(channels)}")
        return refused or _explain(
            exc, platform, channels, versions or {}, satisfiable=satisfiable, requested=requested
        )


def _rebuild_solver(recipe: dict[str, Any]) -> Solver:
    return Solver(**recipe)


def locked_package_from_record(record: rattler.RepoDataRecord) -> LockedPackage:
    if record.sha256 is None and record.md5 is None:
        raise SolveError(
            f"package {record.file_name} of {record.channel} has neither sha256 nor md5 "
            "in its channel's repodata"
        )
    return LockedPackage(
        name=record.name.normalized,
        version=str(record.version),
        build=str(record.build),
        build_number=int(record.build_number),
        subdir=str(record.subdir),
        url=record.url,
        channel=str(record.channel or ""),
        sha256=_hex(record.sha256) if record.sha256 is not None else None,
        md5=_hex(record.md5) if record.md5 is not None else None,
        size=record.size,
        depends=tuple(record.depends),
        constrains=tuple(record.constrains),
        noarch=_noarch(record),
        timestamp=int(record.timestamp.timestamp()) if record.timestamp is not None else None,
    )


def _noarch(record: rattler.RepoDataRecord) -> str | None:
    noarch = record.noarch
    if noarch is None:
        return None
    if getattr(noarch, "python", False):
        return "python"
    if getattr(noarch, "generic", False):
        return "generic"
    return None


def _hex(value: bytes | str) -> str:
    return value.hex() if isinstance(value, bytes) else str(value)


def _explain(
    exc: Exception,
    platform: str,
    channels: list[str],
    versions: Mapping[str, Sequence[str]],
    *,
    satisfiable: frozenset[str] = frozenset(),
    requested: Sequence[str] = (),
) -> SolveError:
    """Turn rattler's errors into a SolveError whose first line names the cause."""
    text = str(exc).strip()
    kind = type(exc).__name__
    if kind == "SolverError":
        text = text.removeprefix("Cannot solve the request because of: ")
        summary = f"the environment cannot be solved for {platform}"
        cause = explain.cause(
            text, channels, versions, satisfiable=satisfiable, requested=requested
        )
        if cause:
            summary += f": {cause}"
        return SolveError(f"{summary}.\n{text}", detail={"platform": platform, "solver": text})
    return SolveError(
        f"cannot read the channels {', '.join(channels)} for {platform}: {text}",
        detail={"platform": platform, "error": kind},
    )


def solver_for(settings: Settings) -> Solver:
    """The solver a process configured by ``settings`` uses (repodata cached in the data dir)."""
    timeout = settings.solve_timeout_seconds
    gate = gate_for(settings)
    return Solver(
        cache_dir=layout.repodata_cache_dir(settings.data_dir),
        channel_alias=settings.channel_alias,
        default_channels=settings.channels,
        virtual_package_overrides=settings.virtual_package_overrides(),
        timeout=dt.timedelta(seconds=timeout) if timeout else None,
        gate=gate,
        freshness=Freshness(
            record_for(settings.data_dir, settings.redis_url), ttl=settings.local_repodata_ttl
        ),
        pip=PipIndex.from_settings(
            settings,
            # The indexes an administrator configured are allowed as configured channels are.
            gate.with_configured(settings.pip_index_url, *settings.pip_extra_index_urls),
            layout.pip_cache_dir(settings.data_dir),
        ),
    )


@dataclasses.dataclass(frozen=True)
class PackageSummary:
    name: str
    latest: str
    versions: tuple[str, ...]
    channels: tuple[str, ...]


def search_packages(
    solver: Solver,
    query: str,
    channels: Sequence[str],
    platforms: Sequence[str],
    limit: int = 50,
    *,
    gate: ChannelGate | None = None,
) -> list[PackageSummary]:
    """Packages of ``channels`` whose name contains ``query``, exact match first.

    Each channel passes ``gate`` (default: the solver's) before it is read.
    """
    urls = [(gate or solver.gate).check_channel(c) for c in channels]
    query = query.strip().lower()
    subdirs: list[Any] = sorted({*platforms, "noarch"})

    async def run() -> list[PackageSummary]:
        solver._revalidate(urls, subdirs)
        names = await solver._gateway.names(urls, subdirs)
        found = sorted(
            {n.normalized for n in names if query in n.normalized},
            key=lambda n: (n != query, not n.startswith(query), n),
        )[:limit]
        if not found:
            return []
        results = await solver._gateway.query(urls, subdirs, found, recursive=False)
        by_name: dict[str, list[rattler.RepoDataRecord]] = {}
        for records in results:
            for record in records:
                by_name.setdefault(record.name.normalized, []).append(record)
        summaries = []
        for name in found:
            records = sorted(by_name.get(name, []), key=lambda r: r.version, reverse=True)
            if not records:
                continue
            versions = tuple(dict.fromkeys(str(r.version) for r in records))
            chans = tuple(dict.fromkeys(str(r.channel or "") for r in records))
            summaries.append(PackageSummary(name, versions[0], versions, chans))
        return summaries

    try:
        return asyncio.run(run())
    except Exception as exc:
        raise solver._explain(exc, ",".join(subdirs), urls) from None
