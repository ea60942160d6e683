"""pip dependencies: locked with uv against a PyPI-style index, installed after conda, in every
form (prefix, conda-lock.yml, requirements.txt, conda-pack tarball, image layer).

The interpreter is this machine's own CPython packaged as ``python`` (the sample
channel has none); the index is a local PEP 503 server holding real wheels.
"""

from __future__ import annotations

import base64
import gzip
import io
import os
import shutil
import subprocess
import tarfile
import tempfile

import pytest
from conda_lock.lockfile import parse_conda_lock_file

from condastore_core.artifacts import ArtifactKind
from condastore_core.builds import LocalBuilder
from condastore_core.channels.gate import ChannelGate, ChannelRefused
from condastore_core.digests import Digest
from condastore_core.errors import InstallError, SolveError
from condastore_core.install import install_lock
from condastore_core.pip.index import PipIndex
from condastore_core.solve import Solver
from condastore_core.spec import EnvironmentSpec
from condastore_core.store import LocalBlobStore, read_all
from tests.core.test_image import MemoryLayerCache
from tests.support.python_package import python_version


def pip_spec(*channels: str, pip: list[str], conda: tuple[str, ...] = ("python",)):
    return EnvironmentSpec.from_dict(
        {"name": "p", "channels": list(channels), "dependencies": [*conda, {"pip": pip}]}
    )


def solver_for_index(index, tmp_path, gate: ChannelGate | None = None) -> Solver:
    kw = {"gate": gate} if gate is not None else {}
    solver = Solver(**kw)
    solver.pip = PipIndex(
        index_url=index.simple_url, gate=solver.gate, cache_dir=tmp_path / "pip-cache"
    )
    return solver


