"""Environments as images: managed environments and nixery-style names, made on first pull."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from conda_lock.lockfile import parse_conda_lock_file

from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.service import environments, namespaces, users
from condastore_core.service.context import Context
from condastore_core.settings import load_settings
from condastore_core.spec import EnvironmentSpec
from condastore_web.app import create_app
from tests.registry.conftest import PASSWORD
from tests.support.gate import gate_env
from tests.support.live_server import live_server
from tests.support.packages import PackageDef

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def image_registry(tmp_path, make_test_channel, database_url):
    channel = make_test_channel(
        [
            PackageDef("hello", "1.0", depends=["libx"], has_prefix_file=True),
            PackageDef("libx", "2.0"),
            PackageDef("other", "1.0"),
        ]
    )
    settings = load_settings(
        {
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "tarball": False,
            "channels": channel,
        },
        environ=gate_env(),
    )
    ctx = Context.from_settings(settings)
    ctx.jobs = InProcessQueue(ctx)
    namespaces.create_namespace(ctx, "default")
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    users.create_user(ctx, "otto", PASSWORD)
    users.add_role_binding(ctx, "user:otto", "conda/*", "viewer")
    environments.submit(
        ctx,
        "default",
        EnvironmentSpec.from_dict(
            {"name": "web", "channels": [channel], "dependencies": ["hello"]}
        ),
    )
    ctx.jobs.wait_idle(timeout=120)
    with live_server(create_app(ctx)) as url:
        yield url
    ctx.jobs.shutdown()


def layer_files(session, url, repo, manifest) -> dict[str, bytes]:
    files = {}
    for layer in manifest["layers"]:
        blob = session.get(f"{url}/v2/{repo}/blobs/{layer['digest']}").content
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tf:
            for member in tf.getmembers():
                if member.isfile():
                    files[member.name] = tf.extractfile(member).read()
    return files


def test_a_managed_environment_is_an_image_with_its_artifacts(image_registry, tmp_path):
    url = image_registry
    admin = requests.Session()
    admin.auth = ("ada", PASSWORD)
    r = admin.get(f"{url}/v2/default/web/manifests/latest", headers={"Accept": MANIFEST})
    assert r.status_code == 200, r.text
    manifest = r.json()
    assert len(manifest["layers"]) == 3  # libx, hello, and the final layer
    files = layer_files(admin, url, "default/web", manifest)
    assert files["opt/conda/bin/hello"].startswith(b"#!/bin/sh")
    assert b"/opt/conda" in files["opt/conda/share/hello/prefix.txt"]
    config = admin.get(f"{url}/v2/default/web/blobs/{manifest['config']['digest']}").json()
    key = config["config"]["Labels"]["org.condastore.build-key"]
    by_key = admin.get(f"{url}/v2/default/web/manifests/{key}")
    assert by_key.headers["Docker-Content-Digest"] == r.headers["Docker-Content-Digest"]
    referrers = admin.get(
        f"{url}/v2/default/web/referrers/{r.headers['Docker-Content-Digest']}"
    ).json()
    assert sorted(m["artifactType"].split(".")[2] for m in referrers["manifests"]) == [
        "environment",
        "explicit",
        "lockfile",
    ]
    # oras pull of the lockfile artifact writes a conda-lock.yml that conda-lock parses.
    from oras.client import OrasClient

    host = url.removeprefix("http://")
    client = OrasClient(hostname=host, insecure=True, auth_backend="basic")
    client.login(username="ada", password=PASSWORD, hostname=host, tls_verify=False)
    client.pull(target=f"{host}/default/web:{key}.lock", outdir=str(tmp_path / "out"))
    lock = parse_conda_lock_file(tmp_path / "out" / "conda-lock.yml")
    assert {p.name for p in lock.package} == {"hello", "libx"}
    stranger = requests.get(f"{url}/v2/default/web/manifests/latest", auth=("otto", PASSWORD))
    assert stranger.status_code == 403


def test_dynamic_names_share_layers_and_ignore_order(image_registry):
    url = image_registry
    otto = requests.Session()
    otto.auth = ("otto", PASSWORD)
    first = otto.get(f"{url}/v2/conda/hello/libx/manifests/latest")
    assert first.status_code == 200, first.text
    swapped = otto.get(f"{url}/v2/conda/libx/hello/manifests/latest")
    assert swapped.json()["layers"] == first.json()["layers"]  # same layers, whatever the order
    second = otto.get(f"{url}/v2/conda/other/hello/manifests/latest").json()
    shared = {x["digest"] for x in first.json()["layers"][:-1]}
    assert shared <= {x["digest"] for x in second["layers"]}
    unknown = otto.get(f"{url}/v2/conda/hello/nosuchpkg/manifests/latest")
    assert unknown.status_code == 404
    error = unknown.json()["errors"][0]
    assert error["code"] == "MANIFEST_UNKNOWN" and "nosuchpkg" in error["message"]
    constrained = otto.get(f"{url}/v2/conda/libx.ge.2/manifests/latest")
    assert constrained.status_code == 200
    too_new = otto.get(f"{url}/v2/conda/libx.gt.2/manifests/latest")
    assert too_new.status_code == 404


def test_concurrent_requests_for_one_image_get_one_image(image_registry):
    url = image_registry

    def pull(_):
        r = requests.get(f"{url}/v2/conda/other/libx/manifests/latest", auth=("otto", PASSWORD))
        return r.status_code, r.headers.get("Docker-Content-Digest")

    with ThreadPoolExecutor(10) as pool:
        answers = set(pool.map(pull, range(10)))
    assert len(answers) == 1 and next(iter(answers))[0] == 200


def test_skopeo_copies_a_dynamic_image(image_registry, tmp_path):
    url = image_registry
    host = url.removeprefix("http://")
    result = subprocess.run(
        [
            "skopeo",
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            f"otto:{PASSWORD}",
            f"docker://{host}/conda/hello:latest",
            f"oci:{tmp_path / 'image'}:latest",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    index = json.loads((tmp_path / "image" / "index.json").read_text())
    assert len(index["manifests"]) == 1


def test_a_spec_for_two_platforms_is_an_image_index(tmp_path, make_test_channel):
    channel = make_test_channel(
        [
            PackageDef("tool", "1.0", subdir="linux-64"),
            PackageDef("tool", "1.0", subdir="linux-aarch64"),
        ]
    )
    settings = load_settings({"data_dir": tmp_path / "data", "tarball": False}, environ=gate_env())
    ctx = Context.from_settings(settings)
    ctx.jobs = InProcessQueue(ctx)
    namespaces.create_namespace(ctx, "default")
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    environments.submit(
        ctx,
        "default",
        EnvironmentSpec.from_dict(
            {
                "name": "multi",
                "channels": [channel],
                "dependencies": ["tool"],
                "platforms": ["linux-64", "linux-aarch64"],
            }
        ),
    )
    ctx.jobs.wait_idle(timeout=120)
    with live_server(create_app(ctx)) as url:
        session = requests.Session()
        session.auth = ("ada", PASSWORD)
        r = session.get(f"{url}/v2/default/multi/manifests/latest")
        assert r.status_code == 200, r.text
        index = r.json()
        assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
        arches = {}
        for entry in index["manifests"]:
            manifest = session.get(f"{url}/v2/default/multi/manifests/{entry['digest']}").json()
            config = session.get(
                f"{url}/v2/default/multi/blobs/{manifest['config']['digest']}"
            ).json()
            arches[entry["platform"]["architecture"]] = config["architecture"]
        assert arches == {"amd64": "amd64", "arm64": "arm64"}
    ctx.jobs.shutdown()


class HeldPacks(InProcessQueue):
    """Runs builds at once, but holds tarball jobs until the test runs them."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.held: list[int] = []

    def enqueue_pack(self, build_id: int) -> None:
        self.held.append(build_id)


