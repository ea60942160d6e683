"""``condastore push``: copy a build's image and artifacts to another OCI registry."""

from __future__ import annotations

import click

from condastore_core.artifacts import ARTIFACT_TYPES
from condastore_core.oci_client import (
    RegistryClient,
    copy_image,
    parse_reference,
    stored_credentials,
)
from condastore_web.cli.client import ApiClient
from condastore_web.cli.common import reports_errors
from condastore_web.cli.remote import split_name


@click.command("push")
@click.argument("environment")
@click.argument("destination")
@click.option("--url", envvar="CONDASTORE_URL", default=None, help="condastore server URL.")
@click.option("--token", envvar="CONDASTORE_TOKEN", default=None, help="condastore API token.")
@click.option("--dest-plain-http", is_flag=True, help="The destination speaks plain HTTP.")
@reports_errors
def push_command(
    environment: str, destination: str, url: str | None, token: str | None, dest_plain_http: bool
) -> None:
    """Copy NS/ENV[:KEY] (image and artifacts) to REGISTRY/REPO:TAG.

    Credentials for the destination come from podman's auth.json or docker's
    config.json, as `podman login` or `docker login` left them.
    """
    name, _, key = environment.partition(":")
    namespace, env = split_name(name)
    api = ApiClient(url, token)
    scheme, _, host = api.url.partition("://")
    source = RegistryClient(host.split("/", 1)[0], bearer=api.token, scheme=scheme)
    dest_host, dest_repo, dest_tag = parse_reference(destination)
    target = RegistryClient(
        dest_host,
        credentials=stored_credentials(dest_host),
        scheme="http" if dest_plain_http else "https",
    )
    suffixes = {artifact_type: suffix for suffix, artifact_type in ARTIFACT_TYPES.values()}
    tags = copy_image(
        source, f"{namespace}/{env}", key or "latest", target, dest_repo, dest_tag, suffixes
    )
    for tag in tags:
        click.echo(f"pushed {dest_host}/{dest_repo}:{tag}")
