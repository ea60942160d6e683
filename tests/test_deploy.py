"""The deployment in ``deploy/``: a compose file that compose itself accepts, and that
shares between servers and workers only what the design says may be shared."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
COMPOSE = DEPLOY / "compose.yaml"


def compose_command() -> list[str]:
    """``docker compose`` (the plugin) or ``docker-compose``; skip when neither is here."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy is not None:
        return [legacy]
    pytest.skip("neither `docker compose` nor `docker-compose` is installed")


def test_compose_accepts_the_deployment():
    result = subprocess.run(
        [*compose_command(), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=DEPLOY,
    )
    assert result.returncode == 0, result.stderr


def test_servers_and_workers_share_only_the_services():
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert {"server", "worker", "postgres", "redis", "minio", "proxy"} <= set(services)
    for role in ("server", "worker"):
        service = services[role]
        assert service["deploy"]["replicas"] >= 2
        env = service["environment"]
        assert env["CONDASTORE_DATABASE_URL"].startswith("postgresql")
        assert env["CONDASTORE_REDIS_URL"].startswith("redis://")
        assert env["CONDASTORE_STORE_URL"].startswith("s3://")
        assert "volumes" not in service  # no data directory, key file or lock is shared
    assert services["worker"]["command"][0] == "worker"
    assert services["server"]["command"][0] == "serve"
