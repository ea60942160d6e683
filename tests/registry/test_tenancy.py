"""The registry between tenants: principal x operation x resource, with the status each gets.

Columns (principals): anonymous; alice, the owner of namespace ``alice``; vera, viewer of
``alice/*``; ed, editor of ``alice/*``; otto, admin of another namespace (his own); ada,
installation admin; and a registry token of alice's narrowed to ``repository:alice/app:pull``.

Resources: ``alice/app`` (alice's pushed repository), ``bob/secret`` (another tenant's
private repository), ``alice/env`` (a managed environment), ``conda/hello`` (the
dynamic-image namespace) and, for mounts, ``{me}/...``: the caller's own namespace.

The registry does not hide repositories the way the REST API does: the distribution spec's
clients expect 401 (anonymous, with a challenge) or 403 ``DENIED``. What tenants must not
learn is bytes and existence: a mount from a repository the caller cannot pull falls back to
an ordinary upload (202), the same answer as for a digest that exists nowhere.
"""

# ruff: noqa: E501 - the table is read row by row, one operation a line

from __future__ import annotations

import hashlib

import pytest
import requests
from sqlalchemy import select

from condastore_core.db.models import Build
from condastore_core.jobs.inprocess import InProcessQueue
from condastore_core.service import environments, users
from condastore_core.service.context import Context
from condastore_core.settings import load_settings
from condastore_core.spec import EnvironmentSpec
from condastore_web.app import create_app
from tests.registry.test_distribution import MANIFEST, push_blob, push_image
from tests.support.gate import gate_settings
from tests.support.live_server import live_server
from tests.support.packages import PackageDef

PASSWORD = "a long password"
ROLES = ["anonymous", "owner", "viewer", "editor", "other", "admin", "token"]
#: The user each column speaks for; ``{me}`` in a path is their own namespace.
USERS = {
    "anonymous": "nobody",
    "owner": "alice",
    "viewer": "vera",
    "editor": "ed",
    "other": "otto",
    "admin": "ada",
    "token": "alice",
}

