"""Middleware: the headers that keep browsers safe, on every answer (pages, API, registry).

Pages load their script and styles from ``/static`` only, so the policy
forbids inline script; no page may be framed (clickjacking); browsers must
not guess content types; and other sites are not told which page linked them.
"""

from __future__ import annotations

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = [
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
]


class SecurityHeaders:
    def process_response(self, req, resp, resource, req_succeeded) -> None:  # type: ignore[no-untyped-def]
        resp.set_headers(HEADERS)
