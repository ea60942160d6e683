"""Base images from an upstream registry: through the gate, with their own credentials, once;
and an image on such a base runs its entrypoint, activation scripts and tools in a chroot."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import requests

from condastore_core.channels import gate_for
from condastore_core.channels.gate import ChannelRefused
from condastore_core.image.base import resolve_base
from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.oci_client import RegistryClientError
from condastore_core.service import environments, gc, namespaces, users
from condastore_core.service.context import Context
from condastore_core.service.layer_cache import DbLayerCache
from condastore_core.settings import load_settings
from condastore_core.spec import EnvironmentSpec
from condastore_web.app import create_app
from tests.support.gate import gate_env
from tests.support.live_server import live_server
from tests.support.net import free_port
from tests.support.oci_layout import machine_base_files, unpack_layout, write_layout
from tests.support.packages import PackageDef
from tests.support.registry import distribution_registry, push_layout

pytestmark = pytest.mark.integration
SECRET = "s3cret-upstream-password"
PASSWORD = "a long password"


def test_a_base_is_fetched_through_the_gate_with_its_own_credentials_once(tmp_path):
    (tmp_path / "upstream").mkdir()
    with distribution_registry(tmp_path / "upstream", {"robot": SECRET}) as host:
        write_layout(tmp_path / "layout", {"bin/sh": b"#!a shell"}, env=["PATH=/usr/bin:/bin"])
        reference = f"{host}/base/shell:v1"
        push_layout(tmp_path / "layout", reference, f"robot:{SECRET}")
        credentials = {host: f"robot:{SECRET}"}

        # Loopback is reached only where an administrator allowed it, base or not.
        closed = load_settings(
            {"data_dir": tmp_path / "closed", "image_registry_credentials": credentials},
            environ={},
        )
        with pytest.raises(ChannelRefused):
            resolve_base(
                reference, "linux-64", Context.from_settings(closed).store, gate_for(closed)
            )

        settings = load_settings(
            {"data_dir": tmp_path / "data", "image_registry_credentials": credentials},
            environ=gate_env(),
        )
        assert SECRET not in repr(settings)  # settings are logged; the password is not
        ctx = Context.from_settings(settings)
        gate = gate_for(settings)

        for wrong in ({}, {host: "robot:not-the-password"}):
            with pytest.raises(RegistryClientError) as refused:
                resolve_base(reference, "linux-64", ctx.store, gate, credentials=wrong)
            assert "not-the-password" not in str(refused.value)

        cache = DbLayerCache(ctx)
        base = resolve_base(
            reference, "linux-64", ctx.store, gate, credentials=credentials, cache=cache
        )
        assert len(base.layers) == 1 and base.env == ("PATH=/usr/bin:/bin",)

    # The upstream registry is gone: the base is reused from the store, also after a
    # garbage collection, without asking the registry again.
    gc.collect(ctx, grace_seconds=0)
    again = resolve_base(
        reference, "linux-64", ctx.store, gate, credentials=credentials, cache=cache
    )
    assert again == base


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, mount /proc)")
@pytest.mark.skipif(shutil.which("chroot") is None, reason="needs chroot")
def test_an_image_on_a_registry_base_runs_activation_scripts_and_tools(
    tmp_path, sample_channel, make_test_channel
):
    channel = make_test_channel(
        [
            PackageDef(
                "greeter",
                "1.0",
                files={"etc/conda/activate.d/greeter.sh": "export GREETING=hello-from-activate\n"},
            )
        ]
    )
    (tmp_path / "upstream").mkdir()
    with distribution_registry(tmp_path / "upstream", {"robot": SECRET}) as host:
        write_layout(tmp_path / "layout", machine_base_files(), env=["PATH=/usr/bin:/bin"])
        push_layout(tmp_path / "layout", f"{host}/base/glibc:v1", f"robot:{SECRET}")
        settings = load_settings(
            {
                "data_dir": tmp_path / "data",
                "tarball": False,
                "image_base": f"{host}/base/glibc:v1",
                "image_registry_credentials": {host: f"robot:{SECRET}"},
            },
            environ=gate_env(),
        )
        ctx = Context.from_settings(settings)
        namespaces.create_namespace(ctx, "default")
        users.create_user(ctx, "ada", PASSWORD, admin=True)
        ctx.jobs = InProcessQueue(ctx)
        spec = {
            "name": "tools",
            "channels": [channel, sample_channel],
            "dependencies": ["zstd", "greeter"],
        }
        environments.submit(ctx, "default", EnvironmentSpec.from_dict(spec))
        ctx.jobs.wait_idle(timeout=300)
        with live_server(create_app(ctx)) as url:
            subprocess.run(
                [
                    "skopeo",
                    "copy",
                    "--src-tls-verify=false",
                    "--src-creds",
                    f"ada:{PASSWORD}",
                    f"docker://{url.removeprefix('http://')}/default/tools:latest",
                    f"oci:{tmp_path / 'pulled'}:x",
                ],
                check=True,
                capture_output=True,
                timeout=300,
            )
        ctx.jobs.shutdown()

    root = tmp_path / "rootfs"
    root.mkdir()
    config = unpack_layout(tmp_path / "pulled", root)["config"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["PATH"].startswith("/opt/conda/bin:") and env["CONDA_PREFIX"] == "/opt/conda"
    chroot = shutil.which("chroot") or "chroot"
    (root / "proc").mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    try:

        def run(*command: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [chroot, str(root), *config["Entrypoint"], *command],
                env=env,  # the image's environment, as an engine sets it
                capture_output=True,
                text=True,
                timeout=60,
            )

        tool = run("zstd", "--version")
        activated = run("sh", "-c", 'echo "$GREETING in $CONDA_PREFIX"')
    finally:
        subprocess.run(["umount", str(root / "proc")], check=True)
    assert tool.returncode == 0, tool.stderr
    assert "v1.5" in tool.stdout
    assert activated.returncode == 0, activated.stderr
    assert activated.stdout.strip() == "hello-from-activate in /opt/conda"


def test_a_base_the_server_cannot_fetch_is_a_503_that_names_it_without_credentials(
    tmp_path, make_test_channel
):
    channel = make_test_channel([PackageDef("hello", "1.0")])
    reference = f"127.0.0.1:{free_port()}/base/shell:v1"  # nothing listens there
    settings = load_settings(
        {
            "data_dir": tmp_path / "data",
            "channels": channel,
            "image_base": reference,
            "image_registry_credentials": {reference.split("/")[0]: f"robot:{SECRET}"},
        },
        environ=gate_env(),
    )
    ctx = Context.from_settings(settings)
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    ctx.jobs = InProcessQueue(ctx)
    with live_server(create_app(ctx)) as url:
        answer = requests.get(f"{url}/v2/conda/hello/manifests/latest", auth=("ada", PASSWORD))
    ctx.jobs.shutdown()
    assert answer.status_code == 503, answer.text
    error = answer.json()["errors"][0]
    assert error["code"] == "UNAVAILABLE"
    assert reference in error["message"] and SECRET not in answer.text
