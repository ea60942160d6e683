"""A bounded load on several machines over one PostgreSQL database: builds, installs and
artifacts stored per lock.

Each "machine" is a service context with a data directory of its own and two
build threads, all sharing one database and one blob store, as servers and
workers of a cluster do. ``--submits`` submissions of ``--specs`` different
specs under ``--names`` environment names arrive at once, spread over the
machines. Target: exactly one install and one tarball per lock, whatever the
number of submissions.

    python -m benchmarks.cluster_load --database-url postgresql+psycopg://.../db
"""

from __future__ import annotations

import argparse
import collections
import re
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import TEN_TOOLS, print_json_line, print_table, sample_channel_dir
from condastore_core.db.models import Artifact, Build, BuildStatus
from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.service import environments
from condastore_core.service.context import Context
from condastore_core.service.logs import read_log
from condastore_core.service.namespaces import create_namespace
from condastore_core.settings import load_settings
from condastore_core.spec import EnvironmentSpec

#: The line every install of a prefix writes into its build's log.
INSTALL = re.compile(r"installing \d+ packages for ")


def machine(root: Path, i: int, database_url: str, channel: str) -> Context:
    settings = load_settings(
        {
            "data_dir": root / f"machine{i}",
            "database_url": database_url,
            "store_url": str(root / "object-store"),
            "allowed_channel_dirs": (str(Path(channel.removeprefix("file://")).parent),),
            "tarball": True,
        },
        environ={},
    )
    ctx = Context.from_settings(settings)
    ctx.jobs = InProcessQueue(ctx, workers=2)
    create_namespace(ctx, "default", exist_ok=True)
    return ctx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="an empty PostgreSQL database")
    parser.add_argument("--machines", type=int, default=2)
    parser.add_argument("--submits", type=int, default=50)
    parser.add_argument("--specs", type=int, default=10)
    parser.add_argument("--names", type=int, default=20)
    args = parser.parse_args()
    channel = sample_channel_dir().as_uri()
    specs = [[TEN_TOOLS[i % len(TEN_TOOLS)]] for i in range(args.specs)]
    with tempfile.TemporaryDirectory() as tmp:
        cluster = [machine(Path(tmp), i, args.database_url, channel) for i in range(args.machines)]
        start = threading.Barrier(args.submits)

        def submit(i: int) -> int:
            spec = EnvironmentSpec.from_dict(
                {
                    "name": f"env{i % args.names}",
                    "channels": [channel],
                    "dependencies": specs[i % args.specs],
                }
            )
            start.wait()
            return environments.submit(cluster[i % len(cluster)], "default", spec).id

        began = time.perf_counter()
        with ThreadPoolExecutor(args.submits) as pool:
            list(pool.map(submit, range(args.submits)))
        for ctx in cluster:
            assert isinstance(ctx.jobs, InProcessQueue)
            ctx.jobs.wait_idle(timeout=1800)
        elapsed = time.perf_counter() - began
        ctx = cluster[0]
        with ctx.sessions() as session:
            done = session.query(Build).filter(Build.status == BuildStatus.COMPLETED).all()
            failed = session.query(Build).filter(Build.status == BuildStatus.FAILED).count()
            by_lock: dict[str, list[int]] = collections.defaultdict(list)
            for build in done:
                by_lock[build.lock_hash or ""].append(build.id)
            tarballs = {
                lock: {
                    a.digest
                    for a in session.query(Artifact).filter(
                        Artifact.build_id.in_(ids), Artifact.kind == "tarball"
                    )
                }
                for lock, ids in by_lock.items()
            }
        installs = {
            lock: sum(len(INSTALL.findall(read_log(ctx, b).text)) for b in ids)
            for lock, ids in by_lock.items()
        }
        rows = [
            [lock[:12], len(ids), installs[lock], len(tarballs[lock])]
            for lock, ids in sorted(by_lock.items())
        ]
        print_table(
            f"{args.submits} submits, {args.specs} specs, {args.names} names, "
            f"{args.machines} machines: {elapsed:.1f} s",
            ["lock", "builds", "installs", "tarballs"],
            rows,
        )
        print_json_line(
            {
                "builds_completed": len(done),
                "builds_failed": failed,
                "locks": len(by_lock),
                "max_installs_per_lock": max(installs.values(), default=0),
                "max_tarballs_per_lock": max((len(t) for t in tarballs.values()), default=0),
                "seconds": round(elapsed, 1),
            }
        )
        for ctx in cluster:
            if isinstance(ctx.jobs, InProcessQueue):
                ctx.jobs.shutdown()
            ctx.engine.dispose()


if __name__ == "__main__":
    main()
