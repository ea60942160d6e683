"""A spec with pip requirements built by the service: solved, installed and packed by the
build jobs of a server whose channel gate is enforced."""

from __future__ import annotations

import tarfile

import pytest

from condastore_core.db.models import BuildStatus
from condastore_core.digests import Digest
from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.lock import parse_conda_lock_yaml
from condastore_core.service import builds, environments, namespaces
from condastore_core.service.context import Context
from condastore_core.service.logs import read_log
from condastore_core.settings import load_settings
from condastore_core.spec import EnvironmentSpec
from condastore_core.store import read_all
from tests.support.gate import gate_env


@pytest.mark.slow
def test_a_pip_spec_builds_with_requirements_and_tarball(python_channel, package_index, tmp_path):
    settings = load_settings(
        {
            "data_dir": tmp_path / "data",
            "database_url": f"sqlite:///{tmp_path / 'condastore.db'}",
            "tarball": True,
            "pip_index_url": package_index.simple_url,
        },
        environ=gate_env(),
    )
    assert settings.channel_gate == "enforce"
    ctx = Context.from_settings(settings)
    ctx.jobs = InProcessQueue(ctx)
    try:
        namespaces.create_namespace(ctx, "default")
        spec = EnvironmentSpec.from_dict(
            {
                "name": "withpip",
                "channels": [python_channel],
                "dependencies": ["python", {"pip": ["six", "idna"]}],
            }
        )
        submitted = environments.submit(ctx, "default", spec)
        ctx.jobs.wait_idle(timeout=300)
        build = builds.get_build(ctx, submitted.id)
        assert build.status == BuildStatus.COMPLETED, read_log(ctx, build.id).text
        kinds = {a.kind: a for a in build.artifacts}
        assert {"requirements", "tarball", "lockfile"} <= set(kinds)
        lock = parse_conda_lock_yaml(read_all(ctx.store, Digest.parse(kinds["lockfile"].digest)))
        assert lock.lock_hash == build.lock_hash
        assert [p.name for p in lock.pip_records(lock.platforms[0])] == ["idna", "six"]
        requirements = read_all(ctx.store, Digest.parse(kinds["requirements"].digest)).decode()
        assert "six @ " in requirements and "--hash=sha256:" in requirements
        with tarfile.open(ctx.store.local_path(Digest.parse(kinds["tarball"].digest))) as tf:
            names = set(tf.getnames())
        assert any(n.endswith("site-packages/six.py") for n in names)
        assert any(n.endswith("site-packages/idna/__init__.py") for n in names)
        assert "2 pip packages" in read_log(ctx, build.id).text
    finally:
        ctx.jobs.shutdown()
        ctx.engine.dispose()
