"""Mirrors and credentials: specs name the canonical channel, the server fetches the mirror."""

from __future__ import annotations

import base64

import pytest

from condastore_core.channels.gate import ChannelRefused
from condastore_core.errors import SolveError
from condastore_core.settings import Settings
from condastore_core.solve import solver_for
from condastore_core.spec import EnvironmentSpec
from tests.support.http_channel import channel_server
from tests.support.packages import PackageDef, make_channel

CANONICAL = "https://conda.anaconda.org/conda-forge"


def spec(*deps: str, channel: str = "conda-forge") -> EnvironmentSpec:
    return EnvironmentSpec.from_dict({"name": "t", "channels": [channel], "dependencies": deps})


def test_a_mirrored_channel_locks_its_canonical_urls_with_credentials_never_shown(tmp_path):
    root = tmp_path / "mirror"
    make_channel(root, [PackageDef("hello", "1.0")])
    with channel_server(root) as mirror:
        settings = Settings(
            data_dir=tmp_path / "data",
            allowed_networks=("127.0.0.0/8",),
            channel_mirrors={CANONICAL: mirror.url},
            channel_credentials={"127.0.0.1": "robot:s3cret-pass"},
        )
        solver = solver_for(settings)
        lock = solver.solve(spec("hello"), ["linux-64"])
        (record,) = lock.packages["linux-64"]
        assert record.url == f"{CANONICAL}/linux-64/hello-1.0-0.conda"
        assert lock.channels == (CANONICAL,)
        assert mirror.repodata_requests() > 0  # fetched from the mirror
        sent = {v for v in mirror.authorizations.values() if v}
        assert sent == {"Basic " + base64.b64encode(b"robot:s3cret-pass").decode()}
        with pytest.raises(SolveError) as info:
            solver.solve(spec("nosuch"), ["linux-64"])
        assert "s3cret" not in info.value.message and "s3cret" not in repr(settings)
        assert "s3cret" not in repr(solver.gate)


def test_policies_see_canonical_channels_and_the_gate_the_mirror(tmp_path):
    from condastore_core.channels import gate_for

    gate = gate_for(
        Settings(
            data_dir=tmp_path,
            channels=("bioconda",),
            channel_mirrors={CANONICAL: "http://127.0.0.1:9/conda-forge"},
        )
    )
    assert gate.check_channel("conda-forge") == CANONICAL
    gate.narrowed(["conda-forge"]).check_channel("conda-forge")
    with pytest.raises(ChannelRefused, match="allowed_channels"):
        gate.narrowed(["bioconda"]).check_channel("conda-forge")
    # What is contacted is the mirror: another loopback port is not allowed by it.
    with pytest.raises(ChannelRefused, match="channel gate"):
        gate.check_url("http://127.0.0.1:10/conda-forge/linux-64/repodata.json")


def test_custom_channels_name_their_own_server(tmp_path):
    root = tmp_path / "internal"
    make_channel(root / "internal", [PackageDef("tool", "1.0")])
    with channel_server(root) as server:
        settings = Settings(
            data_dir=tmp_path / "data",
            allowed_networks=("127.0.0.0/8",),
            custom_channels={"internal": server.url},
        )
        lock = solver_for(settings).solve(spec("tool", channel="internal"), ["linux-64"])
        assert lock.channels == (f"{server.url}/internal",)