# (operation, method, path, body): statuses in ROLES order. Bodies: "blob" uploads fresh
# bytes in one POST (``{fresh}`` is their digest), "manifest:REPO" an image whose blobs REPO
# holds.
TABLE = [
    # pull
    ("pull manifest, own", "GET", "/v2/alice/app/manifests/v1", None, "401 200 200 200 403 200 200"),
    ("pull manifest, other tenant", "GET", "/v2/bob/secret/manifests/v1", None, "401 403 403 403 403 200 403"),
    ("pull manifest, environment", "GET", "/v2/alice/env/manifests/latest", None, "401 200 200 200 403 200 403"),
    ("pull manifest, dynamic", "GET", "/v2/conda/hello/manifests/latest", None, "200 200 200 200 200 200 403"),
    ("pull blob, own", "GET", "/v2/alice/app/blobs/{alice_layer}", None, "401 200 200 200 403 200 200"),
    ("pull blob, other tenant", "GET", "/v2/bob/secret/blobs/{bob_layer}", None, "401 403 403 403 403 200 403"),
    ("pull blob, environment", "GET", "/v2/alice/env/blobs/{env_layer}", None, "401 200 200 200 403 200 403"),
    # push blob
    ("push blob, own", "POST", "/v2/alice/app/blobs/uploads/?digest={fresh}", "blob", "401 201 403 201 403 201 403"),
    ("push blob, other tenant", "POST", "/v2/bob/secret/blobs/uploads/?digest={fresh}", "blob", "401 403 403 403 403 201 403"),
    ("push blob, environment", "POST", "/v2/alice/env/blobs/uploads/?digest={fresh}", "blob", "401 201 403 201 403 201 403"),
    ("push blob, dynamic", "POST", "/v2/conda/hello/blobs/uploads/?digest={fresh}", "blob", "401 403 403 403 403 403 403"),
    ("start upload, dynamic", "POST", "/v2/conda/hello/blobs/uploads/", None, "401 403 403 403 403 403 403"),
    # push manifest / tag
    ("push tag, own", "PUT", "/v2/alice/app/manifests/new", "manifest:alice/app", "401 201 403 201 403 201 403"),
    ("push tag, other tenant", "PUT", "/v2/bob/secret/manifests/new", "manifest:bob/secret", "401 403 403 403 403 201 403"),
    ("push ordinary tag, environment", "PUT", "/v2/alice/env/manifests/dev", "manifest:alice/env", "401 201 403 201 403 201 403"),
    ("push build key, environment", "PUT", "/v2/alice/env/manifests/{key}", "manifest:alice/env", "401 403 403 403 403 403 403"),
    ("push key.lock, environment", "PUT", "/v2/alice/env/manifests/{key}.lock", "manifest:alice/env", "401 403 403 403 403 403 403"),
    ("push key.tarball, environment", "PUT", "/v2/alice/env/manifests/{key}.tarball", "manifest:alice/env", "401 403 403 403 403 403 403"),
    ("push latest, environment", "PUT", "/v2/alice/env/manifests/latest", "manifest:alice/env", "401 403 403 403 403 403 403"),
    ("push build-key tag, own", "PUT", "/v2/alice/app/manifests/0123456789abcdef", "manifest:alice/app", "401 403 403 403 403 403 403"),
    ("push tag, dynamic", "PUT", "/v2/conda/hello/manifests/latest", "manifest:alice/app", "401 403 403 403 403 403 403"),
    ("push other tag, dynamic", "PUT", "/v2/conda/hello/manifests/mine", "manifest:alice/app", "401 403 403 403 403 403 403"),
    # mount
    ("mount from other tenant", "POST", "/v2/{me}/mount-a/blobs/uploads/?mount={bob_layer}&from=bob/secret", None, "401 202 202 202 202 201 403"),
    ("mount from own", "POST", "/v2/{me}/mount-b/blobs/uploads/?mount={alice_layer}&from=alice/app", None, "401 201 201 201 202 201 403"),
    ("mount without from, other tenant's", "POST", "/v2/{me}/mount-c/blobs/uploads/?mount={bob_layer}", None, "401 202 202 202 202 201 403"),
    ("mount without from, own", "POST", "/v2/{me}/mount-d/blobs/uploads/?mount={alice_layer}", None, "401 201 201 201 202 201 403"),
    ("mount from environment", "POST", "/v2/{me}/mount-e/blobs/uploads/?mount={env_layer}&from=alice/env", None, "401 201 201 201 202 201 403"),
    ("mount unknown digest", "POST", "/v2/{me}/mount-f/blobs/uploads/?mount={nowhere}&from=alice/app", None, "401 202 202 202 202 202 403"),
    ("mount into dynamic", "POST", "/v2/conda/hello/blobs/uploads/?mount={alice_layer}&from=alice/app", None, "401 403 403 403 403 403 403"),
    # delete
    ("delete tag, own", "DELETE", "/v2/alice/app/manifests/del-{role}", None, "401 202 403 403 403 202 403"),
    ("delete tag, other tenant", "DELETE", "/v2/bob/secret/manifests/del-{role}", None, "401 403 403 403 403 202 403"),
    ("delete build key, environment", "DELETE", "/v2/alice/env/manifests/{key}", None, "401 403 403 403 403 403 403"),
    ("delete key.lock, environment", "DELETE", "/v2/alice/env/manifests/{key}.lock", None, "401 403 403 403 403 403 403"),
    ("delete image by digest, environment", "DELETE", "/v2/alice/env/manifests/{image}", None, "401 403 403 403 403 403 403"),
    ("delete tag, dynamic", "DELETE", "/v2/conda/hello/manifests/latest", None, "401 403 403 403 403 403 403"),
    ("delete blob, dynamic", "DELETE", "/v2/conda/hello/blobs/{dynamic_layer}", None, "401 403 403 403 403 403 403"),
    # discovery
    ("tags list, own", "GET", "/v2/alice/app/tags/list", None, "401 200 200 200 403 200 200"),
    ("tags list, other tenant", "GET", "/v2/bob/secret/tags/list", None, "401 403 403 403 403 200 403"),
    ("tags list, environment", "GET", "/v2/alice/env/tags/list", None, "401 200 200 200 403 200 403"),
    ("tags list, dynamic", "GET", "/v2/conda/hello/tags/list", None, "200 200 200 200 200 200 403"),
    ("referrers, own", "GET", "/v2/alice/app/referrers/{app_image}", None, "401 200 200 200 403 200 200"),
    ("referrers, other tenant", "GET", "/v2/bob/secret/referrers/{bob_image}", None, "401 403 403 403 403 200 403"),
    ("referrers, environment", "GET", "/v2/alice/env/referrers/{image}", None, "401 200 200 200 403 200 403"),
    ("catalog", "GET", "/v2/_catalog", None, "401 200 200 200 200 200 403"),
]  # fmt: skip


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def session_as(ctx, name: str, password_auth: bool = False) -> requests.Session:
    session = requests.Session()
    if password_auth:
        session.auth = (name, PASSWORD)
    else:
        session.headers["Authorization"] = f"Bearer {users.issue_token(ctx, name).token}"
    return session


