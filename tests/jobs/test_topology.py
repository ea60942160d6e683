"""Two servers and two workers as real processes, sharing only PostgreSQL, Redis and S3.

Each process has a data directory and a ``HOME`` of its own, as it would on a
machine of its own; the test goes through them alternately, the way a load
balancer would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import boto3
import pytest
import requests

from tests.jobs.conftest import LEASE_SECONDS
from tests.support.databases import postgres_database
from tests.support.gate import gate_env
from tests.support.http_channel import serve_channel
from tests.support.packages import PackageDef, make_channel
from tests.support.s3_server import s3_server
from tests.support.serve import add_admin, serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PASSWORD = "a long enough password"
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


def machine_env(root: Path, name: str) -> dict[str, str]:
    home = root / name / "home"
    home.mkdir(parents=True)
    return {"HOME": str(home), "CONDASTORE_DATA_DIR": str(root / name / "data")}


class Worker:
    def __init__(self, env: dict[str, str], data_dir: Path, log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "condastore_web", "worker", "--data-dir", str(data_dir)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while b"serving" not in log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("condastore worker did not start:\n" + log.read_text())
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """(server URLs, workers, API session per server, channel URLs), all torn down after."""
    channel_root = tmp_path / "channel"
    make_channel(
        channel_root,
        [PackageDef("hello", "1.0"), PackageDef("libx", "1.0")]
        + [PackageDef(f"slow{i}", "1.0") for i in range(4)],
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    redis_url = os.environ.get("CONDASTORE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    with ExitStack() as stack:
        database_url = stack.enter_context(postgres_database())
        endpoint = stack.enter_context(s3_server())
        fast = stack.enter_context(serve_channel(channel_root))
        slow = stack.enter_context(serve_channel(channel_root, delay=5.0))
        from redis import Redis

        Redis.from_url(redis_url).flushdb()
        bucket = f"b{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket=bucket
        )
        shared = {
            "CONDASTORE_DATABASE_URL": database_url,
            "CONDASTORE_REDIS_URL": redis_url,
            "CONDASTORE_STORE_URL": f"s3://{bucket}/condastore",
            "CONDASTORE_S3_ENDPOINT_URL": endpoint,
            "CONDASTORE_S3_REGION": "us-east-1",
            "CONDASTORE_TARBALL": "true",
            "CONDASTORE_CHANNELS": fast,
            "CONDASTORE_BUILD_LEASE_SECONDS": str(LEASE_SECONDS),
            "CONDASTORE_IMAGE_WAIT_SECONDS": "120",
            **gate_env(),
        }
        for key, value in shared.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("CONDASTORE_DATA_DIR", raising=False)
        monkeypatch.delenv("CONDASTORE_CONFIG", raising=False)
        servers = []
        for i in range(2):
            env = machine_env(tmp_path, f"server{i}")
            data_dir = Path(env["CONDASTORE_DATA_DIR"])
            servers.append(stack.enter_context(serve(data_dir, env=env)).url)
            if i == 0:
                add_admin(data_dir, "ada", PASSWORD)
        workers = []
        for i in range(2):
            env = {**os.environ, **machine_env(tmp_path, f"worker{i}")}
            data_dir = Path(env.pop("CONDASTORE_DATA_DIR"))  # given by flag only
            worker = Worker(env, data_dir, tmp_path / f"worker{i}.log")
            stack.callback(worker.stop)
            workers.append(worker)
        token = requests.post(
            f"{servers[0]}/api/v1/auth/login",
            json={"username": "ada", "password": PASSWORD},
            timeout=30,
        ).json()["token"]
        sessions = []
        for _ in servers:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {token}"  # one token, both servers
            sessions.append(session)
        yield servers, workers, sessions, fast, slow, tmp_path


def submit(session, url, name, channel, *deps) -> dict:
    spec = f"name: {name}\nchannels: [{channel}]\ndependencies: [{', '.join(deps)}]\n"
    r = session.post(f"{url}/api/v1/environments", json={"specification": spec}, timeout=60)
    assert r.status_code in (200, 201, 202), r.text
    return r.json()


def wait_build(session, url, build_id, statuses=("COMPLETED", "FAILED", "CANCELED"), timeout=180):
    deadline = time.monotonic() + timeout
    while True:
        build = session.get(f"{url}/api/v1/builds/{build_id}", timeout=30).json()
        if build["status"] in statuses:
            return build
        assert time.monotonic() < deadline, f"build {build_id} still {build['status']}"
        time.sleep(0.3)


def log_text(session, url, build_id) -> str:
    return session.get(f"{url}/api/v1/builds/{build_id}/log", timeout=30).json()["text"]


def test_two_servers_and_two_workers_share_only_the_services(cluster):
    servers, workers, sessions, fast, slow, root = cluster
    a, b = servers
    sa, sb = sessions

    # Tokens: an API token from server a works on b; a registry token from b works on a.
    assert sb.get(f"{b}/api/v1/auth/me", timeout=30).status_code == 200
    registry_token = requests.get(
        f"{b}/auth/token",
        params={"service": "condastore", "scope": "repository:default/web:pull"},
        auth=("ada", PASSWORD),
        timeout=30,
    ).json()["token"]

    # Concurrent identical submits (four names, both servers): one install, one tarball.
    start = threading.Barrier(4)

    def submit_at(i: int) -> int:
        start.wait()
        return submit(sessions[i % 2], servers[i % 2], f"web{i}", fast, "hello", "libx")["id"]

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(submit_at, range(4)))
    done = [wait_build(sessions[i % 2], servers[(i + 1) % 2], b_id) for i, b_id in enumerate(ids)]
    assert {d["status"] for d in done} == {"COMPLETED"}, done
    logs = [log_text(sa, a, b_id) for b_id in ids]
    assert sum("installing 2 packages" in text for text in logs) == 1, logs
    tarballs = {a_["digest"] for d in done for a_ in d["artifacts"] if a_["kind"] == "tarball"}
    assert len(tarballs) == 1, done

    # Every artifact of a build submitted on a downloads from b.
    first = ids[0]
    for kind in ("yaml", "lockfile", "explicit", "tarball", "log"):
        r = sb.get(f"{b}/api/v1/builds/{first}/artifacts/{kind}", timeout=60)
        assert r.status_code == 200 and r.content, (kind, r.status_code, r.text[:300])
    assert b"name: web0" in sb.get(f"{b}/api/v1/builds/{first}/artifacts/yaml", timeout=30).content

    # Concurrent first pulls of one managed and one dynamic image, alternating servers.
    for repository in ("default/web0", "conda/hello/libx"):
        start = threading.Barrier(4)

        def pull(
            i: int, repository: str = repository, start: threading.Barrier = start
        ) -> tuple[int, str]:
            start.wait()
            r = requests.get(
                f"{servers[i % 2]}/v2/{repository}/manifests/latest",
                headers={"Accept": MANIFEST_TYPES},
                auth=("ada", PASSWORD),
                timeout=180,
            )
            return r.status_code, r.headers.get("Docker-Content-Digest", r.text[:300])

        with ThreadPoolExecutor(4) as pool:
            pulls = list(pool.map(pull, range(4)))
        assert {status for status, _ in pulls} == {200}, pulls
        assert len({digest for _, digest in pulls}) == 1, pulls
    r = requests.get(
        f"{a}/v2/default/web/tags/list",
        headers={"Authorization": f"Bearer {registry_token}"},
        timeout=30,
    )
    assert r.status_code in (200, 404), r.text  # authenticated on a, whatever the repository
    assert r.status_code != 401

    # kill -9 of the worker running a build: the other worker completes it.
    slow_build = submit(sa, a, "slow", slow, "slow0", "slow1")["id"]
    running = wait_build(sb, b, slow_build, statuses=("BUILDING",))
    time.sleep(1.0)
    horse = int(worker_of(running["id"]).split(":")[1])  # host:work process:job
    victim = next(w for w in workers if w.proc.pid == _parent(horse))
    os.killpg(victim.proc.pid, signal.SIGKILL)
    os.kill(horse, signal.SIGKILL)
    victim.proc.wait()
    finished = wait_build(sa, a, slow_build, timeout=240)
    assert finished["status"] == "COMPLETED", finished
    assert "no heartbeat" in log_text(sb, b, slow_build)

    # Cancel through the other server.
    canceled = submit(sb, b, "slow-cancel", slow, "slow2", "slow3")["id"]
    wait_build(sa, a, canceled, statuses=("BUILDING",))
    assert sa.post(f"{a}/api/v1/builds/{canceled}/cancel", timeout=30).status_code == 202
    stopped = wait_build(sb, b, canceled, timeout=60)
    assert stopped["status"] == "CANCELED"
    assert sb.get(f"{b}/api/v1/builds/{canceled}/artifacts/log", timeout=30).status_code == 200

    # GC from a third process sees the same installation.
    env = {**os.environ, **machine_env(root, "gc")}
    gc = subprocess.run(
        [sys.executable, "-m", "condastore_web", "gc", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert gc.returncode == 0, gc.stderr
    # No worker wrote into a data directory it was not given.
    for i in range(2):
        assert not (root / f"worker{i}" / "home" / ".local" / "share" / "condastore").exists()


def worker_of(build_id: int) -> str:
    """Which work process runs a build (the API does not say: the database does)."""
    from sqlalchemy import create_engine, select

    from condastore_core.db.models import Build

    engine = create_engine(os.environ["CONDASTORE_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return conn.scalar(select(Build.worker).where(Build.id == build_id)) or ""
    finally:
        engine.dispose()


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
