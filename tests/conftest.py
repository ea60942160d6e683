"""Fixtures shared by every test: the real conda-forge sample channel and test-built channels."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.service.context import Context
from condastore_core.service.namespaces import create_namespace
from condastore_core.settings import load_settings
from tests.support.databases import postgres_database
from tests.support.gate import gate_env
from tests.support.packages import PackageDef, make_channel

REPO_ROOT = Path(__file__).resolve().parent.parent


def _shared_dir(variable: str, default: str) -> Path:
    value = os.environ.get(variable)
    return Path(value) if value else (REPO_ROOT / default).resolve()


@pytest.fixture(scope="session")
def sample_channel() -> str:
    """The real conda-forge channel used for offline tests, as a `file://` URL."""
    root = _shared_dir("CONDASTORE_SAMPLE_CHANNEL", "../shared/conda-forge-sample")
    if not (root / "linux-64" / "repodata.json").is_file():
        pytest.skip(
            f"the conda-forge sample channel is not at {root}; "
            "set CONDASTORE_SAMPLE_CHANNEL to a copy of it"
        )
    return root.as_uri()


@pytest.fixture(scope="session")
def py39_repodata_channel() -> str:
    """Real conda-forge repodata for python=3.9 environments, without the packages."""
    root = _shared_dir("CONDASTORE_PY39_REPODATA", "../shared/repodata/conda-forge-py39-20240516")
    if not (root / "linux-64" / "repodata.json").is_file():
        pytest.skip(
            f"the python 3.9 repodata sample is not at {root}; "
            "set CONDASTORE_PY39_REPODATA to a copy of it"
        )
    return root.as_uri()


@pytest.fixture
def make_test_channel(tmp_path_factory):
    """Build a fresh `file://` channel from package definitions; returns its URL."""
    counter = itertools.count()

    def make(packages: list[PackageDef]) -> str:
        return make_channel(tmp_path_factory.mktemp(f"channel{next(counter)}"), packages)

    return make


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'condastore.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
def ctx(database_url, tmp_path):
    settings = load_settings(
        {"data_dir": tmp_path / "data", "database_url": database_url, "tarball": False},
        environ=gate_env(),
    )
    context = Context.from_settings(settings)
    queue = InProcessQueue(context)
    context.jobs = queue
    create_namespace(context, "default")
    yield context
    queue.shutdown(wait=True)
    context.engine.dispose()


@pytest.fixture(scope="session")
def python_channel(tmp_path_factory) -> str:
    """A channel holding a ``python`` package built from this machine's CPython (built once)."""
    from tests.support.python_package import build_python_package

    return build_python_package(tmp_path_factory.mktemp("python-channel"))


@pytest.fixture(scope="session")
def wheel_cache() -> Path:
    """Real wheels from PyPI (``WHEELS``), downloaded once into a cache kept across runs."""
    import subprocess
    import sys

    import platformdirs

    from tests.support.pypi_index import WHEELS

    cache = Path(
        os.environ.get("CONDASTORE_TEST_WHEELS")
        or Path(platformdirs.user_cache_dir("condastore-tests")) / "wheels"
    )
    names = [w.split("==")[0] for w in WHEELS]
    have = {p.name.split("-")[0].lower() for p in cache.glob("*.whl")}
    if not set(names) <= have:
        cache.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:"),
                *("--no-deps", "--dest", str(cache), *WHEELS),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot download the test wheels from PyPI (offline?): {result.stderr}")
    return cache


@pytest.fixture
def package_index(wheel_cache, tmp_path):
    """A PyPI-style index on a loopback port serving the cached wheels, an sdist-only
    project (``sdistonly``) and ``needsix``, whose wheel requires six."""
    from tests.support.pypi_index import PackageIndex, make_wheel, sdist_only, serve_index

    index = PackageIndex()
    for wheel in sorted(wheel_cache.glob("*.whl")):
        index.add(wheel)
    index.add(sdist_only(tmp_path))
    index.add(make_wheel(tmp_path, "needsix", "1.0", ("six>=1.16",)))
    with serve_index(index):
        yield index
