"""Retention and blob garbage collection, also while builds and pushes go on."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import select

from condastore_core import layout, leftovers
from condastore_core.db.models import Build, BuildStatus, ImageLayer, utcnow
from condastore_core.digests import Digest
from condastore_core.locks import file_lock
from condastore_core.service import builds, environments, gc, images, policies, uploads
from condastore_core.service import registry as reg
from condastore_core.service.context import Context
from condastore_core.settings import load_settings
from condastore_core.spec import EnvironmentSpec
from condastore_core.store import put, read_all
from condastore_web.runtime import start_services
from tests.support.gate import gate_env
from tests.support.packages import PackageDef


def spec(channel, version, name="app"):
    return EnvironmentSpec.from_dict(
        {"name": name, "channels": [channel], "dependencies": [f"hello =={version}"]}
    )


def push_image(ctx, repo, tag, payload: bytes):
    layer = put(ctx.store, payload)
    config = put(ctx.store, b"{}")
    for info in (layer, config):
        reg.link_blob(ctx, repo, info.digest, info.size)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": str(config.digest),
                "size": config.size,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": str(layer.digest),
                    "size": layer.size,
                }
            ],
        }
    ).encode()
    return reg.put_manifest(ctx, repo, tag, manifest, None), layer.digest


def test_retention_and_sweep_free_only_what_nothing_references(ctx, make_test_channel):
    channel = make_test_channel([PackageDef("hello", v) for v in ("1.0", "2.0", "3.0")])
    ids = []
    for version in ("1.0", "2.0", "3.0"):
        ids.append(environments.submit(ctx, "default", spec(channel, version)).id)
        ctx.jobs.wait_idle(timeout=60)
    old_lockfile = next(a for a in builds.get_build(ctx, ids[0]).artifacts if a.kind == "lockfile")
    old_keys = [builds.get_build(ctx, i).build_key for i in ids[:2]]
    policies.set_policy(ctx, "default", {"max_builds_kept": 1})  # set after the builds
    kept, _ = push_image(ctx, "team/app", "v1", b"tagged layer")
    _, orphan_layer = push_image(ctx, "team/app", "v2", b"layer of an untagged manifest")
    reg.delete_manifest(ctx, "team/app", "v2")  # untag: its manifest row stays

    dry = gc.collect(ctx, dry_run=True, grace_seconds=0)
    assert dry.bytes_freed > 0 and ctx.store.exists(Digest.parse(old_lockfile.digest))

    report = gc.collect(ctx, grace_seconds=0, prune_untagged=True)
    assert sorted(report.builds_collected) == ids[:2]  # max_builds_kept=1: the current stays
    assert report.bytes_freed > 0 and report.manifests_pruned == 1
    assert not ctx.store.exists(Digest.parse(old_lockfile.digest))
    assert not ctx.store.exists(orphan_layer)
    assert sorted(report.prefixes_removed) == sorted(old_keys)
    envs = ctx.settings.data_dir / "envs"
    assert sorted(p.name for p in envs.iterdir() if not p.name.startswith(".")) == [
        builds.get_build(ctx, ids[2]).build_key
    ]
    current = builds.get_build(ctx, ids[2])
    assert current.status == BuildStatus.COMPLETED
    for artifact in current.artifacts:
        assert ctx.store.exists(Digest.parse(artifact.digest))
    found = reg.find_manifest(ctx, "team/app", "v1")
    assert found.digest == kept.digest
    doc = json.loads(read_all(ctx.store, Digest.parse(found.digest)))
    assert all(ctx.store.exists(Digest.parse(b["digest"])) for b in doc["layers"])
    assert gc.collect(ctx, grace_seconds=0).bytes_freed == 0  # nothing left to free


def test_sweeping_a_layer_blob_drops_its_layer_cache_entry(ctx, make_test_channel):
    channel = make_test_channel([PackageDef("hello", "1.0"), PackageDef("other", "1.0")])
    both = ctx.solver.solve(
        EnvironmentSpec.from_dict({"name": "i", "channels": [channel], "dependencies": ["hello"]}),
        ["linux-64"],
    )
    tagged = images.publish_image(ctx, "conda/hello", both, ["v1"], {})
    lone = ctx.solver.solve(
        EnvironmentSpec.from_dict({"name": "i", "channels": [channel], "dependencies": ["other"]}),
        ["linux-64"],
    )
    assert images.build_layers(ctx, lone, "linux-64", ["other"]) == 1  # built, used by no image
    gc.collect(ctx, grace_seconds=0)
    with ctx.sessions() as session:
        rows = {row.packages[0]: row.digest for row in session.scalars(select(ImageLayer))}
    assert list(rows) == ["hello"]
    doc = json.loads(read_all(ctx.store, Digest.parse(tagged.digest)))
    assert rows["hello"] in {layer["digest"] for layer in doc["layers"]}
    assert images.build_layers(ctx, lone, "linux-64", ["other"]) == 1  # a miss: built again


def test_collection_alongside_pushes_and_builds_deletes_nothing_live(ctx, make_test_channel):
    channel = make_test_channel([PackageDef("hello", v) for v in ("1.0", "2.0")])
    stop = threading.Event()
    reports = []

    def collector():
        while not stop.is_set():
            reports.append(gc.collect(ctx))  # the default grace period protects new blobs

    thread = threading.Thread(target=collector)
    thread.start()
    pushed = []
    try:
        for i in range(10):
            manifest, _ = push_image(ctx, "team/live", f"t{i}", hashlib.sha256(bytes([i])).digest())
            pushed.append((f"t{i}", manifest.digest))
        for version in ("1.0", "2.0"):
            environments.submit(ctx, "default", spec(channel, version, name=f"v{version[0]}"))
        ctx.jobs.wait_idle(timeout=60)
    finally:
        stop.set()
        thread.join()
    assert reports
    for tag, digest in pushed:
        found = reg.find_manifest(ctx, "team/live", tag)
        assert found.digest == digest
        doc = json.loads(read_all(ctx.store, Digest.parse(digest)))
        for blob in [doc["config"], *doc["layers"]]:
            assert ctx.store.exists(Digest.parse(blob["digest"]))
    for build in builds.list_builds(ctx).items:
        for artifact in build.artifacts:
            assert ctx.store.exists(Digest.parse(artifact.digest))


def test_the_scheduler_collects_and_one_worker_per_round_claims_it(ctx):
    from dataclasses import replace

    from condastore_core.jobs.scheduler import Scheduler

    orphan = put(ctx.store, b"nobody refers to me")
    claims = []
    ctx.settings = replace(ctx.settings, gc_interval_hours=1)
    scheduler = Scheduler(
        ctx, claim=lambda name, s: not claims.append(name) and len(claims) == 1, grace_seconds=0
    )
    scheduler.run_once()  # this worker claims the round and collects
    assert not ctx.store.exists(orphan.digest)
    again = put(ctx.store, b"written after the first round")
    scheduler.run_once()  # another worker has the round: nothing happens here
    assert ctx.store.exists(again.digest)
    assert claims == ["gc", "gc"]


def test_collected_bytes_leave_an_s3_store(tmp_path, monkeypatch):
    import uuid

    import boto3

    from condastore_core.service.context import Context
    from condastore_core.settings import load_settings
    from tests.support.s3_server import s3_server

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with s3_server() as endpoint:
        bucket = f"b{uuid.uuid4().hex[:12]}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket=bucket)
        ctx = Context.from_settings(
            load_settings(
                {
                    "data_dir": tmp_path / "data",
                    "store_url": f"s3://{bucket}/gc",
                    "s3_endpoint_url": endpoint,
                    "s3_region": "us-east-1",
                },
                environ=gate_env(),
            )
        )
        kept, _ = push_image(ctx, "team/app", "v1", b"tagged")
        orphan = put(ctx.store, b"an orphan in a bucket")
        report = gc.collect(ctx, grace_seconds=0)
        assert report.blobs_deleted == 1 and report.bytes_freed == len(b"an orphan in a bucket")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert f"gc/blobs/sha256/{orphan.digest.hex}" not in keys
        assert f"gc/blobs/sha256/{Digest.parse(kept.digest).hex}" in keys


def test_abandoned_uploads_are_purged_after_the_configured_age(ctx, tmp_path):
    import datetime as dt
    from dataclasses import replace

    import pytest
    from click.testing import CliRunner
    from sqlalchemy import update

    from condastore_core.db.models import RegistryUpload
    from condastore_core.service import uploads
    from condastore_core.service.registry import RegistryError
    from condastore_web.cli import main as cli

    old = uploads.start_upload(ctx, "team/app")
    uploads.append_upload(ctx, "team/app", old, [b"x" * 1000], None)
    young = uploads.start_upload(ctx, "team/app")
    uploads.append_upload(ctx, "team/app", young, [b"y" * 10], None)
    with ctx.engine.begin() as conn:  # started two days ago, never finished
        conn.execute(
            update(RegistryUpload)
            .where(RegistryUpload.id == old)
            .values(started_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
        )

    dry = gc.collect(ctx, dry_run=True)
    assert (dry.uploads_purged, dry.upload_bytes_freed) == (1, 1000)
    assert uploads.upload_size(ctx, "team/app", old) == 1000  # a dry run changes nothing
    result = CliRunner().invoke(
        cli,
        ["gc", "--dry-run", "--json", "--data-dir", str(ctx.settings.data_dir)],
        env={"CONDASTORE_DATABASE_URL": ctx.settings.resolved_database_url},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["uploads_purged"] == 1

    ctx.settings = replace(ctx.settings, upload_max_age_hours=72)  # configurable: kept
    assert gc.collect(ctx).uploads_purged == 0
    ctx.settings = replace(ctx.settings, upload_max_age_hours=24)
    report = gc.collect(ctx)
    assert (report.uploads_purged, report.upload_bytes_freed) == (1, 1000)
    with pytest.raises(RegistryError) as gone:
        uploads.upload_size(ctx, "team/app", old)
    assert gone.value.code == "BLOB_UPLOAD_UNKNOWN"
    assert not ctx.store.staging_path(old).exists()
    assert uploads.upload_size(ctx, "team/app", young) == 10  # the young one goes on
    uploads.finish_upload(
        ctx, "team/app", young, Digest("sha256", hashlib.sha256(b"y" * 11).hexdigest()), [b"y"]
    )


def _leave(path, data: bytes = b"x" * 1000, age: float = 3600):
    """A file (and its directories) as a stopped build would leave it, ``age`` seconds old."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    old = time.time() - age
    for p in (path, path.parent):
        os.utime(p, (old, old))
    return path


