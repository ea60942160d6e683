"""The ``condastore`` command as users run it: whole processes, against bare equivalents.

Each pair is two whole processes doing the same work, one ``condastore``
command and one small bare script (written to a temporary directory), run
alternately (odd rounds the bare side goes first) for ``--rounds`` rounds:

  version     ``condastore --version``      python printing the package's version
  help        ``condastore --help``         the same bare python
  env_list    ``condastore env list``       a urllib GET of the same API route, printed
              (against a ``condastore serve`` this benchmark starts on a loopback port)
  build_N     ``condastore build SPEC --no-tarball --json``
                                            py-rattler solve + install of the same names
              (N = packages in the solved environment: 1, 10 and 40 from the sample channel)
  lock        ``condastore lock SPEC -o FILE`` (10 names)
                                            py-rattler solve, the records written to a file

Builds and locks run with a cold package cache on both sides: every run gets
an empty data directory (condastore) or cache and prefix (bare); the sample
channel's files stay in the OS page cache for both. Each run's wall time, CPU
time (user + system, its children included) and peak RSS come from
``os.wait4`` on that process. Ratios are condastore / bare per round, printed
as min-median-max; the JSON line holds the medians. Reference rows show what no
command can go below: the interpreter, and the interpreter importing rattler.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import (
    TEN_TOOLS,
    median,
    print_json_line,
    print_table,
    sample_channel_dir,
)

BUILDS = {
    "build_1": ["tzdata"],
    "build_10": ["zstd", "xz", "bzip2", "tzdata"],
    "build_40": [
        "_libgcc_mutex",
        "_openmp_mutex",
        "bzip2",
        "c-ares",
        "ca-certificates",
        "fmt",
        "keyutils",
        "krb5",
        "ld_impl_linux-64",
        "libcurl",
        "libedit",
        "libev",
        "libffi",
        "libgcc-ng",
        "libgomp",
        "libiconv",
        "libnghttp2",
        "libnsl",
        "libsolv",
        "libsqlite",
        "libssh2",
        "libstdcxx-ng",
        "libuuid",
        "libxcrypt",
        "libzlib",
        "lz4-c",
        "lzo",
        "ncurses",
        "openssl",
        "pybind11-abi",
        "python_abi",
        "readline",
        "reproc",
        "reproc-cpp",
        "tk",
        "tzdata",
        "xz",
        "yaml",
        "yaml-cpp",
        "zstd",
    ],
}
LOCK_NAMES = TEN_TOOLS

# The bare scripts: py-rattler and the standard library only, the virtual packages
# condastore assumes for linux-64, nothing of condastore.
BARE_RATTLER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    import rattler

    VIRTUAL = [("__archspec", "1", "x86_64"), ("__glibc", "2.28", "0"),
               ("__linux", "5.10", "0"), ("__unix", "0", "0")]

    async def main(mode, channel, out, cache, names):
        virtual = [rattler.GenericVirtualPackage(rattler.PackageName(n), rattler.Version(v),
                                                 rattler.BuildString(b)) for n, v, b in VIRTUAL]
        gateway = rattler.Gateway(cache_dir=Path(cache) / "repodata")
        records = await rattler.solve(sources=[channel], specs=names, gateway=gateway,
                                      platforms=["linux-64", "noarch"], virtual_packages=virtual)
        if mode == "build":
            await rattler.install(records, target_prefix=Path(out), cache_dir=Path(cache),
                                  show_progress=False)
        else:
            with open(out, "w") as f:
                for r in sorted(records, key=lambda r: r.name.normalized):
                    f.write(f"{r.url}#sha256:{r.sha256.hex()}\\n")
        print(len(records))

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]))
    """
)
BARE_VERSION = (
    'from importlib.metadata import version; print("condastore, version", version("condastore"))'
)
BARE_GET = textwrap.dedent(
    """
    import json, sys, urllib.request
    with urllib.request.urlopen(sys.argv[1] + "/api/v1/environments", timeout=60) as r:
        page = json.loads(r.read())
    for e in page["items"]:
        print(e["namespace"] + "/" + e["name"], e["current_build_id"], e["description"])
    """
)


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mb: float


@dataclass
class Pair:
    name: str
    ours: list[Run] = field(default_factory=list)
    bare: list[Run] = field(default_factory=list)
    packages: int | None = None
    crashes: list[str] = field(default_factory=list)

    def ratios(self, attr: str) -> list[float]:
        return [
            getattr(o, attr) / getattr(b, attr) for o, b in zip(self.ours, self.bare, strict=True)
        ]


