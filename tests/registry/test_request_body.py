"""The one reader of request bodies, on servers that do and do not decode chunked framing."""

from __future__ import annotations

import falcon
import falcon.testing
import pytest

from condastore_registry.request_body import BodyTooLarge, body_chunks, read_body


def app_reading(limit: int) -> falcon.App:
    class Echo:
        def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
            try:
                body = read_body(req, limit)
            except BodyTooLarge as exc:
                raise falcon.HTTPContentTooLarge(description=str(exc)) from None
            resp.data = body

        def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
            resp.media = {"pieces": [len(piece) for piece in body_chunks(req, 4)]}

    app = falcon.App()
    app.add_route("/", Echo())
    return app


CHUNKED = {"Transfer-Encoding": "chunked"}
#: A chunked request has no Content-Length (an empty one is how wsgiref says so).
UNSIZED = {"CONTENT_LENGTH": ""}
#: What gunicorn (and werkzeug) say of their input: it ends where the body ends.
TERMINATED = {**UNSIZED, "wsgi.input_terminated": True}


def test_a_chunked_body_is_read_to_its_end_on_a_server_that_decodes_it():
    client = falcon.testing.TestClient(app_reading(100))
    answer = client.simulate_put("/", body=b"hello world", headers=CHUNKED, extras=TERMINATED)
    assert answer.status_code == 200 and answer.content == b"hello world"
    pieces = client.simulate_post("/", body=b"0123456789", headers=CHUNKED, extras=TERMINATED)
    assert pieces.json == {"pieces": [4, 4, 2]}


@pytest.mark.parametrize("extras", [TERMINATED, {}], ids=["chunked", "sized"])
def test_a_body_over_the_limit_is_refused_in_either_framing(extras):
    client = falcon.testing.TestClient(app_reading(10))
    headers = CHUNKED if extras else {}
    answer = client.simulate_put("/", body=b"x" * 11, headers=headers, extras=extras)
    assert answer.status_code == 413
    assert answer.json["description"] == "the request body is larger than 10 bytes"
    exact = client.simulate_put("/", body=b"x" * 10, headers=headers, extras=extras)
    assert exact.status_code == 200 and exact.content == b"x" * 10


def test_a_server_that_cannot_decode_chunked_bodies_gets_411_not_an_empty_body():
    client = falcon.testing.TestClient(app_reading(100))
    answer = client.simulate_put("/", body=b"hello", headers=CHUNKED, extras=UNSIZED)
    assert answer.status_code == 411


def test_no_length_and_no_framing_is_an_empty_body():
    client = falcon.testing.TestClient(app_reading(100))
    answer = client.simulate_put("/", body=b"ignored", extras=UNSIZED)
    assert answer.status_code == 200 and answer.content == b""