def test_leftovers_of_stopped_builds_are_reported_and_removed_never_a_live_builds(ctx, tmp_path):
    data = ctx.settings.data_dir
    dead_staging = _leave(data / "envs" / ".staging-deadkey-1a2b3c4d" / "lib" / "libz.so").parents[
        1
    ]
    dead_scratch = _leave(data / "tmp" / "pack-x1y2" / ".pack-abc.tar.gz").parent
    legacy_scratch = _leave(data / "tmp" / "tmpq9w8e7" / "environment.tar.gz").parent
    half_record = _leave(data / "builds" / ".record-k2j3h4")
    # A build running elsewhere with a current lease: its staging prefix stays.
    leased = _leave(data / "envs" / ".staging-leasedkey-5e6f7a8b" / "bin" / "tool").parents[1]
    build = environments.submit(ctx, "default", spec((tmp_path / "nowhere").as_uri(), "1.0"))
    ctx.jobs.wait_idle(timeout=60)
    with ctx.sessions.begin() as session:
        row = session.get(Build, build.id)
        row.status, row.build_key, row.heartbeat_at = BuildStatus.BUILDING, "leasedkey", utcnow()
    # A build running in another process of this machine: it holds its key's lock.
    held = _leave(data / "envs" / ".staging-heldkey-9c0d1e2f" / "bin" / "tool").parents[1]
    # A scratch directory in use right now, and one just made.
    with (
        file_lock(layout.lock_file_path(data, "build-heldkey")),
        leftovers.scratch_directory(data / "tmp", "image-") as in_use,
    ):
        os.utime(in_use, (time.time() - 3600,) * 2)
        fresh = data / "tmp" / "merge-new"
        fresh.mkdir()
        dead = [dead_staging, dead_scratch, legacy_scratch, half_record]
        expected = sorted(str(p.relative_to(data)) for p in dead)

        dry = gc.collect(ctx, dry_run=True)
        assert sorted(dry.leftovers_removed) == expected
        assert dry.leftover_bytes == 4000
        assert all(p.exists() for p in dead)

        report = gc.collect(ctx)
        assert sorted(report.leftovers_removed) == expected
        assert not any(p.exists() for p in dead)
        for alive in (leased, held, in_use, fresh):
            assert alive.exists(), alive
        assert gc.collect(ctx, dry_run=True).leftovers_removed == []
    # Once the lease runs out, that build's prefix is a leftover too.
    with ctx.sessions.begin() as session:
        session.get(Build, build.id).heartbeat_at = utcnow() - dt.timedelta(hours=1)
    assert "envs/.staging-leasedkey-5e6f7a8b" in gc.collect(ctx).leftovers_removed
    assert held.exists() is False  # its process let go of the lock