def run(*cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


@pytest.mark.slow
def test_pip_dependencies_lock_install_and_pack(
    python_channel, sample_channel, package_index, tmp_path
):
    """conda-store's layout (python, pip, {pip: [...]}) builds into every form."""
    solver = solver_for_index(package_index, tmp_path)
    builder = LocalBuilder(tmp_path / "data", LocalBlobStore(tmp_path / "blobs"), solver)
    spec = pip_spec(
        python_channel, sample_channel, pip=["six", "packaging>=23"], conda=("python", "pip")
    )
    result = builder.build(spec)

    lock = parse_lock(builder, result, tmp_path)
    pips = {p.name: p for p in lock.package if p.manager == "pip"}
    assert set(pips) == {"six", "packaging"}
    assert pips["six"].version == "1.17.0" and pips["packaging"].version == "24.2"
    assert pips["six"].url == f"{package_index.url}/files/six-1.17.0-py2.py3-none-any.whl"
    assert pips["six"].hash.sha256 and pips["six"].categories == {"main"}
    python = next(p for p in lock.package if p.name == "python")
    assert python.version == python_version()

    requirements = read_all(builder.store, result.artifacts[ArtifactKind.REQUIREMENTS].digest)
    lines = [x for x in requirements.decode().splitlines() if not x.startswith("#")]
    assert lines == [
        f"{name} @ {pips[name].url} --hash=sha256:{pips[name].hash.sha256}"
        for name in ("packaging", "six")
    ]
    pinned = read_all(builder.store, result.artifacts[ArtifactKind.YAML].digest).decode()
    assert "- six==1.17.0" in pinned

    # Installed with the prefix's own python, after the conda packages (conda's pip is there).
    out = run(
        result.prefix / "bin" / "python", "-c", "import six, packaging, pip; print(six.__file__)"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(str(result.prefix / "lib"))
    installer = next(
        (result.prefix / "lib").glob("python*/site-packages/six-*.dist-info/INSTALLER")
    )
    assert installer.read_text().strip() == "uv"

    # The conda-pack tarball carries them, and they import once unpacked elsewhere.
    target = tmp_path / "unpacked"
    target.mkdir()
    with tarfile.open(read_tarball(builder, result, tmp_path)) as tf:
        tf.extractall(target, filter="tar")
    shutil.rmtree(result.prefix)
    out = run(target / "bin" / "python", target / "bin" / "conda-unpack")
    assert out.returncode == 0, out.stderr
    out = run(target / "bin" / "python", "-c", "import six; print(six.__file__)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(str(target))


def parse_lock(builder, result, tmp_path):
    path = tmp_path / "conda-lock.yml"
    path.write_bytes(read_all(builder.store, result.artifacts[ArtifactKind.LOCKFILE].digest))
    return parse_conda_lock_file(path)


def read_tarball(builder, result, tmp_path):
    path = tmp_path / "env.tar.gz"
    path.write_bytes(read_all(builder.store, result.artifacts[ArtifactKind.TARBALL].digest))
    return path


@pytest.mark.slow
def test_install_fetches_only_the_locked_wheels_and_uses_no_index(
    python_channel, package_index, tmp_path
):
    solver = solver_for_index(package_index, tmp_path)
    lock = solver.solve(pip_spec(python_channel, pip=["six"]), ["linux-64"])
    package_index.requests.clear()
    install_lock(lock, "linux-64", tmp_path / "env", tmp_path / "pkgs", pip=solver.pip)
    assert package_index.requests == ["/files/six-1.17.0-py2.py3-none-any.whl"]
    out = run(tmp_path / "env" / "bin" / "python", "-c", "import six")
    assert out.returncode == 0, out.stderr


@pytest.mark.slow
def test_a_wheel_whose_bytes_changed_after_locking_is_refused(
    python_channel, package_index, tmp_path
):
    solver = solver_for_index(package_index, tmp_path)
    lock = solver.solve(pip_spec(python_channel, pip=["six", "idna"]), ["linux-64"])
    # The index now serves other bytes under six's name (a tampered mirror).
    package_index.files["six-1.17.0-py2.py3-none-any.whl"] = package_index.files[
        "idna-3.10-py3-none-any.whl"
    ]
    with pytest.raises(InstallError, match=r"pip package six 1\.17\.0: sha256 mismatch"):
        install_lock(lock, "linux-64", tmp_path / "env", tmp_path / "pkgs", pip=solver.pip)
    assert not (tmp_path / "env").exists()
    assert not list((tmp_path / "pip-cache").glob("wheels/*/six-*"))


@pytest.mark.slow
def test_a_requirement_with_only_a_source_archive_names_it(python_channel, package_index, tmp_path):
    solver = solver_for_index(package_index, tmp_path)
    with pytest.raises(SolveError) as info:
        solver.solve(pip_spec(python_channel, pip=["six", "sdistonly"]), ["linux-64"])
    first = info.value.message.splitlines()[0]
    assert "pip requirement 'sdistonly' cannot be resolved for linux-64" in first
    assert "sdistonly" in info.value.message.split("\n", 1)[1]


@pytest.mark.slow
def test_a_requirement_that_no_index_has_names_it(python_channel, package_index, tmp_path):
    solver = solver_for_index(package_index, tmp_path)
    with pytest.raises(SolveError, match="pip requirement 'nosuchproject' cannot be resolved"):
        solver.solve(pip_spec(python_channel, pip=["six", "nosuchproject"]), ["linux-64"])


@pytest.mark.slow
def test_pip_urls_on_a_denied_network_are_refused(python_channel, package_index, tmp_path):
    """An enforcing gate that allows the python channel's directory and nothing private."""
    gate = ChannelGate(enforce=True, allowed_dirs=(_resolved_tmp(),))
    solver = solver_for_index(package_index, tmp_path, gate)
    # The index itself is on loopback.
    with pytest.raises(ChannelRefused, match="pip index"):
        solver.solve(pip_spec(python_channel, pip=["six"]), ["linux-64"])
    # A direct URL on a private network, with the index configured (so allowed).
    index = "https://pypi.org/simple"
    solver.pip = PipIndex(index_url=index, gate=gate.with_configured(index))
    url = "http://10.11.12.13/six-1.17.0-py2.py3-none-any.whl"
    with pytest.raises(ChannelRefused, match=r"pip requirement 'six ?@ http://10\.11\.12\.13"):
        solver.solve(pip_spec(python_channel, pip=[f"six @ {url}"]), ["linux-64"])


def _resolved_tmp():
    from pathlib import Path

    return Path(tempfile.gettempdir()).resolve()


@pytest.mark.slow
def test_an_enforcing_gate_routes_uv_through_its_proxy(python_channel, package_index, tmp_path):
    """Loopback allowed by the administrator: uv's requests pass the gate's proxy and work."""
    import ipaddress

    gate = ChannelGate(
        enforce=True,
        allowed_dirs=(_resolved_tmp(),),
        allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),),
    )
    solver = solver_for_index(package_index, tmp_path, gate)
    lock = solver.solve(pip_spec(python_channel, pip=["six"]), ["linux-64"])
    assert [p.name for p in lock.pip_records("linux-64")] == ["six"]


@pytest.mark.slow
def test_the_image_has_one_pip_layer_after_the_conda_layers(
    python_channel, package_index, tmp_path
):
    from condastore_core.image.builder import ImageBuilder

    solver = solver_for_index(package_index, tmp_path)
    lock = solver.solve(pip_spec(python_channel, pip=["six", "packaging"]), ["linux-64"])
    store = LocalBlobStore(tmp_path / "blobs")
    builder = ImageBuilder(
        store, MemoryLayerCache(), tmp_path / "pkgs", tmp_path / "tmp", pip=solver.pip
    )
    image = builder.build(lock, "linux-64")
    assert [r.packages for r in image.layers] == [("python",), ("pip:packaging", "pip:six"), ()]
    root = tmp_path / "rootfs"
    root.mkdir()
    names = []
    for record in image.layers:
        data = gzip.decompress(read_all(store, Digest.parse(record.digest)))
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            names.append(tf.getnames())
            tf.extractall(root, filter="tar")
    pip_files = names[1]
    assert "opt/conda/lib/python3.11/site-packages/six.py" in pip_files
    assert not any("conda-meta" in n or n.endswith("bin/python") for n in pip_files)
    # Built once: a second image of the same lock takes the layer from the cache.
    assert builder.build(lock, "linux-64").layers[1] == image.layers[1]
    if os.geteuid() != 0 or shutil.which("chroot") is None:
        pytest.skip("running python inside the image rootfs needs root (chroot, mount /proc)")
    python = root / "opt" / "conda" / "bin" / "python"
    for lib in host_libraries(python, root):
        target = root / lib.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib.resolve(), target)
    (root / "proc").mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    try:
        out = run(
            "chroot",
            root,
            "/opt/conda/bin/python",
            "-c",
            "import six; print(six.__file__)",
            timeout=60,
        )
    finally:
        subprocess.run(["umount", str(root / "proc")], check=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "/opt/conda/lib/python3.11/site-packages/six.py"


def host_libraries(binary, root):
    from pathlib import Path

    out = run("ldd", binary).stdout
    return [
        Path(token)
        for line in out.splitlines()
        for token in line.split()
        if token.startswith("/") and str(root) not in token
    ]


def test_a_lockfile_with_a_wheel_on_a_denied_network_is_refused(tmp_path):
    """A submitted conda-lock.yml is checked like a solve: its pip URLs pass the gate too."""
    from condastore_core.lock import Lock, parse_conda_lock_yaml, to_conda_lock_yaml
    from condastore_core.pip.records import PipPackage

    wheel = PipPackage(
        name="six",
        version="1.17.0",
        url="http://169.254.169.254/latest/six-1.17.0-py2.py3-none-any.whl",
        sha256="4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274",
    )
    lock = parse_conda_lock_yaml(
        to_conda_lock_yaml(Lock.create([], {"linux-64": []}, pip={"linux-64": [wheel]}))
    )
    gate = ChannelGate(enforce=True).narrowed(["https://conda.example.org/channel"])
    with pytest.raises(ChannelRefused, match=r"pip package URL 'http://169\.254\.169\.254"):
        gate.check_lock(lock)


@pytest.mark.slow
def test_index_credentials_are_sent_and_never_shown(python_channel, package_index, tmp_path):
    solver = solver_for_index(package_index, tmp_path)
    solver.pip = PipIndex(
        index_url=package_index.simple_url,
        credentials=(("127.0.0.1", "alice:s3cret-pw"),),
        gate=solver.gate,
        cache_dir=tmp_path / "pip-cache",
    )
    expected = "Basic " + base64.b64encode(b"alice:s3cret-pw").decode()
    package_index.required_authorization = expected  # a private index: 401 without them
    lock = solver.solve(pip_spec(python_channel, pip=["six"]), ["linux-64"])
    install_lock(lock, "linux-64", tmp_path / "env", tmp_path / "pkgs", pip=solver.pip)
    seen = list(zip(package_index.requests, package_index.authorizations, strict=True))
    assert ("/simple/six/", expected) in seen  # uv, from the private netrc
    assert seen[-1] == ("/files/six-1.17.0-py2.py3-none-any.whl", expected)  # the installer
    assert "s3cret" not in repr(solver.pip) and "s3cret" not in lock.model_dump_json()
    with pytest.raises(SolveError) as info:
        solver.solve(pip_spec(python_channel, pip=["nosuchproject"]), ["linux-64"])
    assert "s3cret" not in info.value.message


@pytest.mark.slow
def test_dependencies_of_pip_packages_are_locked_and_recorded(
    python_channel, package_index, tmp_path
):
    from condastore_core.lock import to_conda_lock_yaml

    solver = solver_for_index(package_index, tmp_path)
    lock = solver.solve(pip_spec(python_channel, pip=["needsix"]), ["linux-64"])
    records = {p.name: p for p in lock.pip_records("linux-64")}
    assert set(records) == {"needsix", "six"}
    assert records["needsix"].depends == ("six",) and records["six"].depends == ()
    path = tmp_path / "conda-lock.yml"
    path.write_text(to_conda_lock_yaml(lock))
    parsed = {p.name: p for p in parse_conda_lock_file(path).package if p.manager == "pip"}
    assert parsed["needsix"].dependencies == {"six": "*"}
    install_lock(lock, "linux-64", tmp_path / "env", tmp_path / "pkgs", pip=solver.pip)
    out = run(tmp_path / "env" / "bin" / "python", "-c", "import needsix, six")
    assert out.returncode == 0, out.stderr