@pytest.fixture
def tenants(tmp_path, make_test_channel, database_url):
    """Three tenants (alice, bob, the dynamic namespace) and a caller of every kind."""
    channel = make_test_channel([PackageDef("hello", "1.0")])
    settings = load_settings(
        {
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "tarball": False,
            "channels": channel,
            "anonymous_bindings": "conda/*=viewer",
            **gate_settings(),
        },
        environ={},
    )
    ctx = Context.from_settings(settings)
    ctx.jobs = InProcessQueue(ctx)
    for name in ("alice", "bob", "vera", "ed", "otto"):
        users.create_user(ctx, name, PASSWORD)
    users.create_user(ctx, "ada", PASSWORD, admin=True)
    users.add_role_binding(ctx, "user:vera", "alice/*", "viewer")
    users.add_role_binding(ctx, "user:ed", "alice/*", "editor")
    environments.submit(
        ctx,
        "alice",
        EnvironmentSpec.from_dict(
            {"name": "env", "channels": [channel], "dependencies": ["hello"]}
        ),
    )
    ctx.jobs.wait_idle(timeout=120)
    with live_server(create_app(ctx)) as url:
        yield ctx, url
    ctx.jobs.shutdown()


def build_key(ctx, environment: str = "env") -> str:
    with ctx.sessions() as session:
        return session.scalar(select(Build.build_key).where(Build.build_key.is_not(None)))


def test_every_principal_gets_what_the_table_says(tenants):
    ctx, url = tenants
    alice, bob, ada = (session_as(ctx, n) for n in ("alice", "bob", "ada"))
    alice_layer, bob_layer = b"alice's layer", b"bob's secret layer"
    bodies = {
        "alice/app": push_image(alice, url, "alice/app", "v1", layers=(alice_layer,)),
        "bob/secret": push_image(bob, url, "bob/secret", "v1", layers=(bob_layer,)),
        "alice/env": push_image(ada, url, "alice/env", "pushed", layers=(b"env layer",)),
    }
    for role in ROLES:
        push_image(alice, url, "alice/app", f"del-{role}", layers=(alice_layer,))
        push_image(bob, url, "bob/secret", f"del-{role}", layers=(bob_layer,))
    image = ada.get(f"{url}/v2/alice/env/manifests/latest", headers={"Accept": MANIFEST})
    assert image.status_code == 200, image.text
    dynamic = ada.get(f"{url}/v2/conda/hello/manifests/latest", headers={"Accept": MANIFEST})
    assert dynamic.status_code == 200, dynamic.text
    fill = {
        "key": build_key(ctx),
        "alice_layer": digest(alice_layer),
        "bob_layer": digest(bob_layer),
        "env_layer": image.json()["layers"][0]["digest"],
        "dynamic_layer": dynamic.json()["layers"][0]["digest"],
        "image": image.headers["Docker-Content-Digest"],
        "app_image": bodies["alice/app"][1].headers["Docker-Content-Digest"],
        "bob_image": bodies["bob/secret"][1].headers["Docker-Content-Digest"],
        "nowhere": digest(b"exists nowhere"),
    }
    token = requests.get(
        f"{url}/auth/token",
        auth=("alice", PASSWORD),
        params={"service": "condastore", "scope": "repository:alice/app:pull"},
    ).json()["token"]
    callers = {role: session_as(ctx, USERS[role]) for role in ROLES if role != "anonymous"}
    callers["anonymous"] = requests.Session()
    callers["token"] = requests.Session()
    callers["token"].headers["Authorization"] = f"Bearer {token}"

    expected, got = {}, {}
    for operation, method, path, body, statuses in TABLE:
        expected[operation] = dict(zip(ROLES, (int(s) for s in statuses.split()), strict=True))
        got[operation] = {}
        for role in ROLES:
            data, headers = None, {}
            if body == "blob":
                data = f"{operation} by {role}".encode()
                headers["Content-Type"] = "application/octet-stream"
            elif body is not None:
                data, headers["Content-Type"] = bodies[body.split(":", 1)[1]][0], MANIFEST
            values = {**fill, "me": USERS[role], "role": role, "fresh": digest(data or b"")}
            r = callers[role].request(
                method, url + path.format(**values), data=data, headers=headers
            )
            got[operation][role] = r.status_code
            if r.status_code == 401:
                assert r.headers["WWW-Authenticate"].startswith("Bearer realm=")
            if r.status_code == 403:
                assert r.json()["errors"][0]["code"] == "DENIED", (operation, role)
    row = lambda statuses: " ".join(str(statuses[role]) for role in ROLES)  # noqa: E731
    mismatched = [
        f"{op}: expected {row(expected[op])}, got {row(got[op])}"
        for op in expected
        if expected[op] != got[op]
    ]
    assert not mismatched, "\n".join(mismatched)


