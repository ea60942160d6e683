"""The channel gate itself: which URLs pass, how they are compared, and its proxy for rattler."""

from __future__ import annotations

import socket

import pytest

from condastore_core.channels import ChannelRefused, gate_for, normalize_url
from condastore_core.channels.proxy import GateProxy
from condastore_core.errors import ConfigError
from condastore_core.settings import load_settings
from tests.support.tripwire import tripwire


def gate(tmp_path, **overrides):
    return gate_for(load_settings({"data_dir": tmp_path / "d", **overrides}, environ={}))


def test_the_default_gate_allows_the_configured_channels_and_public_hosts_only(tmp_path):
    g = gate(tmp_path, channels="conda-forge,file:///srv/local-channel")
    assert g.check_channel("conda-forge") == "https://conda.anaconda.org/conda-forge"
    g.check_channel("bioconda")  # under the configured channel alias
    g.check_url("file:///srv/local-channel/linux-64/zstd-1.5.6-0.conda")
    for url in (
        "file:///etc",
        "file:///srv/local-channel/../../etc/passwd",
        "http://127.0.0.1:6379/chan",
        "http://localhost/chan",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/chan",
        "http://192.168.1.1/chan",
        "http://[::1]/chan",
        "http://[::ffff:127.0.0.1]/chan",
        "http://0.0.0.0/chan",
        "http://2130706433/chan",  # 127.0.0.1 as one number
        "ftp://example.org/chan",
        "s3://bucket/chan",
    ):
        with pytest.raises(ChannelRefused, match="may not be fetched by this server"):
            g.check_url(url)


def test_allowed_directories_and_networks_are_opened_by_settings_only(tmp_path):
    allowed = tmp_path / "channels"
    (allowed / "mine").mkdir(parents=True)
    (allowed / "escape").symlink_to("/etc")
    g = gate(tmp_path, allowed_channel_dirs=str(allowed), allowed_networks="10.0.0.0/8,localhost")
    g.check_channel(str(allowed / "mine"))
    g.check_url("http://10.1.2.3/chan")
    g.check_url("http://localhost:8080/chan")
    for url in ((allowed / "escape").as_uri(), "http://10.0.0.1.nip.invalid/x", "http://[fe80::1]"):
        with pytest.raises(ChannelRefused):
            g.check_url(url)


def test_a_policy_narrows_the_gate(tmp_path):
    g = gate(tmp_path).narrowed(["conda-forge"])
    g.check_url("https://conda.anaconda.org/conda-forge/noarch/x-1-0.conda")
    with pytest.raises(ChannelRefused, match="allowed_channels"):
        g.check_url("https://conda.anaconda.org/bioconda/noarch/x-1-0.conda")
    with pytest.raises(ChannelRefused, match="allowed_channels"):
        g.check_url("https://conda.anaconda.org/conda-forge/../bioconda/noarch/x-1-0.conda")


def test_urls_are_compared_normalised():
    assert normalize_url("HTTPS://Example.org/a/b/") == "https://example.org/a/b"
    assert normalize_url("https://example.org/a/./c/../b") == "https://example.org/a/b"
    assert normalize_url("https://example.org/a/%2e%2e/b") == "https://example.org/b"
    assert normalize_url("file:///srv/x/") == "file:///srv/x"


def test_the_gate_setting_is_validated(tmp_path):
    assert gate(tmp_path, channel_gate="open").enforce is False
    with pytest.raises(ConfigError, match="expected enforce or open"):
        gate(tmp_path, channel_gate="maybe")


def proxy_answer(proxy: GateProxy, request: bytes) -> bytes:
    port = int(proxy.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        return s.recv(65536)


def test_the_proxy_refuses_every_hop_the_gate_refuses_before_connecting(tmp_path):
    with tripwire() as wire:
        proxy = GateProxy(gate(tmp_path))
        for request in (
            f"CONNECT 127.0.0.1:{wire.port} HTTP/1.1\r\n\r\n",
            f"CONNECT localhost:{wire.port} HTTP/1.1\r\n\r\n",
            "CONNECT 169.254.169.254:443 HTTP/1.1\r\n\r\n",
            "CONNECT 10.0.0.1:443 HTTP/1.1\r\n\r\n",
            f"GET {wire.url}/chan/repodata.json HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET file:///etc/passwd HTTP/1.1\r\n\r\n",
        ):
            answer = proxy_answer(proxy, request.encode())
            assert answer.startswith(b"HTTP/1.1 403 Forbidden"), answer
        assert wire.hits == []


def test_the_proxy_forwards_what_the_gate_allows(tmp_path):
    with tripwire() as wire:
        https = wire.url.replace("http:", "https:")
        proxy = GateProxy(gate(tmp_path, channels=f"{wire.url}/chan,{https}/chan"))
        proxy_answer(proxy, f"GET {wire.url}/chan/x HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        proxy_answer(proxy, f"CONNECT 127.0.0.1:{wire.port} HTTP/1.1\r\n\r\n".encode())
        assert len(wire.hits) == 2
        answer = proxy_answer(proxy, f"GET {wire.url}/other HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 403") and len(wire.hits) == 2
