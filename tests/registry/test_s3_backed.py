"""The registry on an S3 store: pushes land in the bucket, blob GETs redirect to presigned URLs."""

from __future__ import annotations

import uuid

import boto3
import pytest
import requests

from condastore_core.service import users
from condastore_core.service.context import Context
from condastore_core.settings import load_settings
from condastore_web.app import create_app
from tests.registry.test_distribution import digest, push_image
from tests.support.gate import gate_env
from tests.support.live_server import live_server
from tests.support.s3_server import s3_server

pytestmark = pytest.mark.integration


def test_push_and_pull_through_presigned_redirects(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with s3_server() as endpoint:
        bucket = f"b{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket=bucket
        )
        settings = load_settings(
            {
                "data_dir": tmp_path / "data",
                "store_url": f"s3://{bucket}/registry?presign=1",
                "s3_endpoint_url": endpoint,
                "s3_region": "us-east-1",
            },
            environ=gate_env(),
        )
        ctx = Context.from_settings(settings)
        users.create_user(ctx, "ada", "a long password", admin=True)
        with live_server(create_app(ctx)) as registry:
            session = requests.Session()
            session.auth = ("ada", "a long password")
            layer = b"a layer in a bucket" * 1000
            push_image(session, registry, "team/app", "v1", layers=(layer,))
            url = f"{registry}/v2/team/app/blobs/{digest(layer)}"
            first = session.get(url, allow_redirects=False)
            assert first.status_code == 307 and first.headers["Location"].startswith(endpoint)
            assert session.get(url).content == layer
            keys = [
                o["Key"]
                for o in boto3.client(
                    "s3", endpoint_url=endpoint, region_name="us-east-1"
                ).list_objects_v2(Bucket=bucket)["Contents"]
            ]
            assert f"registry/blobs/sha256/{digest(layer).split(':')[1]}" in keys
            assert not [k for k in keys if "_staging" in k]  # nothing left of the uploads
