"""A running server stays flat over many solve previews and package searches of different names.

Each new name makes a rattler ``Gateway`` load more records, and a long-lived
one keeps them all; that work happens in the server's solver children, which
are recycled, so the serving process itself never holds repodata.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
import requests

from tests.support.http_channel import channel_server
from tests.support.serve import Served, add_admin, serve

PASSWORD = "a long password for memory"
NAMES = 2000
RECORDS = 30_000
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def generate(root: Path) -> list[str]:
    """A channel of ``RECORDS`` records over ``NAMES`` names, each depending on a few older ones."""
    rng = random.Random(16)
    names = sorted({"".join(rng.choices(LETTERS, k=8)) for _ in range(NAMES * 2)})[:NAMES]
    rng.shuffle(names)
    packages = {}
    for n in range(RECORDS):
        i = n % NAMES
        version = f"{n // NAMES}.{rng.randrange(10)}"
        depends = [f"{names[j]} >=0" for j in rng.sample(range(i), min(i, 3))]
        filename = f"{names[i]}-{version}-h{n}_0.conda"
        packages[filename] = {
            "name": names[i],
            "version": version,
            "build": f"h{n}_0",
            "build_number": 0,
            "depends": depends,
            "subdir": "linux-64",
            "sha256": hashlib.sha256(filename.encode()).hexdigest(),
            "md5": hashlib.md5(filename.encode()).hexdigest(),
            "size": 1000,
        }
    for subdir, records in (("linux-64", packages), ("noarch", {})):
        (root / subdir).mkdir(parents=True, exist_ok=True)
        repodata = {"info": {"subdir": subdir}, "packages": {}, "packages.conda": records}
        (root / subdir / "repodata.json").write_text(json.dumps(repodata))
    return names


def serving_rss_mib(served: Served) -> float:
    """Resident memory of the serving processes (the server and its workers, not the solvers)."""
    pids = [served.pid, *served.workers()]
    own = Path(f"/proc/{served.pid}/cmdline").read_bytes()
    total = 0
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() != own:
                continue  # the fork server and its solver children
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


@pytest.mark.slow
def test_the_serving_process_stays_flat_over_many_previews_and_searches(tmp_path):
    names = generate(tmp_path / "channel")
    data = tmp_path / "data"
    add_admin(data, "root", PASSWORD)
    rng = random.Random(5)
    with (
        channel_server(tmp_path / "channel") as channel,
        serve(data, env={"CONDASTORE_CHANNELS": channel.url}) as served,
    ):
        http = requests.Session()
        http.auth = ("root", PASSWORD)

        def round_of_work(search: bool = True) -> None:
            chosen = rng.sample(names[NAMES // 2 :], 10)
            text = json.dumps({"name": "t", "channels": [channel.url], "dependencies": chosen})
            r = http.post(
                f"{served.url}/api/v1/solve",
                json={"specification": text, "platforms": ["linux-64"]},
                timeout=300,
            )
            assert r.status_code == 200, r.text
            if not search:
                return
            # Two letters match a few hundred names: each search reads many records.
            query = "".join(rng.choices(LETTERS, k=2))
            r = http.get(
                f"{served.url}/api/v1/packages",
                params={"q": query, "platform": "linux-64", "limit": 200},
                timeout=300,
            )
            assert r.status_code == 200, r.text
            assert r.json()["items"], query

        for _ in range(4):  # every worker has started its solver child
            round_of_work(search=False)
        warm = serving_rss_mib(served)
        for _ in range(40):
            round_of_work()
        after = serving_rss_mib(served)
    assert after - warm < 12, f"the serving processes grew from {warm:.0f} to {after:.0f} MiB"
