"""Jinja2 rendering with the filters the pages share, and the HTML error page."""

from __future__ import annotations

import datetime as dt
from typing import Any

import falcon
from jinja2 import Environment, PackageLoader, select_autoescape

from condastore_core.db.models import as_utc
from condastore_web.api.sessions import SESSION_COOKIE, csrf_token

_env = Environment(
    loader=PackageLoader("condastore_web", "templates"),
    autoescape=select_autoescape(["html"]),
)


def _filesize(value: int | None) -> str:
    if value is None:
        return ""
    size = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return str(value)


def _age(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    seconds = (dt.datetime.now(dt.UTC) - as_utc(value)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


_env.filters["filesize"] = _filesize
_env.filters["age"] = _age


def render(req: falcon.Request, resp: falcon.Response, template: str, **context: Any) -> None:
    principal = getattr(req.context, "principal", None)
    user = principal if principal is not None and not principal.anonymous else None
    session = req.get_cookie_values(SESSION_COOKIE) if user is not None else None
    resp.content_type = falcon.MEDIA_HTML
    plain_http = req.scheme == "http"  # as this request came to us
    resp.text = _env.get_template(template).render(
        user=user,
        host=req.netloc,
        # Registry clients refuse plain HTTP unless told: the commands carry the flag.
        podman="podman pull --tls-verify=false" if plain_http else "podman pull",
        oras="oras pull --plain-http" if plain_http else "oras pull",
        base_url=req.prefix,
        csrf=csrf_token(session[0]) if session else None,
        **context,
    )


def render_error(
    req: falcon.Request, resp: falcon.Response, status: int, title: str, message: str
) -> None:
    resp.status = status
    render(req, resp, "error.html", status=status, title=title, message=message, path=req.path)
