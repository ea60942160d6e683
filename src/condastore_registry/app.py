"""The OCI distribution API v1.1 on ``/v2/``: routes, access checks and errors in one place.

Repository names contain slashes, so ``/v2/`` is one sink that matches the
spec's endpoints by regular expression (as the reference registry's router
does) and hands each to a small function of its resource module.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import falcon

from condastore_core.auth.rbac import Forbidden, Unauthenticated
from condastore_core.diskspace import is_out_of_space, out_of_space_error
from condastore_core.errors import CondastoreError
from condastore_core.service import tenancy, users
from condastore_core.service.context import Context
from condastore_core.service.registry import RegistryError, check_name
from condastore_registry import blobs, manifests, tags, uploads
from condastore_registry.access import (
    Challenge,
    authorize,
    catalog_check,
    challenge_header,
    identify,
)
from condastore_registry.errors import as_registry_error, send_error
from condastore_registry.token import TokenResource

logger = logging.getLogger(__name__)

Handler = Callable[..., None]
_NAME = r"(?P<name>[a-z0-9][a-z0-9._/-]*?)"
#: (path regex, {method: (handler, action)}); the first match wins.
ROUTES: list[tuple[re.Pattern[str], dict[str, tuple[Handler, str]]]] = [
    (re.compile(rf"^{_NAME}/blobs/uploads/?$"), {"POST": (uploads.start_upload, "push")}),
    (
        re.compile(rf"^{_NAME}/blobs/uploads/(?P<upload_id>[^/]+)$"),
        {
            "GET": (uploads.upload_status, "push"),
            "PATCH": (uploads.patch_upload, "push"),
            "PUT": (uploads.finish_upload, "push"),
            "DELETE": (uploads.cancel_upload, "push"),
        },
    ),
    (
        re.compile(rf"^{_NAME}/blobs/(?P<digest>[^/]+)$"),
        {
            "GET": (blobs.get_blob, "pull"),
            "HEAD": (blobs.get_blob, "pull"),
            "DELETE": (blobs.delete_blob, "delete"),
        },
    ),
    (
        re.compile(rf"^{_NAME}/manifests/(?P<reference>[^/]+)$"),
        {
            "GET": (manifests.get_manifest, "pull"),
            "HEAD": (manifests.get_manifest, "pull"),
            "PUT": (manifests.put_manifest, "push"),
            "DELETE": (manifests.delete_manifest, "delete"),
        },
    ),
    (re.compile(rf"^{_NAME}/tags/list$"), {"GET": (tags.list_tags, "pull")}),
    (
        re.compile(rf"^{_NAME}/referrers/(?P<digest>[^/]+)$"),
        {"GET": (tags.list_referrers, "pull")},
    ),
]


class Registry:
    """The ``/v2`` sink."""

    def __init__(self, ctx: Context, authenticator: users.Authenticator) -> None:
        self.ctx = ctx
        self.authenticator = authenticator

    def __call__(self, req: falcon.Request, resp: falcon.Response, **_: str) -> None:
        resp.set_header("Docker-Distribution-API-Version", "registry/2.0")
        try:
            self._dispatch(req, resp)
        except Challenge as exc:  # 401, or 403 for a token of too narrow a scope
            resp.set_header("WWW-Authenticate", exc.header)
            send_error(resp, exc)
        except Unauthenticated as exc:
            resp.set_header("WWW-Authenticate", challenge_header(req))
            send_error(resp, RegistryError("UNAUTHORIZED", exc.message))
        except Forbidden as exc:
            send_error(resp, RegistryError("DENIED", exc.message))
        except CondastoreError as exc:
            send_error(resp, as_registry_error(exc))
        except falcon.HTTPError:
            raise
        except Exception as exc:
            if is_out_of_space(exc):  # a full disk: the client may retry once space is freed
                logger.warning("registry out of storage on %s %s: %s", req.method, req.path, exc)
                send_error(resp, as_registry_error(out_of_space_error(exc)))
                return
            logger.exception("registry error on %s %s", req.method, req.path)
            send_error(resp, RegistryError("UNKNOWN", "internal error; see the server log"))

    def _dispatch(self, req: falcon.Request, resp: falcon.Response) -> None:
        path = req.path.removeprefix("/v2").lstrip("/")
        caller = identify(self.ctx, req, self.authenticator)
        if path == "":
            if req.method not in ("GET", "HEAD"):
                raise RegistryError("UNSUPPORTED", f"{req.method} /v2/ is not supported")
            if caller.principal.anonymous and caller.granted is None:
                # Clients learn here where to get a token; anonymous pulls still work.
                resp.set_header("WWW-Authenticate", challenge_header(req))
                send_error(resp, RegistryError("UNAUTHORIZED", "authentication required"))
                return
            resp.media = {}
            return
        if path == "_catalog":
            if req.method not in ("GET", "HEAD"):
                raise RegistryError("UNSUPPORTED", f"{req.method} /v2/_catalog is not supported")
            tags.list_catalog(self.ctx, req, resp, catalog_check(self.ctx, req, caller))
            return
        for pattern, methods in ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            params = match.groupdict()
            name = check_name(params.pop("name"))
            if req.method not in methods:
                raise RegistryError("UNSUPPORTED", f"{req.method} is not supported here")
            handler, action = methods[req.method]
            authorize(self.ctx, req, caller, name, action)
            if action != "pull":
                tenancy.check_writable(name)
            req.context.registry_caller = caller  # a mount asks what else it may pull
            handler(self.ctx, req, resp, name, **params)
            return
        raise RegistryError("NAME_INVALID", f"no registry endpoint at /v2/{path}")


def mount(app: falcon.App, ctx: Context, authenticator: users.Authenticator) -> None:
    """Serve the registry from ``app``: ``/v2`` and its token endpoint ``/auth/token``."""
    app.add_sink(Registry(ctx, authenticator), prefix=re.compile(r"^/v2(/.*)?$"))
    app.add_route("/auth/token", TokenResource(ctx, authenticator))
