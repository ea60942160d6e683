"""Request bodies of every framing: sized by ``Content-Length`` or sent ``chunked``.

Every reader of a request body (blob uploads, manifest PUTs, the REST API's
JSON bodies) goes through here. Go clients (containerd, buildkit, crane) and
skopeo, when it compresses a layer on the fly, send ``Transfer-Encoding:
chunked`` without a ``Content-Length``; falcon's ``bounded_stream`` is bounded
by ``Content-Length`` alone and reads such a body as empty. The WSGI server
(gunicorn) decodes the chunked framing and says so with ``wsgi.input_terminated``:
its input then ends where the body ends, and is read to that end. A server that
does not decode chunked bodies gets ``411 Length Required`` rather than a body
silently read as empty.

Limits hold for both framings: a sized body over the limit is refused before a
byte is read, a chunked one after at most ``limit + 1`` bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Protocol

import falcon

#: How much of a body is read at a time when it is streamed through.
CHUNK = 1 << 20


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class BodyTooLarge(Exception):
    """The body is longer than ``limit`` bytes; callers answer with their own error."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")
        self.limit = limit


def is_chunked(req: falcon.Request) -> bool:
    codings = req.get_header("Transfer-Encoding") or ""
    return "chunked" in (c.strip().lower() for c in codings.split(","))


def body_stream(req: falcon.Request) -> Readable:
    """A reader that ends where the request body ends, whatever its framing."""
    if req.content_length is not None:
        return req.bounded_stream
    if req.env.get("wsgi.input_terminated"):
        return req.stream  # chunked (decoded by the server), or no body: ends at its end
    if is_chunked(req):
        raise falcon.HTTPLengthRequired(
            description="this server cannot read chunked bodies; send a Content-Length"
        )
    return io.BytesIO()  # no Content-Length and no chunked framing: no body


def body_chunks(req: falcon.Request, size: int = CHUNK) -> Iterator[bytes]:
    """The body in pieces of at most ``size`` bytes, never all of it in memory."""
    stream = body_stream(req)
    while chunk := stream.read(size):
        yield chunk


def read_body(req: falcon.Request, limit: int) -> bytes:
    """The whole body, or :class:`BodyTooLarge` having read no more than ``limit + 1`` bytes."""
    if req.content_length is not None and req.content_length > limit:
        raise BodyTooLarge(limit)
    stream = body_stream(req)
    parts: list[bytes] = []
    left = limit + 1
    while left > 0 and (chunk := stream.read(min(CHUNK, left))):
        parts.append(chunk)
        left -= len(chunk)
    if left <= 0:
        raise BodyTooLarge(limit)
    return b"".join(parts)