class Failed(Exception):
    pass


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[Run, str]:
    """One whole process: its wall time, CPU time and peak RSS (``os.wait4``), and its stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise Failed(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.read().decode()}")
        cpu = usage.ru_utime + usage.ru_stime
        return Run(wall, cpu, usage.ru_maxrss / 1024), out.read().decode()


def run_retrying(pair: Pair, cmd: list[str], work: Path) -> tuple[Run, str]:
    """rattler can crash (a signal) on this machine now and then; such a run is run again, once."""
    try:
        return run(cmd)
    except Failed as exc:
        pair.crashes.append(str(exc).splitlines()[0])
        shutil.rmtree(work)
        work.mkdir(parents=True)
        try:
            return run(cmd)
        except Failed as again:
            raise SystemExit(str(again)) from None


def measure(
    pair: Pair,
    rounds: int,
    ours: Callable[[Path], list[str]],
    bare: Callable[[Path], list[str]],
    scratch: Path,
    check: Callable[[str, str], int | None] | None = None,
) -> Pair:
    """Alternate the two sides ``rounds`` times, each run in its own empty directory."""
    for i in range(rounds):
        sides = [("ours", ours), ("bare", bare)]
        if i % 2:
            sides.reverse()
        outputs: dict[str, str] = {}
        for side, command in sides:
            work = scratch / f"{pair.name}-{side}-{i}"
            work.mkdir(parents=True)
            result, outputs[side] = run_retrying(pair, command(work), work)
            (pair.ours if side == "ours" else pair.bare).append(result)
            shutil.rmtree(work)
        if check is not None:
            pair.packages = check(outputs["ours"], outputs["bare"])
    return pair


def write_spec(path: Path, channel: Path, names: list[str]) -> Path:
    deps = "".join(f"  - {n}\n" for n in names)
    path.write_text(f"name: bench\nchannels:\n  - {channel.as_uri()}\ndependencies:\n{deps}")
    return path


def condastore_command() -> list[str]:
    script = Path(sys.executable).parent / "condastore"
    return [str(script)] if script.exists() else [sys.executable, "-m", "condastore_web"]


def same_build(ours: str, bare: str) -> int:
    built = json.loads(ours)
    assert not built["reused"] and "tarball" not in built["artifacts"], built
    return int(bare.strip())


def start_server(root: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CONDASTORE_TARBALL": "false"}
    env.pop("CONDASTORE_CONFIG", None)
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed with the server
    proc = subprocess.Popen(
        [*condastore_command(), "serve", "--port", str(port), "--data-dir", str(root / "server")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/v1/environments", timeout=5) as r:
                r.read()
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(
                    f"condastore serve did not answer: {(root / 'server.log').read_text()}"
                ) from None
            time.sleep(0.2)


def span(values: list[float]) -> str:
    return f"{min(values):.2f}-{median(values):.2f}-{max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rounds = max(args.rounds, 1)
    channel = sample_channel_dir()
    cs = condastore_command()
    py = sys.executable
    pairs: list[Pair] = []
    with tempfile.TemporaryDirectory(prefix="condastore-cli-bench-") as tmp:
        root = Path(tmp)
        bare_rattler = root / "bare_rattler.py"
        bare_rattler.write_text(BARE_RATTLER)
        bare_get = root / "bare_get.py"
        bare_get.write_text(BARE_GET)
        scratch = root / "runs"

        pairs.append(
            measure(
                Pair("version"),
                rounds,
                lambda w: [*cs, "--version"],
                lambda w: [py, "-c", BARE_VERSION],
                scratch,
            )
        )
        pairs.append(
            measure(
                Pair("help"),
                rounds,
                lambda w: [*cs, "--help"],
                lambda w: [py, "-c", BARE_VERSION],
                scratch,
            )
        )

        server, url = start_server(root)
        try:
            pairs.append(
                measure(
                    Pair("env_list"),
                    rounds,
                    lambda w: [*cs, "env", "list", "--url", url],
                    lambda w: [py, str(bare_get), url],
                    scratch,
                )
            )
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()

        for name, names in BUILDS.items():
            spec = write_spec(root / f"{name}.yaml", channel, names)
            pairs.append(
                measure(
                    Pair(name),
                    rounds,
                    lambda w, spec=spec: [
                        *cs,
                        "build",
                        str(spec),
                        "--no-tarball",
                        "--json",
                        "--data-dir",
                        str(w / "data"),
                    ],
                    lambda w, names=names: [
                        py,
                        str(bare_rattler),
                        "build",
                        channel.as_uri(),
                        str(w / "env"),
                        str(w / "pkgs"),
                        *names,
                    ],
                    scratch,
                    check=same_build,
                )
            )

        spec = write_spec(root / "lock.yaml", channel, LOCK_NAMES)
        pairs.append(
            measure(
                Pair("lock"),
                rounds,
                lambda w: [
                    *cs,
                    "lock",
                    str(spec),
                    "-o",
                    str(w / "conda-lock.yml"),
                    "--data-dir",
                    str(w / "data"),
                ],
                lambda w: [
                    py,
                    str(bare_rattler),
                    "lock",
                    channel.as_uri(),
                    str(w / "locked.txt"),
                    str(w / "cache"),
                    *LOCK_NAMES,
                ],
                scratch,
                check=lambda ours, bare: int(bare.strip()),
            )
        )

        floors = {
            "python -c pass": [py, "-c", "pass"],
            "python -c 'import rattler'": [py, "-c", "import rattler"],
            "python -c 'import condastore_web.cli.local'": [
                py,
                "-c",
                "import condastore_web.cli.local",
            ],
        }
        floor_runs = {
            name: [run_retrying(Pair(name), cmd, scratch / "floor")[0] for _ in range(rounds)]
            for name, cmd in floors.items()
        }

    rows = []
    for p in pairs:
        label = p.name if p.packages is None else f"{p.name} ({p.packages} packages)"
        rows.append(
            [
                label,
                f"{median([r.wall for r in p.ours]):.3f}",
                f"{median([r.wall for r in p.bare]):.3f}",
                span(p.ratios("wall")),
                f"{median([r.cpu for r in p.ours]):.3f}",
                f"{median([r.cpu for r in p.bare]):.3f}",
                span(p.ratios("cpu")),
                f"{max(r.rss_mb for r in p.ours):.0f}",
                f"{max(r.rss_mb for r in p.bare):.0f}",
            ]
        )
    for name, runs in floor_runs.items():
        rows.append(
            [
                f"reference: {name}",
                f"{median([r.wall for r in runs]):.3f}",
                "",
                "",
                f"{median([r.cpu for r in runs]):.3f}",
                "",
                "",
                f"{max(r.rss_mb for r in runs):.0f}",
                "",
            ]
        )
    for p in pairs:
        for crash in p.crashes:
            print(f"{p.name}: run again after a crash: {crash}")
    load = os.getloadavg()[0]
    print_table(
        f"condastore CLI vs bare, whole processes, {rounds} rounds alternating, cold package "
        f"cache for build/lock; load average {load:.1f} on {os.cpu_count()} CPUs",
        [
            "command",
            "ours wall s",
            "bare wall s",
            "wall ratio min-med-max",
            "ours cpu s",
            "bare cpu s",
            "cpu ratio min-med-max",
            "ours RSS MB",
            "bare RSS MB",
        ],
        rows,
    )
    print(
        "\ntargets: --version and --help <= 0.15 s, env list <= 0.3 s, "
        "build <= 1.5x and lock <= 2x bare py-rattler (wall)"
    )
    figures: dict[str, object] = {"benchmark": "cli", "rounds": rounds, "package_cache": "cold"}
    for p in pairs:
        figures[f"{p.name}_s"] = round(median([r.wall for r in p.ours]), 4)
        figures[f"{p.name}_bare_s"] = round(median([r.wall for r in p.bare]), 4)
        figures[f"{p.name}_ratio"] = round(median(p.ratios("wall")), 3)
        figures[f"{p.name}_cpu_ratio"] = round(median(p.ratios("cpu")), 3)
        figures[f"{p.name}_rss_mb"] = round(max(r.rss_mb for r in p.ours), 1)
        figures[f"{p.name}_bare_rss_mb"] = round(max(r.rss_mb for r in p.bare), 1)
        if p.packages is not None:
            figures[f"{p.name}_packages"] = p.packages
        if p.crashes:
            figures[f"{p.name}_runs_repeated_after_a_crash"] = len(p.crashes)
    figures["load_average"] = round(load, 2)
    print_json_line(figures)


if __name__ == "__main__":
    main()