def test_a_mount_the_caller_may_not_pull_reveals_nothing(tenants):
    ctx, url = tenants
    alice = session_as(ctx, "alice")
    bob = session_as(ctx, "bob")
    secret = b"alice's private bytes"
    push_blob(alice, url, "alice/private", secret)
    for params in ({"mount": digest(secret), "from": "alice/private"}, {"mount": digest(secret)}):
        stolen = bob.post(f"{url}/v2/bob/x/blobs/uploads/", params=params)
        unknown = bob.post(
            f"{url}/v2/bob/x/blobs/uploads/", params={**params, "mount": digest(b"no such")}
        )
        assert stolen.status_code == unknown.status_code == 202  # an ordinary upload
        assert stolen.headers.keys() == unknown.headers.keys()
        assert "/blobs/uploads/" in stolen.headers["Location"]
        assert bob.get(f"{url}/v2/bob/x/blobs/{digest(secret)}").status_code == 404
    # Once alice lets bob read, the same mount links the blob.
    users.add_role_binding(ctx, "user:bob", "alice/private", "viewer")
    r = bob.post(
        f"{url}/v2/bob/x/blobs/uploads/",
        params={"mount": digest(secret), "from": "alice/private"},
    )
    assert r.status_code == 201
    assert bob.get(f"{url}/v2/bob/x/blobs/{digest(secret)}").content == secret


def test_a_refused_push_says_why(tenants):
    ctx, url = tenants
    alice = session_as(ctx, "alice")
    body, _ = push_image(alice, url, "alice/env", "mine")
    key = build_key(ctx)
    for tag, words in (
        (key, "build key"),
        (f"{key}.lock", "build key"),
        ("latest", "current build"),
    ):
        r = alice.put(
            f"{url}/v2/alice/env/manifests/{tag}", data=body, headers={"Content-Type": MANIFEST}
        )
        assert r.status_code == 403
        error = r.json()["errors"][0]
        assert error["code"] == "DENIED" and words in error["message"], error
    ada = session_as(ctx, "ada")
    r = ada.put(
        f"{url}/v2/conda/zstd/manifests/{key}", data=body, headers={"Content-Type": MANIFEST}
    )
    assert r.status_code == 403
    assert "conda/" in r.json()["errors"][0]["message"]
    assert "made by condastore" in r.json()["errors"][0]["message"]


def test_a_squatted_build_key_cannot_be_planted_before_the_environment_exists(tenants):
    """An editor cannot push an image under a build key into a name that may later be an
    environment: the store would serve it as that build's image."""
    ctx, url = tenants
    ed = session_as(ctx, "ed")
    body, _ = push_image(ed, url, "alice/future", "v1")
    r = ed.put(
        f"{url}/v2/alice/future/manifests/{build_key(ctx)}",
        data=body,
        headers={"Content-Type": MANIFEST},
    )
    assert r.status_code == 403
