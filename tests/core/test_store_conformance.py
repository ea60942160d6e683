"""One suite every blob store backend passes: the local directory, and S3 over real HTTP."""

from __future__ import annotations

import hashlib
import os
import time
import urllib.request
import uuid

import boto3
import pytest

from condastore_core.digests import Digest
from condastore_core.errors import BlobNotFound, DigestMismatch
from condastore_core.store import LocalBlobStore, open_store, put, read_all
from condastore_core.store.s3 import S3BlobStore
from tests.support.s3_server import s3_server

CREDENTIALS = {
    "aws_access_key_id": "test",
    "aws_secret_access_key": "test",
    "region_name": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_endpoint():
    with s3_server() as url:
        yield url


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def store(request, tmp_path):
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"b{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, **CREDENTIALS).create_bucket(Bucket=bucket)
    return S3BlobStore(bucket, "some/prefix", presign=True, endpoint_url=endpoint, **CREDENTIALS)


def sha(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def test_put_stat_open_and_ranges(store):
    data = b"content addressed" * 100
    info = put(store, data)
    assert info.digest == sha(data) and info.size == len(data)
    assert store.exists(info.digest) and store.stat(info.digest).size == len(data)
    assert read_all(store, info.digest) == data
    with store.open(info.digest, 5, 25) as f:
        assert f.read() == data[5:25]
    with store.open(info.digest, 10) as f:
        assert f.read() == data[10:]


def test_a_wrong_digest_is_refused_and_nothing_is_visible(store):
    writer = store.writer()
    writer.write(b"these bytes")
    with pytest.raises(DigestMismatch):
        writer.commit(sha(b"other bytes"))
    assert not store.exists(sha(b"these bytes"))
    assert not store.exists(sha(b"other bytes"))
    assert list(store.iterate()) == []


def test_cancel_leaves_nothing(store):
    writer = store.writer()
    writer.write(b"half an upload")
    writer.cancel()
    assert list(store.iterate()) == []


def test_an_upload_resumes_by_id_in_another_writer(store):
    first = store.writer()
    first.write(b"part one, ")
    first.close()
    second = store.writer(upload_id=first.upload_id)
    assert second.size == len(b"part one, ")
    second.write(b"part two")
    info = second.commit(sha(b"part one, part two"))
    assert read_all(store, info.digest) == b"part one, part two"
    with pytest.raises(BlobNotFound):
        store.writer(upload_id=first.upload_id)  # committed uploads are gone


def test_a_resumed_upload_drops_bytes_staged_past_the_recorded_offset(store):
    """A session that died after staging bytes but before they were recorded never happened."""
    first = store.writer()
    first.write(b"acknowledged, ")
    first.close()
    recorded = first.size
    lost = store.writer(upload_id=first.upload_id)
    lost.write(b"staged but never recorded")
    lost.close()
    resumed = store.writer(upload_id=first.upload_id, offset=recorded)
    assert resumed.size == recorded
    resumed.write(b"resent")
    resumed.close()
    again = store.writer(upload_id=first.upload_id, offset=recorded + len(b"resent"))
    info = again.commit(sha(b"acknowledged, resent"))
    assert read_all(store, info.digest) == b"acknowledged, resent"


def test_a_resumed_upload_holding_less_than_recorded_is_refused(store):
    first = store.writer()
    first.write(b"short")
    first.close()
    with pytest.raises(BlobNotFound):
        store.writer(upload_id=first.upload_id, offset=100)


def test_a_resumed_upload_can_be_cancelled(store):
    first = store.writer()
    first.write(b"to be cancelled")
    first.close()
    store.writer(upload_id=first.upload_id).cancel()
    with pytest.raises(BlobNotFound):
        store.writer(upload_id=first.upload_id)


def test_abandoned_uploads_are_listed_and_can_be_discarded(store):
    abandoned = store.writer()
    abandoned.write(b"half of a blob whose writer died")
    abandoned.close()
    put(store, b"a committed blob is not staged")
    staged = list(store.staged_uploads())
    assert [s.upload_id for s in staged] == [abandoned.upload_id]
    assert abs(staged[0].modified - time.time()) < 300
    store.discard_upload(abandoned.upload_id)
    store.discard_upload(abandoned.upload_id)  # twice is fine
    assert list(store.staged_uploads()) == []
    with pytest.raises(BlobNotFound):
        store.writer(upload_id=abandoned.upload_id)
    assert len(list(store.iterate())) == 1


def test_large_blobs_in_many_writes(store):
    chunk = os.urandom(1024 * 1024)
    writer = store.writer()
    for _ in range(12):
        writer.write(chunk)
    info = writer.commit()
    assert info.size == 12 * len(chunk)
    assert info.digest == sha(chunk * 12)
    with store.open(info.digest, 11 * len(chunk)) as f:
        assert f.read() == chunk


def test_sha512_is_accepted(store):
    data = b"sixty-four bytes of digest"
    expected = Digest("sha512", hashlib.sha512(data).hexdigest())
    writer = store.writer("sha512")
    writer.write(data)
    assert writer.commit(expected).digest == expected
    assert read_all(store, expected) == data


def test_delete_and_iterate(store):
    a, b = put(store, b"a"), put(store, b"b")
    assert {i.digest for i in store.iterate()} == {a.digest, b.digest}
    store.delete(a.digest)
    assert not store.exists(a.digest)
    with pytest.raises(BlobNotFound):
        store.delete(a.digest)
    with pytest.raises(BlobNotFound):
        store.stat(a.digest)
    assert [i.digest for i in store.iterate()] == [b.digest]


def test_url_for_serves_the_bytes_where_the_backend_can(store):
    info = put(store, b"fetch me directly")
    url = store.url_for(info.digest)
    if isinstance(store, LocalBlobStore):
        assert url is None and store.local_path(info.digest)
        return
    assert urllib.request.urlopen(url, timeout=10).read() == b"fetch me directly"


@pytest.mark.integration
def test_open_store_builds_the_s3_backend(s3_endpoint):
    bucket = f"b{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, **CREDENTIALS).create_bucket(Bucket=bucket)
    store = open_store(
        f"s3://{bucket}/p?endpoint_url={s3_endpoint}",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    assert isinstance(store, S3BlobStore)
    assert read_all(store, put(store, b"x").digest) == b"x"
