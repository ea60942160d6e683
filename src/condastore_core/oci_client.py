"""A small client of the OCI distribution API, to copy images and artifacts between registries.

It speaks the token flow (a ``401`` names a realm; credentials buy a Bearer
token there), and finds credentials where docker and podman keep them. Blobs
stream from one registry to the other without touching the disk.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from condastore_core.bounded import MAX_MANIFEST_BYTES
from condastore_core.errors import CondastoreError

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
INDEX_TYPES = MANIFEST_TYPES[1::2]
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class RegistryClientError(CondastoreError):
    code = "REGISTRY_CLIENT"


#: The most of an error answer or token response read: a registry is not trusted to be small.
MAX_SMALL_BODY = 64 * 1024


def read_capped(response: requests.Response, limit: int, what: str) -> bytes:
    """A streamed response's body, refused once it passes ``limit`` bytes (never all read)."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        response.close()
        raise RegistryClientError(f"{what} is larger than {limit} bytes; it was not read")
    data = bytearray()
    for chunk in response.iter_content(1 << 16):
        data += chunk
        if len(data) > limit:
            response.close()
            raise RegistryClientError(f"{what} is larger than {limit} bytes; it was not read")
    return bytes(data)


def _snippet(response: requests.Response) -> str:
    """The start of an error answer, for a message: at most 300 characters, read boundedly."""
    try:
        data = next(response.iter_content(MAX_SMALL_BODY), b"")
    except requests.RequestException:
        data = b""
    finally:
        response.close()
    return data.decode(errors="replace")[:300]


def parse_reference(text: str) -> tuple[str, str, str]:
    """``host[:port]/repo/name:tag`` (or ``@sha256:...``) -> (host, repository, reference).

    As docker reads names, one without a host (``debian:bookworm-slim``,
    ``library/debian``) is on ``docker.io``.
    """
    host, sep, rest = text.partition("/")
    if not sep or not ("." in host or ":" in host or host == "localhost"):
        host, rest = "docker.io", text
    if not rest or rest.startswith("/"):
        raise RegistryClientError(f"expected HOST/REPOSITORY:TAG, not {text!r}")
    if "@" in rest:
        repository, _, reference = rest.partition("@")
    else:
        repository, _, reference = rest.rpartition(":") if ":" in rest else (rest, "", "latest")
    return host, repository, reference or "latest"


def registry_host(host: str) -> str:
    """Where a reference's host serves the API: ``docker.io`` is ``registry-1.docker.io``."""
    return "registry-1.docker.io" if host in ("docker.io", "index.docker.io") else host


def stored_credentials(host: str) -> tuple[str, str] | None:
    """Credentials for ``host`` from podman's auth.json or docker's config.json, if any."""
    candidates = [
        os.environ.get("REGISTRY_AUTH_FILE"),
        os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/run/user/0"), "containers/auth.json"),
        os.path.expanduser("~/.config/containers/auth.json"),
        os.path.join(
            os.environ.get("DOCKER_CONFIG", os.path.expanduser("~/.docker")), "config.json"
        ),
    ]
    for candidate in candidates:
        if not candidate or not Path(candidate).is_file():
            continue
        auths = json.loads(Path(candidate).read_text()).get("auths", {})
        entry = auths.get(host) or auths.get(f"https://{host}") or auths.get(f"http://{host}")
        if entry and entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, password
    return None


