"""The client against a broken or hostile server: everything the server says is checked,
and every failure is a pets error (never a JSONDecodeError, KeyError or a hang).

The server here is a small ``http.server`` in a thread that answers what each test
scripts; the client is the real one, making real keys.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from pets_protocols.service import InferenceClient

import pets

Answer = tuple[int, bytes]
Route = Callable[[bytes], Answer]

REQUIREMENTS: dict[str, Any] = {"max_abs": 1.0, "max_rows": 4, "functions": [],
                "extension": {"kind": "levelled", "depth": 2, "matmul_shapes": [[4, 2]],
                              "first_product": [4, 2]}}
LIMITS = {"max_rows": 16, "max_request_bytes": 1 << 28, "max_key_bytes": 1 << 28,
          "idle_timeout": 60.0, "max_sessions": 4}


def description(**changes: Any) -> dict[str, Any]:
    return {"protocol": "pets-inference/1", "backend": "ckks", "input_shape": [4],
            "output_shape": [2], "requirements": REQUIREMENTS, "limits": LIMITS, **changes}


def as_json(status: int, value: Any) -> Route:
    return lambda body: (status, json.dumps(value).encode())


class Scripted:
    """A server answering each ``(method, path start)`` with its scripted route."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.keys: bytes = b""
        script = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                longest_first = sorted(script.routes.items(), key=lambda r: -len(r[0][1]))
                for (method, start), route in longest_first:
                    if method == self.command and self.path.startswith(start):
                        status, answer = route(body)
                        break
                else:
                    status, answer = 404, b"{}"
                try:
                    self.send_response(status)
                    self.send_header("content-length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:  # the client gave up waiting
                    pass

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.routes[("GET", "/model")] = as_json(200, description())
        self.routes[("POST", "/sessions")] = self.open_session
        self.routes[("DELETE", "/sessions/")] = lambda body: (204, b"")

    def open_session(self, body: bytes) -> Answer:
        self.keys = body
        key_id = pets.load_backend(body).key_id
        return 201, json.dumps({"session_id": "s" * 24, "key_id": key_id,
                                "key_bytes": len(body), "idle_timeout": 60.0}).encode()

    def answer_inferences(self, route: Route) -> None:
        self.routes[("POST", "/sessions/")] = route


@pytest.fixture
def server() -> Iterator[Scripted]:
    scripted = Scripted()
    thread = threading.Thread(target=scripted.http.serve_forever, daemon=True)
    thread.start()
    yield scripted
    scripted.http.shutdown()
    scripted.http.server_close()


@pytest.mark.parametrize(("answer", "message"), [
    (lambda body: (200, b"<html>hello</html>"), "the server sent an invalid model description"),
    (as_json(200, description(input_shape=[-3])), "the server sent an invalid model description"),
    (as_json(200, {"backend": "ckks"}), "the server sent an invalid model description"),
    (lambda body: (200, b"[" * 100_000 + b"]" * 100_000), "invalid model description"),
    (as_json(200, description(requirements={**REQUIREMENTS, "extension": {
        **REQUIREMENTS["extension"], "matmul_shapes": [[-3, 4]]}})),
     "requirements: matmul_shapes must be an integer in [1, 2147483648], got -3"),
    (as_json(200, description(requirements={**REQUIREMENTS, "extension": {
        **REQUIREMENTS["extension"], "depth": "deep"}})),
     "requirements: depth must be an integer"),
    (as_json(200, description(backend="rot13")),
     "the server evaluates with a 'rot13' backend, which this pets does not have"),
])
def test_a_malformed_description_is_a_serialization_error(
    server: Scripted, answer: Route, message: str,
) -> None:
    server.routes[("GET", "/model")] = answer
    with pytest.raises(pets.SerializationError, match=re.escape(message)):
        InferenceClient(server.url)


def test_an_answer_over_the_size_cap_is_cut_off(server: Scripted) -> None:
    server.routes[("GET", "/model")] = lambda body: (200, b" " * 5000)
    with pytest.raises(pets.SerializationError, match=re.escape(
        "the server's answer to GET /model exceeds 4096 bytes; it is broken or hostile"
    )):
        InferenceClient(server.url, max_answer_bytes=4096)


@pytest.mark.parametrize(("answer", "error", "message"), [
    (as_json(422, {"error": "ShapeMismatchError", "message": "wrong"}), pets.ShapeMismatchError,
     "the server refused the request (422): wrong"),
    (as_json(422, {"error": "UnsupportedModelError", "message": "no"}), pets.CompileError,
     "the server refused the request (422): no"),
    (as_json(500, {"error": "SystemExit", "message": "bye"}), pets.ServiceError,
     "the server refused the request (500): bye"),
    (as_json(500, {"error": "ShapeMismatchError"}), pets.ServiceError,
     "the server answered 500 without a pets error"),
    (lambda body: (502, b"<html>Bad gateway</html>"), pets.ServiceError,
     "the server answered 502 without a pets error: b'<html>Bad gateway</html>'"),
    (lambda body: (302, b""), pets.ServiceError, "the server answered 302 without a pets error"),
    (lambda body: (503, b"full"), pets.ServiceUnavailableError,
     "the server answered 503 without a pets error"),
    (lambda body: (404, b"no"), pets.RequestRefusedError,
     "the server answered 404 without a pets error"),
])
def test_error_answers_become_the_named_pets_error_or_party_error(
    server: Scripted, answer: Route, error: type[Exception], message: str,
) -> None:
    server.routes[("POST", "/sessions")] = answer
    with pytest.raises(error, match=re.escape(message)) as raised:
        InferenceClient(server.url)
    assert type(raised.value) is error


def test_a_session_for_other_keys_is_refused(server: Scripted) -> None:
    server.routes[("POST", "/sessions")] = as_json(201, {
        "session_id": "s" * 24, "key_id": "someone-else", "key_bytes": 1, "idle_timeout": 1.0})
    with pytest.raises(pets.SerializationError, match=re.escape(
        "the server opened the session for other keys than ours"
    )):
        InferenceClient(server.url)


def test_garbage_instead_of_a_ciphertext_is_refused(server: Scripted) -> None:
    server.answer_inferences(lambda body: (200, b"\x00" * 64))
    with InferenceClient(server.url) as client, pytest.raises(
        pets.SerializationError, match=re.escape("these bytes are not pets data")
    ):
        client.infer(np.zeros((1, 4)))


def test_a_ciphertext_under_other_keys_is_refused(server: Scripted) -> None:
    other = pets.backend("ckks", depth=2)
    foreign = other.encrypt(np.zeros((1, 2)), layout="per_sample").to_bytes()
    server.answer_inferences(lambda body: (200, foreign))
    with InferenceClient(server.url) as client, pytest.raises(
        pets.KeyMismatchError, match=re.escape(f"under key {other.key_id}")
    ):
        client.infer(np.zeros((1, 4)))


def test_an_answer_of_the_wrong_shape_is_refused(server: Scripted) -> None:
    def wrong_shape(body: bytes) -> Answer:  # a real ciphertext under our keys, 3 outputs
        public = pets.load_backend(server.keys)
        return 200, public.encrypt(np.zeros((1, 3)), layout="per_sample").to_bytes()

    server.answer_inferences(wrong_shape)
    with InferenceClient(server.url) as client, pytest.raises(
        pets.SerializationError, match=re.escape(
            "the server answered a tensor of shape (1, 3), expected (1, 2); it is broken or "
            "not serving the model it describes")
    ):
        client.infer(np.zeros((1, 4)))


def test_a_server_that_never_answers_is_unavailable(server: Scripted) -> None:
    def hang(body: bytes) -> Answer:
        time.sleep(5)
        return 200, b""

    server.answer_inferences(hang)
    client = InferenceClient(server.url, timeout=1)
    with pytest.raises(pets.ServiceUnavailableError, match=re.escape(
        f"{server.url} did not answer POST /sessions/{'s' * 24}/inferences in time"
    )):
        client.infer(np.zeros((1, 4)))
