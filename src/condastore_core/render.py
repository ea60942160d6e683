"""The text forms of a build (pinned environment.yaml, conda-lock.yml, @EXPLICIT list, and
``requirements.txt`` for the pip packages)."""

from __future__ import annotations

import yaml

from condastore_core.artifacts import ArtifactKind
from condastore_core.lock import Lock, conda_lock_content_hash, to_conda_lock_yaml, to_explicit
from condastore_core.spec import EnvironmentSpec


def pinned_environment_yaml(spec: EnvironmentSpec, lock: Lock, platform: str) -> str:
    """``environment.yaml`` with every package pinned to ``name=version=build``."""
    dependencies: list[object] = [f"{r.name}={r.version}={r.build}" for r in lock.records(platform)]
    if lock.pip_records(platform):
        dependencies.append({"pip": [f"{p.name}=={p.version}" for p in lock.pip_records(platform)]})
    data: dict[str, object] = {
        "name": spec.name,
        "channels": list(lock.channels),
        "dependencies": dependencies,
    }
    if spec.variables:
        data["variables"] = dict(spec.variables)
    if spec.description:
        data["description"] = spec.description
    header = f"# pinned for {platform}; lock_hash: {lock.lock_hash}\n"
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def conda_lock_yml(spec: EnvironmentSpec, lock: Lock) -> str:
    """``conda-lock.yml`` whose input hash is conda-lock's own for the spec (fresh to it).

    conda-lock hashes a spec with pip requirements only after mapping their names
    to conda's, from a table it downloads; a build does not fetch that, so such
    a lockfile carries the spec hash instead (conda-lock will find it stale).
    """
    content_hash = (
        None if spec.pip else conda_lock_content_hash(spec.to_environment_yaml(), lock.platforms)
    )
    return to_conda_lock_yaml(lock, spec_hash=spec.spec_hash, content_hash=content_hash)


def requirements_txt(lock: Lock, platform: str) -> str:
    """The pip packages as ``pip install --no-deps --require-hashes -r`` takes them."""
    lines = [
        f"# pip packages for {platform}; lock_hash: {lock.lock_hash}",
        "# install after the conda packages with:",
        "#   python -m pip install --no-deps --require-hashes -r requirements.txt",
    ]
    lines += [p.requirement_line() for p in lock.pip_records(platform)]
    return "\n".join(lines) + "\n"


def render_text_artifacts(
    spec: EnvironmentSpec, lock: Lock, platform: str
) -> dict[ArtifactKind, bytes]:
    artifacts = {
        ArtifactKind.YAML: pinned_environment_yaml(spec, lock, platform).encode(),
        ArtifactKind.LOCKFILE: conda_lock_yml(spec, lock).encode(),
        ArtifactKind.EXPLICIT: to_explicit(lock, platform).encode(),
    }
    if lock.pip_records(platform):
        artifacts[ArtifactKind.REQUIREMENTS] = requirements_txt(lock, platform).encode()
    return artifacts
