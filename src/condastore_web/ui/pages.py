"""The pages of the web UI; each checks access exactly as the REST API does."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import falcon
import yaml

from condastore_core.auth.rbac import Action
from condastore_core.db.models import BuildStatus
from condastore_core.errors import BuildNotFound
from condastore_core.service import (
    accounts,
    builds,
    environments,
    namespaces,
    policies,
    users,
)
from condastore_core.service.context import Context
from condastore_core.spec import EnvironmentSpec
from condastore_web.api import sso
from condastore_web.api.access import access_policy, principal, require, require_admin
from condastore_web.api.access import visibility as visible
from condastore_web.api.common import int_param
from condastore_web.api.misc import watched_directory
from condastore_web.api.sessions import LOGIN_PAGE, login_url, safe_next, start_session
from condastore_web.ui import registry as registry_pages
from condastore_web.ui.forms import FormActions
from condastore_web.ui.manage import ManagePage
from condastore_web.ui.render import render


def _can(ctx: Context, req: falcon.Request, action: Action, ns: str, name: str) -> bool:
    return access_policy(ctx, req).can(principal(req), action, ns, name)


def _namespaces(ctx: Context, req: falcon.Request) -> list[str]:
    return sorted(
        n.name for n in namespaces.list_namespaces(ctx, limit=500, visible=visible(ctx, req)).items
    )


def next_page(req: falcon.Request, cursor: str | None) -> str | None:
    """The link to the page after this one, keeping every filter of this one."""
    if not cursor:
        return None
    query = {k: v for k, v in req.params.items() if k != "cursor" and isinstance(v, str)}
    return "?" + urlencode({**query, "cursor": cursor})


class Home:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise falcon.HTTPFound("/ui/environments")


#: A login form is two short fields and a path; anything larger is not one.
MAX_FORM_BYTES = 16 * 1024


class Login:
    """The login form: a plain HTML form POST, so it works without JavaScript."""

    def __init__(self, ctx: Context, authenticator: users.Authenticator) -> None:
        self.ctx = ctx
        self.authenticator = authenticator

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        render(
            req,
            resp,
            "login.html",
            next=safe_next(req.get_param("next")),
            **sso.login_options(self.ctx),
        )

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        _check_origin(self.ctx, req)
        form = _read_form(req)
        target = safe_next(form.get("next"))
        username = form.get("username", "")[:64]
        password = form.get("password", "")[:1024]
        name = self.authenticator.authenticate(self.ctx, username, password) if username else None
        if name is None:
            resp.status = falcon.HTTP_401
            render(
                req,
                resp,
                "login.html",
                next=target,
                username=username,
                error="wrong user name or password",
                **sso.login_options(self.ctx),
            )
            return
        start_session(self.ctx, req, resp, name)
        resp.status = falcon.HTTP_303
        resp.location = target


class LoginRedirect:
    """``/login``, where people and tools look for it first."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = f"?{req.query_string}" if req.query_string else ""
        raise falcon.HTTPPermanentRedirect(f"{LOGIN_PAGE}{query}")

    on_post = on_get


def _read_form(req: falcon.Request) -> dict[str, str]:
    """The fields of a urlencoded form body, size-limited; the first value of each."""
    raw = req.bounded_stream.read(MAX_FORM_BYTES + 1)
    if len(raw) > MAX_FORM_BYTES:
        raise falcon.HTTPContentTooLarge(description="the form is too large")
    try:
        fields = parse_qs(raw.decode(), keep_blank_values=True, max_num_fields=16)
    except (UnicodeDecodeError, ValueError):
        raise falcon.HTTPBadRequest(description="the form could not be read") from None
    return {k: v[0] for k, v in fields.items()}


def _check_origin(ctx: Context, req: falcon.Request) -> None:
    """Refuse logins posted by another site's page (login CSRF) where the browser says so."""
    origin = req.get_header("Origin")
    if origin is None:
        return
    ours = {req.netloc.lower()}
    if ctx.settings.trust_proxy_headers:  # the proxy may have changed the Host header
        ours.add(req.forwarded_host.lower())
    if origin == "null" or urlsplit(origin).netloc.lower() not in ours:
        raise falcon.HTTPForbidden(description="a login must come from this site's own page")


class EnvironmentList:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        package = (req.get_param("package") or "").strip() or None
        page = environments.list_environments(
            self.ctx,
            namespace=req.get_param("namespace"),
            search=req.get_param("search"),
            package=package,
            limit=int_param(req, "limit", 100),
            cursor=req.get_param("cursor"),
            visible=visible(self.ctx, req),
        )
        items = page.items
        render(
            req,
            resp,
            "environments.html",
            environments=items,
            next_page=next_page(req, page.next_cursor),
            search=req.get_param("search"),
            namespace=req.get_param("namespace"),
            package=package,
            namespaces=_namespaces(self.ctx, req),
        )


