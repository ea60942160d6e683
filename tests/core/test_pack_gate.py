"""The tarball's second link fetches a package missing from the cache through the gate only.

Packing runs in a child process; a package the cache lost is downloaded again
there with the gate's client, made in that child. A package URL the gate
refuses is refused with the gate's own error, and never contacted.
"""

from __future__ import annotations

import json
import shutil
import tempfile

import pytest

from condastore_core import layout
from condastore_core.builds import LocalBuilder
from condastore_core.channels import ChannelRefused, gate_for
from condastore_core.channels.proxy import client_for
from condastore_core.image.builder import ImageBuilder
from condastore_core.lock import Lock
from condastore_core.settings import load_settings
from condastore_core.solve import Solver
from condastore_core.spec import EnvironmentSpec
from condastore_core.store import LocalBlobStore
from tests.core.test_image import MemoryLayerCache
from tests.support.packages import PackageDef
from tests.support.tripwire import tripwire


def enforced_gate(tmp_path):
    """Local channels in temporary directories allowed; loopback networks not."""
    settings = {"data_dir": tmp_path / "d", "allowed_channel_dirs": tempfile.gettempdir()}
    return gate_for(load_settings(settings, environ={}))


def point_packages_at(prefix, base_url: str) -> None:
    for meta in (prefix / "conda-meta").glob("*.json"):
        record = json.loads(meta.read_text())
        record["url"] = f"{base_url}/linux-64/{record['fn']}"
        meta.write_text(json.dumps(record))


def test_pack_refuses_a_denied_package_url_with_the_cache_emptied(make_test_channel, tmp_path):
    url = make_test_channel([PackageDef("hello", "1.0")])
    gate = enforced_gate(tmp_path)
    builder = LocalBuilder(
        tmp_path / "data", LocalBlobStore(tmp_path / "blobs"), Solver(gate=gate), tarball=False
    )
    spec = EnvironmentSpec.from_dict({"name": "t", "channels": [url], "dependencies": ["hello"]})
    result = builder.build(spec, platforms=["linux-64"])
    shutil.rmtree(layout.package_cache_dir(tmp_path / "data"))
    with tripwire() as wire:
        point_packages_at(result.prefix, f"{wire.url}/chan")
        with pytest.raises(ChannelRefused, match="may not be fetched by this server"):
            builder.pack(result.build_key)
        assert wire.hits == []


def test_layers_fetch_through_the_gate_client_only(make_test_channel, tmp_path):
    """A layer job's package URL on a denied network: the gate's proxy refuses it."""
    url = make_test_channel([PackageDef("hello", "1.0")])
    gate = enforced_gate(tmp_path)
    lock = Solver(gate=gate).solve(
        EnvironmentSpec.from_dict({"name": "t", "channels": [url], "dependencies": ["hello"]}),
        ["linux-64"],
    )
    with tripwire() as wire:
        record = lock.records("linux-64")[0]
        moved = record.model_copy(update={"url": f"{wire.url}/chan/linux-64/{record.file_name}"})
        lock = Lock.create(list(lock.channels), {"linux-64": [moved]})
        builder = ImageBuilder(
            LocalBlobStore(tmp_path / "blobs"),
            MemoryLayerCache(),
            tmp_path / "pkgs",
            tmp_path / "scratch",
            client=client_for(gate),
        )
        with pytest.raises(ChannelRefused):
            builder.build_layers(lock, "linux-64", ["hello"])
        assert wire.hits == []
