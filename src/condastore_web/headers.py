"""Middleware: the headers that keep browsers safe, on every answer (pages, API, registry).

Pages load their script and styles from ``/static`` only, so the policy
forbids inline script; no page may be framed (clickjacking); browsers must
not guess content types; and other sites are not told which page linked them.
Forms post to this site only, and to the identity provider's origin when single
sign-on is on: a logout form's answer sends the browser on to the provider, and
browsers apply ``form-action`` to that redirect too.
"""

from __future__ import annotations

from collections.abc import Sequence


def content_security_policy(form_targets: Sequence[str] = ()) -> str:
    """The policy, with ``form_targets`` (origins) allowed as form destinations beside this site."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            " ".join(["form-action 'self'", *form_targets]),
            "frame-ancestors 'none'",
        ]
    )


CONTENT_SECURITY_POLICY = content_security_policy()


class SecurityHeaders:
    def __init__(self, form_targets: Sequence[str] = ()) -> None:
        self.headers = [
            ("Content-Security-Policy", content_security_policy(form_targets)),
            ("X-Frame-Options", "DENY"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "same-origin"),
        ]

    def process_response(self, req, resp, resource, req_succeeded) -> None:  # type: ignore[no-untyped-def]
        resp.set_headers(self.headers)