class EnvironmentPage:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, ns: str, name: str) -> None:
        require(
            self.ctx, req, Action.READ, ns, name, hidden=f"environment {ns}/{name} does not exist"
        )
        env = environments.get_environment(self.ctx, ns, name)
        history_page = builds.list_builds(
            self.ctx,
            namespace=ns,
            environment=name,
            limit=int_param(req, "limit", 100),
            cursor=req.get_param("cursor"),
        )
        history = history_page.items
        current = env.current_build
        packages = builds.build_packages(self.ctx, current.id) if current else []
        render(
            req,
            resp,
            "environment.html",
            ns=ns,
            name=name,
            env=env,
            description=env.description,
            builds=history,
            next_builds=next_page(req, history_page.next_cursor),
            current=current,
            packages=packages,
            can_write=_can(self.ctx, req, Action.WRITE, ns, name),
            can_delete=_can(self.ctx, req, Action.DELETE, ns, name),
        )


class DiffPage:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, ns: str, name: str) -> None:
        require(
            self.ctx, req, Action.READ, ns, name, hidden=f"environment {ns}/{name} does not exist"
        )
        old = req.get_param_as_int("from", required=True)
        new = req.get_param_as_int("to", required=True)
        changes = environments.diff_builds(self.ctx, ns, name, old, new)
        render(req, resp, "diff.html", ns=ns, name=name, old=old, new=new, changes=changes)


class EditPage:
    """The spec editor, prefilled from an environment's current spec with ``?from=ns/name``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        who = principal(req)
        if who.anonymous:
            raise falcon.HTTPFound(login_url(req.relative_uri))
        source = req.get_param("from")
        namespace = who.name
        channels = "".join(f"  - {c}\n" for c in self.ctx.settings.channels)
        spec_text = f"name: my-environment\nchannels:\n{channels}dependencies:\n  - zlib\n"
        current_build = None
        if source:
            namespace, _, name = source.partition("/")
            require(
                self.ctx,
                req,
                Action.READ,
                namespace,
                name,
                hidden=f"environment {source} does not exist",
            )
            env = environments.get_environment(self.ctx, namespace, name)
            if env.current_build is not None:
                spec = EnvironmentSpec.from_dict(env.current_build.specification.spec)
                spec_text = yaml.safe_dump(spec.to_environment_yaml(), sort_keys=False)
                current_build = env.current_build.id
        render(
            req,
            resp,
            "edit.html",
            spec=spec_text,
            current_build=current_build,
            source=source,
            namespace=namespace,
            namespaces=_namespaces(self.ctx, req),
        )


class BuildList:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = builds.list_builds(
            self.ctx,
            status=req.get_param("status") or None,
            package=req.get_param("package") or None,
            limit=int_param(req, "limit", 100),
            cursor=req.get_param("cursor"),
            visible=visible(self.ctx, req),
        )
        render(
            req,
            resp,
            "builds.html",
            builds=page.items,
            next_page=next_page(req, page.next_cursor),
            status=req.get_param("status"),
            package=req.get_param("package"),
            statuses=[s.value for s in BuildStatus],
        )


class BuildPage:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, build_id: int) -> None:
        build = builds.get_build(self.ctx, build_id)
        env = build.environment
        ns, name = env.namespace.name, env.name
        require(
            self.ctx,
            req,
            Action.READ,
            ns,
            name,
            hidden=BuildNotFound(f"build {build_id} does not exist"),
        )
        render(
            req,
            resp,
            "build.html",
            build=build,
            ns=ns,
            name=name,
            can_write=_can(self.ctx, req, Action.WRITE, ns, name),
        )


class AdminPage:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        require_admin(req)
        user_page = accounts.list_users(
            self.ctx, limit=int_param(req, "limit", 200), cursor=req.get_param("cursor")
        )
        render(
            req,
            resp,
            "admin.html",
            users=user_page.items,
            next_users=next_page(req, user_page.next_cursor),
            me=principal(req).name,
            bindings=users.list_role_bindings(self.ctx),
            policies=[
                {"scope": scope, "policy": policy.model_dump(exclude_none=True, mode="json")}
                for scope, policy in policies.list_policies(self.ctx)
            ],
            watched=[watched_directory(w) for w in self.ctx.watchers],
        )


def mount(app: falcon.App, ctx: Context, authenticator: users.Authenticator) -> None:
    import importlib.resources

    app.add_route("/", Home())
    for path in ("/ui", "/ui/"):  # what people type, with or without the slash
        app.add_route(path, Home())
    app.add_route("/login", LoginRedirect())
    app.add_route(LOGIN_PAGE, Login(ctx, authenticator))
    app.add_route("/ui/environments", EnvironmentList(ctx))
    app.add_route("/ui/environments/{ns}/{name}", EnvironmentPage(ctx))
    app.add_route("/ui/environments/{ns}/{name}/diff", DiffPage(ctx))
    app.add_route("/ui/new", EditPage(ctx))
    app.add_route("/ui/builds", BuildList(ctx))
    app.add_route("/ui/builds/{build_id:int}", BuildPage(ctx))
    app.add_route("/ui/admin", AdminPage(ctx))
    app.add_route("/ui/manage", ManagePage(ctx))
    app.add_route("/ui/registry", registry_pages.RepositoryList(ctx))
    app.add_route("/ui/registry/repository", registry_pages.RepositoryPage(ctx))
    app.add_route("/ui/registry/manifest", registry_pages.ManifestPage(ctx))
    app.add_route("/ui/do/{action}", FormActions(ctx))
    static = importlib.resources.files("condastore_web") / "static"
    app.add_static_route("/static", str(static))