def test_a_process_removes_leftovers_when_it_starts(tmp_path):
    data = tmp_path / "data"
    staging = _leave(data / "envs" / ".staging-k1-00000000" / "conda-meta" / "x.json").parents[1]
    scratch = _leave(data / "tmp" / "pack-k1" / "environment.tar.gz").parent
    ctx = start_services(load_settings({"data_dir": data, "gc_interval_hours": 0}, environ={}))
    try:
        assert not staging.exists() and not scratch.exists()
    finally:
        ctx.jobs.shutdown(wait=True)
        for task in ctx.background:
            task.stop()
        ctx.engine.dispose()


# A build process that stops for good once its prefix is installed in the staging
# directory, just before the rename that would complete it: killed there, it leaves
# exactly what a crash in the middle of a build leaves.
STOP_BEFORE_RENAME = """
import sys, time
import condastore_core.install as install
install.os.replace = lambda *a: time.sleep(3600)
from condastore_web.cli import main
main(sys.argv[1:])
"""


@pytest.mark.slow
def test_a_build_killed_while_installing_leaves_nothing_after_the_next_start(
    tmp_path, sample_channel
):
    data = tmp_path / "data"
    spec_file = tmp_path / "environment.yml"
    spec_file.write_text(f"name: t\nchannels: [{sample_channel}]\ndependencies: [zstd]\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            STOP_BEFORE_RENAME,
            "build",
            str(spec_file),
            "--data-dir",
            str(data),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not list((data / "envs").glob(".staging-*/conda-meta/zstd-*.json")):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the build never reached its staging prefix"
            time.sleep(0.05)
        settings = load_settings({"data_dir": data, "gc_interval_hours": 0}, environ={})
        (staging,) = (data / "envs").glob(".staging-*")
        ctx = Context.from_settings(settings)
        # While the build process lives, its staging prefix is not a leftover.
        assert gc.collect(ctx, dry_run=True).leftovers_removed == []
        proc.kill()
        proc.wait(timeout=10)
        assert gc.collect(ctx, dry_run=True).leftovers_removed == [str(staging.relative_to(data))]
        ctx.engine.dispose()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    ctx = start_services(settings)
    try:
        assert not staging.exists()
        assert list((data / "envs").iterdir()) == []
    finally:
        ctx.jobs.shutdown(wait=True)
        for task in ctx.background:
            task.stop()
        ctx.engine.dispose()


def test_blob_uploads_abandoned_by_a_stopped_process_are_discarded(ctx):
    def staged(data: bytes, age: float) -> str:
        writer = ctx.store.writer()
        writer.write(data)
        writer.close()
        path = ctx.store.staging_path(writer.upload_id)
        os.utime(path, (time.time() - age,) * 2)
        return writer.upload_id

    abandoned = staged(b"half of a tarball whose build was killed", age=2 * 3600)
    writing = staged(b"a tarball being written right now", age=0)
    pushed = uploads.start_upload(ctx, "team/app")  # a registry upload owns its bytes
    os.utime(ctx.store.staging_path(pushed), (time.time() - 2 * 3600,) * 2)

    assert gc.collect(ctx, dry_run=True).uploads_discarded == [abandoned]
    assert {s.upload_id for s in ctx.store.staged_uploads()} == {abandoned, writing, pushed}
    assert gc.collect(ctx).uploads_discarded == [abandoned]
    assert {s.upload_id for s in ctx.store.staged_uploads()} == {writing, pushed}


def test_a_dry_run_reports_exactly_what_the_real_run_removes(ctx, make_test_channel):
    channel = make_test_channel([PackageDef("hello", v) for v in ("1.0", "2.0", "3.0")])
    for version in ("1.0", "2.0", "3.0"):
        environments.submit(ctx, "default", spec(channel, version))
        ctx.jobs.wait_idle(timeout=60)
    failed = environments.submit(ctx, "default", spec(channel, "9.9"))  # solves to nothing
    ctx.jobs.wait_idle(timeout=60)
    assert builds.get_build(ctx, failed.id).status == BuildStatus.FAILED
    policies.set_policy(ctx, "default", {"max_builds_kept": 1})
    push_image(ctx, "team/app", "v2", b"layer of an untagged manifest")
    reg.delete_manifest(ctx, "team/app", "v2")

    dry = gc.collect(ctx, dry_run=True, grace_seconds=0, prune_untagged=True).to_json()
    real = gc.collect(ctx, grace_seconds=0, prune_untagged=True).to_json()
    assert real["builds_collected"] and real["prefixes_removed"] and real["blobs_deleted"]
    assert {**dry, "dry_run": False} == real