@dataclass
class RegistryClient:
    """One registry; ``scheme`` is http for loopback and test registries."""

    host: str
    credentials: tuple[str, str] | None = None
    bearer: str | None = None  # an API token sent as is (condastore accepts its own)
    scheme: str = "https"
    session: requests.Session = field(default_factory=requests.Session)
    _tokens: dict[str, str] = field(default_factory=dict)
    _basic: bool = False  # the registry asked for HTTP Basic: send the credentials each time

    def _url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}/v2/{path}"

    def request(self, method: str, path: str, scope: str, **kw) -> requests.Response:  # type: ignore[no-untyped-def]
        headers = dict(kw.pop("headers", {}))
        for attempt in range(2):
            if self.bearer or scope in self._tokens:
                headers["Authorization"] = f"Bearer {self.bearer or self._tokens[scope]}"
            elif self._basic and self.credentials:
                kw["auth"] = self.credentials
            response = self.session.request(
                method, self._url(path), headers=headers, timeout=300, **kw
            )
            if response.status_code != 401 or attempt == 1 or self.bearer:
                return response
            self._authenticate(response.headers.get("WWW-Authenticate", ""), scope)
        return response

    def _authenticate(self, challenge: str, scope: str) -> None:
        params = dict(_CHALLENGE.findall(challenge))
        if challenge.lower().startswith("basic"):  # distribution with an htpasswd file
            if self.credentials is None:
                raise RegistryClientError(f"{self.host} asks for credentials; none are configured")
            self._basic = True
            return
        if not challenge.lower().startswith("bearer") or "realm" not in params:
            raise RegistryClientError(f"{self.host} asks for unsupported auth: {challenge!r}")
        query = {"scope": scope, **({"service": params["service"]} if "service" in params else {})}
        answer = self.session.get(
            params["realm"], params=query, auth=self.credentials, timeout=60, stream=True
        )
        if answer.status_code != 200:
            raise RegistryClientError(f"{self.host} refused the credentials: {_snippet(answer)}")
        try:
            body = json.loads(read_capped(answer, MAX_SMALL_BODY, f"{self.host}'s token answer"))
        except ValueError:
            raise RegistryClientError(f"{self.host}'s token answer is not JSON") from None
        self._tokens[scope] = body.get("token") or body["access_token"]

    def _check(self, response: requests.Response, what: str) -> requests.Response:
        if response.status_code >= 400:
            raise RegistryClientError(
                f"{what} on {self.host}: HTTP {response.status_code} {_snippet(response)}"
            )
        return response

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        r = self._check(
            self.request(
                "GET",
                f"{repository}/manifests/{reference}",
                f"repository:{repository}:pull",
                headers={"Accept": ", ".join(MANIFEST_TYPES)},
                stream=True,
            ),
            f"manifest {repository}:{reference}",
        )
        body = read_capped(r, MAX_MANIFEST_BYTES, f"the manifest {repository}:{reference}")
        return body, r.headers.get("Content-Type", MANIFEST_TYPES[0]).split(";")[0]

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> None:
        self._check(
            self.request(
                "PUT",
                f"{repository}/manifests/{reference}",
                f"repository:{repository}:pull,push",
                data=body,
                headers={"Content-Type": media_type},
            ),
            f"pushing {repository}:{reference}",
        )

    def blob_chunks(self, repository: str, digest: str) -> Iterator[bytes]:
        r = self._check(
            self.request(
                "GET", f"{repository}/blobs/{digest}", f"repository:{repository}:pull", stream=True
            ),
            digest,
        )
        yield from r.iter_content(1 << 20)

    def has_blob(self, repository: str, digest: str) -> bool:
        r = self.request(
            "HEAD", f"{repository}/blobs/{digest}", f"repository:{repository}:pull,push"
        )
        return r.status_code == 200

    def push_blob(self, repository: str, digest: str, chunks: Iterator[bytes]) -> None:
        scope = f"repository:{repository}:pull,push"
        start = self._check(
            self.request("POST", f"{repository}/blobs/uploads/", scope),
            f"starting an upload to {repository}",
        )
        location = start.headers["Location"]
        if location.startswith("http"):
            location = location.split("/v2/", 1)[1]
        else:
            location = location.removeprefix("/v2/")
        sep = "&" if "?" in location else "?"
        self._check(
            self.request(
                "PUT",
                f"{location}{sep}digest={digest}",
                scope,
                data=chunks,
                headers={"Content-Type": "application/octet-stream"},
            ),
            f"uploading {digest}",
        )

    def referrers(self, repository: str, digest: str) -> list[dict]:
        r = self.request(
            "GET", f"{repository}/referrers/{digest}", f"repository:{repository}:pull", stream=True
        )
        if r.status_code != 200:
            r.close()
            return []
        body = read_capped(r, MAX_MANIFEST_BYTES, f"the referrers of {repository}@{digest}")
        return json.loads(body).get("manifests", [])


def copy_image(
    source: RegistryClient,
    src_repo: str,
    reference: str,
    target: RegistryClient,
    dst_repo: str,
    tag: str,
    artifact_suffixes: dict[str, str] | None = None,
) -> list[str]:
    """Copy an image (or index), its blobs and the artifacts that refer to it; returns tags.

    Referring artifacts are tagged ``<tag>.<suffix>`` by their artifact type
    (``artifact_suffixes``), so registries without a referrers API still hold them.
    """
    body, media_type = source.get_manifest(src_repo, reference)
    _copy_manifest(source, src_repo, target, dst_repo, body, media_type)
    target.put_manifest(dst_repo, tag, body, media_type)
    tags = [tag]
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    for referrer in source.referrers(src_repo, digest):
        child, child_type = source.get_manifest(src_repo, referrer["digest"])
        _copy_manifest(source, src_repo, target, dst_repo, child, child_type)
        kind = referrer.get("artifactType", "")
        suffix = (artifact_suffixes or {}).get(kind) or referrer["digest"].split(":")[1][:12]
        target.put_manifest(dst_repo, f"{tag}.{suffix}", child, child_type)
        tags.append(f"{tag}.{suffix}")
    return tags


def _copy_manifest(source, src_repo, target, dst_repo, body: bytes, media_type: str) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(body)
    if media_type in INDEX_TYPES:
        for entry in doc.get("manifests", []):
            child, child_type = source.get_manifest(src_repo, entry["digest"])
            _copy_manifest(source, src_repo, target, dst_repo, child, child_type)
            target.put_manifest(dst_repo, entry["digest"], child, child_type)
        return
    for blob in [doc["config"], *doc.get("layers", [])]:
        if not target.has_blob(dst_repo, blob["digest"]):
            target.push_blob(dst_repo, blob["digest"], source.blob_chunks(src_repo, blob["digest"]))
