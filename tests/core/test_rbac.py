"""Role bindings, personal namespaces, narrowed tokens that can never escalate."""

from __future__ import annotations

import pytest

from condastore_core.auth.passwords import hash_password, verify_password
from condastore_core.auth.rbac import (
    ANONYMOUS_PRINCIPAL,
    AccessPolicy,
    Action,
    Forbidden,
    Principal,
    Role,
    RoleBinding,
    Unauthenticated,
    narrow,
)

POLICY = AccessPolicy(
    [
        RoleBinding("public/*", Role.VIEWER, "anonymous"),
        RoleBinding("team-*/*", Role.EDITOR, "group:devs"),
        RoleBinding("shared/reports", Role.VIEWER, "user:bob"),
    ]
)
alice = Principal("alice", groups=frozenset({"devs"}))
bob = Principal("bob")
root = Principal("root", is_admin=True)


@pytest.mark.parametrize(
    ("who", "ns", "env", "role"),
    [
        (ANONYMOUS_PRINCIPAL, "public", "x", Role.VIEWER),
        (ANONYMOUS_PRINCIPAL, "alice", "x", None),
        (alice, "alice", "x", Role.ADMIN),  # personal namespace
        (alice, "alice", None, Role.ADMIN),
        (alice, "team-a", "x", Role.EDITOR),
        (alice, "team-a", None, Role.EDITOR),
        (alice, "teams", "x", None),
        (alice, "public", "x", Role.VIEWER),  # anonymous bindings apply to everyone
        (bob, "alice", "x", None),
        (bob, "shared", "reports", Role.VIEWER),
        (bob, "shared", "other", None),
        (bob, "shared", None, None),  # a single environment does not cover the namespace
        (root, "anything", "x", Role.ADMIN),
    ],
)
def test_role_for(who, ns, env, role):
    assert POLICY.role_for(who, ns, env) == role


def test_actions_need_minimum_roles():
    assert POLICY.can(alice, Action.WRITE, "team-a", "x")
    assert not POLICY.can(alice, Action.DELETE, "team-a", "x")
    assert POLICY.can(alice, Action.DELETE, "alice", "x")
    with pytest.raises(Unauthenticated):
        POLICY.require(ANONYMOUS_PRINCIPAL, Action.READ, "alice", "x")
    with pytest.raises(Forbidden, match="bob may not write shared/reports"):
        POLICY.require(bob, Action.WRITE, "shared", "reports")


def test_narrowed_token_is_capped_by_its_scope():
    ci = Principal(
        "alice", groups=frozenset({"devs"}), scope=(RoleBinding("team-a/*", Role.VIEWER),)
    )
    assert POLICY.role_for(ci, "team-a", "x") == Role.VIEWER  # was editor
    assert POLICY.role_for(ci, "alice", "x") is None  # personal namespace outside the scope
    # A scope wider than the holder's rights grants nothing extra.
    wide = Principal("bob", scope=(RoleBinding("*/*", Role.ADMIN),))
    assert POLICY.role_for(wide, "team-a", "x") is None
    assert POLICY.role_for(wide, "shared", "reports") == Role.VIEWER


@pytest.mark.parametrize(
    ("requested", "ok"),
    [
        ("alice/*=admin", True),
        ("alice/nb=viewer", True),
        ("team-a/*=editor", True),
        ("team-a*/*=viewer", True),
        ("team-*/*=admin", False),  # more than editor
        ("*/*=viewer", False),  # wider than any binding
        ("t*/*=viewer", False),
        ("bob/*=viewer", False),
    ],
)
def test_tokens_cannot_escalate(requested, ok):
    granted = [RoleBinding("team-*/*", Role.EDITOR, "group:devs")]
    binding = RoleBinding.parse(requested)
    if ok:
        assert narrow(granted, [binding], False, "alice") == (binding,)
    else:
        with pytest.raises(Forbidden, match="exceeds your own rights"):
            narrow(granted, [binding], False, "alice")


@pytest.mark.parametrize("text", ["nopattern=viewer", "a/b=owner", "a/b", "../x/y=viewer"])
def test_bad_bindings_are_refused(text):
    with pytest.raises(ValueError):
        RoleBinding.parse(text)


def test_namespace_visibility_in_lists():
    assert POLICY.can_see_any(bob, "shared")
    assert not POLICY.can_see_any(bob, "team-a")
    assert POLICY.can_see_any(alice, "team-b")
    assert POLICY.can_see_any(ANONYMOUS_PRINCIPAL, "public")


def test_passwords_are_salted_scrypt_and_verify():
    stored = hash_password("s3cret")
    assert stored.startswith("scrypt$") and "s3cret" not in stored
    assert stored != hash_password("s3cret")  # salted
    assert verify_password("s3cret", stored)
    assert not verify_password("wrong", stored)
    assert not verify_password("s3cret", "garbage")
    assert not verify_password("s3cret", "md5$x$y$z$a$b")
