"""Discovery: an environment's tags before its first pull, and the catalog each caller may see."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import requests

from tests.registry.test_distribution import push_image
from tests.registry.test_tenancy import PASSWORD, build_key, session_as, tenants  # noqa: F401


def environment_tags(key: str) -> list[str]:
    return sorted([key, f"{key}.explicit", f"{key}.lock", f"{key}.yaml", "latest"])


def test_an_environment_lists_its_tags_before_its_first_pull(tenants):  # noqa: F811
    ctx, url = tenants
    alice = session_as(ctx, "alice")
    key = build_key(ctx)
    r = alice.get(f"{url}/v2/alice/env/tags/list")
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "alice/env", "tags": environment_tags(key)}
    page = alice.get(f"{url}/v2/alice/env/tags/list", params={"n": 2})
    assert page.json()["tags"] == environment_tags(key)[:2]
    assert page.headers["Link"].startswith("</v2/alice/env/tags/list?n=2&last=")
    rest = alice.get(
        f"{url}/v2/alice/env/tags/list", params={"n": 10, "last": page.json()["tags"][-1]}
    )
    assert rest.json()["tags"] == environment_tags(key)[2:] and "Link" not in rest.headers
    # A tag pushed by a client joins the store's own; the lists never hold a tag twice.
    push_image(alice, url, "alice/env", "dev")
    assert alice.get(f"{url}/v2/alice/env/manifests/latest").status_code == 200
    tags = alice.get(f"{url}/v2/alice/env/tags/list").json()["tags"]
    assert tags == sorted([*environment_tags(key), "dev"])
    # Resolving a listed tag makes the image; its artifacts are then its referrers.
    head = alice.head(f"{url}/v2/alice/env/manifests/{key}")
    referrers = alice.get(f"{url}/v2/alice/env/referrers/{head.headers['Docker-Content-Digest']}")
    assert (
        sorted(m["annotations"]["org.condastore.build-key"] for m in referrers.json()["manifests"])
        == [key] * 3
    )


def test_a_build_without_a_linux_platform_lists_no_image_tags(tenants, make_test_channel):  # noqa: F811
    from condastore_core.service import environments
    from condastore_core.spec import EnvironmentSpec
    from tests.support.packages import PackageDef

    ctx, url = tenants
    channel = make_test_channel([PackageDef("mactool", "1.0", subdir="osx-arm64")])
    environments.submit(
        ctx,
        "alice",
        EnvironmentSpec.from_dict(
            {
                "name": "mac",
                "channels": [channel],
                "dependencies": ["mactool"],
                "platforms": ["osx-arm64"],
            }
        ),
    )
    ctx.jobs.wait_idle(timeout=120)
    r = session_as(ctx, "alice").get(f"{url}/v2/alice/mac/tags/list")
    assert r.status_code == 200 and r.json()["tags"] == []


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_and_oras_list_an_environments_tags_before_its_first_pull(tenants):  # noqa: F811
    from oras.client import OrasClient

    ctx, url = tenants
    host = url.removeprefix("http://")
    key = build_key(ctx)
    listed = subprocess.run(
        [
            "skopeo",
            "list-tags",
            "--tls-verify=false",
            "--creds",
            f"vera:{PASSWORD}",
            f"docker://{host}/alice/env",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert '"Repository": "' in listed.stdout and f'"{key}.lock"' in listed.stdout
    client = OrasClient(hostname=host, insecure=True, auth_backend="token")
    client.login(username="vera", password=PASSWORD, hostname=host, tls_verify=False)
    assert sorted(client.get_tags(f"{host}/alice/env")) == environment_tags(key)


def catalog(session: requests.Session, url: str, **params) -> requests.Response:
    return session.get(f"{url}/v2/_catalog", params=params)


def test_the_catalog_lists_what_each_caller_may_pull(tenants):  # noqa: F811
    ctx, url = tenants
    alice, bob, otto, ada = (session_as(ctx, n) for n in ("alice", "bob", "otto", "ada"))
    push_image(alice, url, "alice/app", "v1")
    push_image(bob, url, "bob/secret", "v1")
    assert ada.get(f"{url}/v2/conda/hello/manifests/latest").status_code == 200
    everything = ["alice/app", "alice/env", "bob/secret", "conda/hello"]
    assert catalog(ada, url).json() == {"repositories": everything}
    # alice's environment is listed before anyone pulled it; bob's repository is not.
    assert catalog(alice, url).json()["repositories"] == ["alice/app", "alice/env", "conda/hello"]
    assert catalog(bob, url).json()["repositories"] == ["bob/secret", "conda/hello"]
    assert catalog(otto, url).json()["repositories"] == ["conda/hello"]
    first = catalog(alice, url, n=2)
    assert first.json()["repositories"] == ["alice/app", "alice/env"]
    assert first.headers["Link"] == '</v2/_catalog?n=2&last=alice%2Fenv>; rel="next"'
    second = catalog(alice, url, n=2, last="alice/env")
    assert second.json()["repositories"] == ["conda/hello"] and "Link" not in second.headers
    assert catalog(alice, url, n=0).json()["repositories"] == []
    assert catalog(alice, url, n=-1).status_code == 400


def test_the_catalog_through_the_token_flow(tenants):  # noqa: F811
    ctx, url = tenants
    push_image(session_as(ctx, "alice"), url, "alice/app", "v1")
    anonymous = requests.get(f"{url}/v2/_catalog")
    assert anonymous.status_code == 401
    assert 'scope="registry:catalog:*"' in anonymous.headers["WWW-Authenticate"]
    token = requests.get(
        f"{url}/auth/token",
        auth=("vera", PASSWORD),
        params={"service": "condastore", "scope": "registry:catalog:*"},
    ).json()["token"]
    r = requests.get(f"{url}/v2/_catalog", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["repositories"] == ["alice/app", "alice/env"]
    # A narrowed API token's registry token sees no more than the narrowed token.
    narrowed = users_token(ctx, "ada", ["alice/app=viewer"])
    token = requests.get(
        f"{url}/auth/token",
        auth=("ada", narrowed),
        params={"service": "condastore", "scope": "registry:catalog:*"},
    ).json()["token"]
    r = requests.get(f"{url}/v2/_catalog", headers={"Authorization": f"Bearer {token}"})
    assert r.json()["repositories"] == ["alice/app"]
    anon_token = requests.get(
        f"{url}/auth/token", params={"service": "condastore", "scope": "registry:catalog:*"}
    ).json()["token"]
    r = requests.get(f"{url}/v2/_catalog", headers={"Authorization": f"Bearer {anon_token}"})
    assert r.status_code == 200 and r.json()["repositories"] == []  # conda/hello never pulled


def users_token(ctx, name: str, bindings: list[str]) -> str:
    from condastore_core.service import users

    return users.issue_token(ctx, name, bindings=bindings).token


def test_a_tarball_packed_after_the_image_was_made_is_listed_and_pulled(tenants):  # noqa: F811
    from sqlalchemy import select

    from condastore_core.db.models import Build
    from condastore_core.service.runner import pack_build

    ctx, url = tenants
    alice = session_as(ctx, "alice")
    key = build_key(ctx)
    image = alice.get(f"{url}/v2/alice/env/manifests/{key}")
    assert image.status_code == 200
    with ctx.sessions() as session:
        build_id = session.scalar(select(Build.id).where(Build.build_key == key))
    assert pack_build(ctx, build_id)  # the tarball job ends after the first pull
    tags = alice.get(f"{url}/v2/alice/env/tags/list").json()["tags"]
    assert f"{key}.tarball" in tags
    tarball = alice.get(f"{url}/v2/alice/env/manifests/{key}.tarball")
    assert tarball.status_code == 200, tarball.text
    assert tarball.json()["subject"]["digest"] == image.headers["Docker-Content-Digest"]
