"""The UI's forms: every action a page offers, as a plain HTML form POST (no JavaScript needed).

``POST /ui/do/{action}`` with urlencoded fields (and the session's CSRF token
as the ``csrf`` field, checked by the authentication middleware) runs the same
service call behind the same access check as the REST API, then redirects
(303) to the page to look at next. Errors are the UI's error pages.
"""

from __future__ import annotations

from collections.abc import Callable

import falcon

from condastore_core.auth.rbac import Action, Forbidden
from condastore_core.errors import InvalidRequest
from condastore_core.service import accounts, builds, environments, namespaces, policies, users
from condastore_core.service.context import Context
from condastore_core.spec import parse_spec
from condastore_web.api.access import principal, read_form, require, require_admin, require_login
from condastore_web.api.accounts import may_manage_binding
from condastore_web.api.builds import guard as build_guard
from condastore_web.api.environments import guard as env_guard
from condastore_web.api.sessions import end_session, safe_next
from condastore_web.api.sso import after_logout

Form = dict[str, str]


def _field(form: Form, name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise InvalidRequest(f"the form's field {name!r} is empty")
    return value


def _int(form: Form, name: str) -> int:
    try:
        return int(_field(form, name))
    except ValueError:
        raise InvalidRequest(f"the form's field {name!r} must be a number") from None


def _list(value: str) -> list[str] | None:
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None


class FormActions:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.actions: dict[str, Callable[[falcon.Request, Form], str]] = {
            "logout": self.logout,
            "submit-spec": self.submit_spec,
            "cancel-build": self.cancel_build,
            "rebuild": self.rebuild,
            "retry-tarball": self.retry_tarball,
            "rollback": self.rollback,
            "delete-environment": self.delete_environment,
            "create-namespace": self.create_namespace,
            "delete-namespace": self.delete_namespace,
            "add-user": self.add_user,
            "disable-user": self.disable_user,
            "enable-user": self.enable_user,
            "delete-user": self.delete_user,
            "set-password": self.set_password,
            "revoke-token": self.revoke_token,
            "add-binding": self.add_binding,
            "remove-binding": self.remove_binding,
            "set-policy": self.set_policy,
        }

    def on_post(self, req: falcon.Request, resp: falcon.Response, action: str) -> None:
        handler = self.actions.get(action)
        if handler is None:
            raise falcon.HTTPNotFound(description=f"no form action {action!r}")
        form = getattr(req.context, "form", None)
        if form is None:
            form = read_form(req)
        target = handler(req, form)
        if action == "logout":
            end_session(resp)
        resp.status = falcon.HTTP_303
        resp.location = safe_next(form.get("next")) if form.get("next") else target

    # -- sessions and builds ---------------------------------------------------------

    def logout(self, req: falcon.Request, form: Form) -> str:
        who = principal(req)
        if who.token_id is not None:
            users.revoke_token(self.ctx, who.token_id)
        return after_logout(self.ctx, req, who)

    def submit_spec(self, req: falcon.Request, form: Form) -> str:
        who = require_login(req)
        namespace = form.get("namespace") or str(who.name)
        spec = parse_spec(form.get("specification", ""))
        hidden = f"namespace {namespace!r} does not exist"
        require(self.ctx, req, Action.WRITE, namespace, spec.name, hidden=hidden)
        build = environments.submit(self.ctx, namespace, spec, submitted_by=who.name)
        return f"/ui/builds/{build.id}"

    def cancel_build(self, req: falcon.Request, form: Form) -> str:
        build_id = _int(form, "build_id")
        build_guard(self.ctx, req, Action.WRITE, build_id)
        builds.cancel_build(self.ctx, build_id)
        return f"/ui/builds/{build_id}"

    def rebuild(self, req: falcon.Request, form: Form) -> str:
        build_id = _int(form, "build_id")
        build_guard(self.ctx, req, Action.WRITE, build_id)
        return f"/ui/builds/{builds.rebuild(self.ctx, build_id, principal(req).name).id}"

    def retry_tarball(self, req: falcon.Request, form: Form) -> str:
        build_id = _int(form, "build_id")
        build_guard(self.ctx, req, Action.WRITE, build_id)
        builds.request_artifact(self.ctx, build_id, "tarball")
        return f"/ui/builds/{build_id}"

    def rollback(self, req: falcon.Request, form: Form) -> str:
        ns, name = _field(form, "namespace"), _field(form, "name")
        env_guard(self.ctx, req, Action.WRITE, ns, name)
        environments.set_current_build(self.ctx, ns, name, _int(form, "build_id"))
        return f"/ui/environments/{ns}/{name}"

    def delete_environment(self, req: falcon.Request, form: Form) -> str:
        ns, name = _field(form, "namespace"), _field(form, "name")
        env_guard(self.ctx, req, Action.DELETE, ns, name)
        environments.delete_environment(self.ctx, ns, name)
        return "/ui/environments"

    # -- namespaces, users, tokens, bindings, policies ---------------------------------

    def create_namespace(self, req: falcon.Request, form: Form) -> str:
        name = namespaces.check_namespace_name(_field(form, "name"))
        refused = Forbidden(f"you may not create namespace {name!r}")
        require(self.ctx, req, Action.ADMIN, name, hidden=refused)
        namespaces.create_namespace(self.ctx, name)
        return "/ui/manage"

    def delete_namespace(self, req: falcon.Request, form: Form) -> str:
        name = _field(form, "name")
        require(self.ctx, req, Action.ADMIN, name, hidden=f"namespace {name!r} does not exist")
        namespaces.delete_namespace(self.ctx, name)
        return "/ui/manage"

    def add_user(self, req: falcon.Request, form: Form) -> str:
        require_admin(req)
        users.create_user(
            self.ctx, _field(form, "name"), form.get("password") or None, admin="admin" in form
        )
        return "/ui/admin"

    def disable_user(self, req: falcon.Request, form: Form) -> str:
        who = require_admin(req)
        name = _field(form, "name")
        if name == who.name:
            raise InvalidRequest("you cannot disable your own account")
        accounts.set_disabled(self.ctx, name, True)
        return "/ui/admin"

    def enable_user(self, req: falcon.Request, form: Form) -> str:
        require_admin(req)
        accounts.set_disabled(self.ctx, _field(form, "name"), False)
        return "/ui/admin"

    def delete_user(self, req: falcon.Request, form: Form) -> str:
        who = require_admin(req)
        name = _field(form, "name")
        if name == who.name:
            raise InvalidRequest("you cannot delete your own account")
        accounts.delete_user(self.ctx, name)
        return "/ui/admin"

    def set_password(self, req: falcon.Request, form: Form) -> str:
        who = require_login(req)
        name = form.get("name") or str(who.name)
        if name != who.name or who.scope is not None:
            require_admin(req)
        users.set_password(self.ctx, name, form.get("password", ""))
        return "/ui/manage"

    def revoke_token(self, req: falcon.Request, form: Form) -> str:
        who = require_login(req)
        token_id = _field(form, "token_id")
        owner = accounts.token_owner(self.ctx, token_id)
        if owner != who.name:
            require_admin(req)
        accounts.revoke(self.ctx, token_id)
        return "/ui/manage"

    def add_binding(self, req: falcon.Request, form: Form) -> str:
        pattern = _field(form, "pattern")
        may_manage_binding(self.ctx, req, pattern)
        users.add_role_binding(self.ctx, _field(form, "subject"), pattern, _field(form, "role"))
        return "/ui/manage"

    def remove_binding(self, req: falcon.Request, form: Form) -> str:
        require_login(req)
        row = accounts.get_role_binding(self.ctx, _int(form, "binding_id"))
        may_manage_binding(self.ctx, req, row.pattern)
        users.delete_role_binding(self.ctx, row.id)
        return "/ui/manage"

    def set_policy(self, req: falcon.Request, form: Form) -> str:
        require_admin(req)
        policy = {
            "allowed_channels": _list(form.get("channels", "")),
            "required_packages": _list(form.get("required", "")),
        }
        policies.set_policy(self.ctx, form.get("scope", "").strip(), policy)
        return "/ui/admin"
