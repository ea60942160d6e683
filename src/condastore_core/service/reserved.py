"""Names and tags the store keeps for itself, so that no tenant can pass as it.

* The dynamic-image namespace (``conda/<pkg>/<pkg>...``) is made by the store on
  request: a user or namespace called ``conda`` would administer it and could
  push ``conda/zstd:<key>`` that others then pull as the store's image.
* The top-level paths the server answers (``/v2``, ``/auth``, ``/api``, ``/ui``...)
  and the RBAC subjects ``anonymous`` and ``authenticated`` would make confusing
  or ambiguous namespaces and users.
* In a repository that is, or may become, a managed environment, tags of the
  form ``<build key>`` and ``<build key>.<artifact>`` name a build's image and
  artifacts; ``latest`` of an environment is its current build. Only the store
  writes them.

This module is only names; the registry's rules that use them live in
:mod:`condastore_core.service.tenancy`.
"""

from __future__ import annotations

import re

from condastore_core.artifacts import ARTIFACT_TYPES
from condastore_core.errors import InvalidRequest
from condastore_core.lock import BUILD_KEY_LENGTH

#: The first part of every dynamic image name (``conda/zstd/openssl:latest``).
DYNAMIC_PREFIX = "conda"
#: The tag suffix of each build artifact published beside a build's image.
ARTIFACT_TAG_SUFFIXES = {kind: suffix for kind, (suffix, _) in ARTIFACT_TYPES.items()}
#: The server's own top-level paths, and RBAC's subjects.
SERVER_PATHS = frozenset(
    {"v2", "auth", "api", "ui", "static", "metrics", "healthz", "readyz", "_catalog"}
)
SUBJECT_NAMES = frozenset({"anonymous", "authenticated"})
RESERVED_NAMES = frozenset({DYNAMIC_PREFIX}) | SERVER_PATHS | SUBJECT_NAMES
LATEST = "latest"

_BUILD_TAG = re.compile(
    rf"^[0-9a-f]{{{BUILD_KEY_LENGTH}}}"
    rf"(\.({'|'.join(sorted(ARTIFACT_TAG_SUFFIXES.values()))}))?$"
)


def check_not_reserved(name: str, what: str) -> str:
    """Refuse ``name`` for a new user or namespace (``what``) when the store keeps it."""
    if name not in RESERVED_NAMES:
        return name
    if name == DYNAMIC_PREFIX:
        why = f"{DYNAMIC_PREFIX}/... names the registry's dynamic images"
    elif name in SUBJECT_NAMES:
        why = "it is a subject of role bindings"
    else:
        why = f"the server answers /{name} itself"
    raise InvalidRequest(f"the {what} name {name!r} is reserved: {why}; choose another name")


def is_dynamic(repository: str) -> bool:
    return repository == DYNAMIC_PREFIX or repository.startswith(f"{DYNAMIC_PREFIX}/")


def is_build_tag(tag: str) -> bool:
    """``<build key>`` or ``<build key>.<artifact>``: names the store gives a build's images."""
    return _BUILD_TAG.match(tag) is not None
