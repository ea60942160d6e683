"""A slow download of a large blob from ``condastore serve`` is never cut, and never blocks others.

A plain sync gunicorn worker is killed by its 30-second timeout in the middle
of such a download; ``condastore serve``'s threaded workers keep their
heartbeat apart from the requests they answer.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import shutil
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.support.serve import add_admin, serve

PASSWORD = "a long password"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"ada:{PASSWORD}".encode()).decode()}
MIB = 1024 * 1024
#: The figures of the report: 512 MiB read at 8 MB/s take 67 s, past gunicorn's 30 s timeout.
BLOB_MIB = 512
RATE = 8_000_000


def blocks(seed: bytes) -> Iterator[bytes]:
    """The blob, a MiB at a time, each MiB different so a lost or repeated one shows."""
    for i in range(BLOB_MIB):
        yield i.to_bytes(8, "big") + seed[8:]


def connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)


@pytest.mark.slow
def test_a_slow_download_past_the_worker_timeout_completes_while_others_are_answered(tmp_path):
    data = tmp_path / "data"
    try:
        add_admin(data, "ada", PASSWORD)
        with serve(data, "--workers", "2", "--threads", "4") as served:
            _download_slowly_while_asking_others(served.url)
    finally:
        shutil.rmtree(data, ignore_errors=True)  # half a GiB is not left behind


def _download_slowly_while_asking_others(url: str) -> None:
    seed = os.urandom(MIB)
    expected = hashlib.sha256()
    for block in blocks(seed):
        expected.update(block)
    digest = f"sha256:{expected.hexdigest()}"
    conn = connect(url)
    conn.request("POST", "/api/v1/namespaces", body=b'{"name": "ns"}', headers=AUTH)
    assert conn.getresponse().status == 201
    conn.close()
    conn = connect(url)  # the blob goes up chunked, as it is made
    conn.request(
        "POST", f"/v2/ns/big/blobs/uploads/?digest={digest}", body=blocks(seed), headers=AUTH
    )
    pushed = conn.getresponse()
    assert pushed.status == 201, pushed.read()
    conn.close()

    result: dict[str, object] = {}

    def download() -> None:
        got = hashlib.sha256()
        size = 0
        conn = connect(url)
        conn.request("GET", f"/v2/ns/big/blobs/{digest}", headers=AUTH)
        resp = conn.getresponse()
        result["status"] = resp.status
        start = time.monotonic()
        while chunk := resp.read(64 * 1024):
            got.update(chunk)
            size += len(chunk)
            ahead = size / RATE - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)  # a client on a slow line
        result.update(digest=f"sha256:{got.hexdigest()}", size=size)
        result["seconds"] = time.monotonic() - start
        conn.close()

    reader = threading.Thread(target=download)
    reader.start()
    answered, slowest = 0, 0.0
    while reader.is_alive():
        began = time.monotonic()
        conn = connect(url)
        conn.request("GET", "/api/v1", headers=AUTH)
        other = conn.getresponse()
        assert other.status == 200, other.read()
        other.read()
        conn.close()
        slowest = max(slowest, time.monotonic() - began)
        answered += 1
        time.sleep(0.5)
    reader.join()

    assert result["status"] == 200
    assert result["size"] == BLOB_MIB * MIB
    assert result["digest"] == digest
    assert result["seconds"] > 30  # past the timeout that cut it under a sync worker
    assert answered > 30 and slowest < 5