#: Whatever order pulls and artifact jobs happen in, every image ends up with every
#: artifact of its build, as ``<key>.<suffix>`` tags and as referrers, seen in the tags
#: list and the referrers API without another pull. Steps: ``pull <env>`` (a client pulls
#: its ``latest``) and ``build pack <env>`` (a
#: user asks for the tarball again, as ``condastore build pack`` does, and the job runs).
ARTIFACT_ORDERS = [
    ("tarball made by the build, before the pull", True, ["pull web"], ["web"]),
    ("tarball made later by build pack", False, ["pull web", "build pack web"], ["web"]),
    (
        "a reused build's tarball, made later for its twin",
        False,
        ["pull twin", "pull web", "build pack web"],
        ["web", "twin"],
    ),
    (
        "a reused build's own tarball made later",
        False,
        ["pull web", "pull twin", "build pack twin"],
        ["web", "twin"],
    ),
]


@pytest.mark.parametrize(
    ("tarball", "steps", "pulled"),
    [pytest.param(t, s, p, id=name) for name, t, s, p in ARTIFACT_ORDERS],
)
def test_every_artifact_reaches_the_image_whatever_the_order(
    tmp_path, make_test_channel, tarball, steps, pulled
):
    from condastore_core.service import builds
    from condastore_core.service.runner import pack_build

    channel = make_test_channel([PackageDef("hello", "1.0")])
    settings = load_settings(
        {"data_dir": tmp_path / "data", "channels": channel, "tarball": tarball},
        environ=gate_env(),
    )
    ctx = Context.from_settings(settings)
    ctx.jobs = queue = HeldPacks(ctx)
    namespaces.create_namespace(ctx, "default")
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    build_ids = {}
    for name in ("web", "twin"):  # the same spec: the twin reuses web's build
        spec = {"name": name, "channels": [channel], "dependencies": ["hello"]}
        build_ids[name] = environments.submit(ctx, "default", EnvironmentSpec.from_dict(spec)).id
        queue.wait_idle(timeout=120)
    assert queue.held == []  # a build packs its own tarball, in its own job
    with live_server(create_app(ctx)) as url:
        admin = requests.Session()
        admin.auth = ("ada", PASSWORD)
        digests = {}
        for step in steps:
            action, name = step.rsplit(" ", 1)
            if action == "pull":
                image = admin.get(
                    f"{url}/v2/default/{name}/manifests/latest", headers={"Accept": MANIFEST}
                )
                assert image.status_code == 200, image.text
                digests[name] = image.headers["Docker-Content-Digest"]
            else:
                builds.request_artifact(ctx, build_ids[name], "tarball")
                assert pack_build(ctx, queue.held.pop())
        tarballs = {
            name: builds.find_artifact(ctx, build_ids[name], "tarball").digest
            for name in pulled
            if any(a.kind == "tarball" for a in builds.get_build(ctx, build_ids[name]).artifacts)
        }
        for name in pulled:
            key = builds.get_build(ctx, build_ids[name]).build_key
            tags = admin.get(f"{url}/v2/default/{name}/tags/list").json()["tags"]
            assert {f"{key}.{s}" for s in ("lock", "yaml", "explicit", "tarball")} <= set(tags)
            referrers = admin.get(f"{url}/v2/default/{name}/referrers/{digests[name]}").json()
            by_type = {m["artifactType"]: m["digest"] for m in referrers["manifests"]}
            attached = admin.get(
                f"{url}/v2/default/{name}/blobs/"
                + admin.get(
                    f"{url}/v2/default/{name}/manifests/"
                    + by_type["application/vnd.condastore.tarball.v1.tar+gzip"],
                    headers={"Accept": MANIFEST},
                ).json()["layers"][0]["digest"],
            )
            assert attached.status_code == 200
            assert f"sha256:{hashlib.sha256(attached.content).hexdigest()}" in tarballs.values()
    queue.shutdown()


def test_a_failed_dynamic_solve_tells_the_client_what_the_api_tells(image_registry):
    """The registry's error body holds the whole explanation, as the solve preview does."""
    otto = requests.Session()
    otto.auth = ("otto", PASSWORD)
    too_new = otto.get(f"{image_registry}/v2/conda/libx.gt.2/manifests/latest")
    assert too_new.status_code == 404
    message = too_new.json()["errors"][0]["message"]
    preview = otto.post(
        f"{image_registry}/api/v1/solve",
        json={"specification": "name: image\ndependencies: [libx >2]", "platforms": ["linux-64"]},
    )
    assert preview.status_code == 422, preview.text
    assert message == preview.json()["error"]["message"]
    first, _, explanation = message.partition("\n")
    assert "libx" in first and explanation.strip()
