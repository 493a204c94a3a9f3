"""The service under attack: every kind of bad input, sent with a real HTTP client (or a
raw socket) to a real ``pets serve`` process, gets a clear 4xx answer naming a pets
error, and the server keeps serving everyone else.

Each test names the attack on the old framed-TCP server it replays: one malformed
16-byte frame ended the process, an idle or dribbling client blocked every other
client, a forged row count of 1e12-1e15 made it allocate gigabytes or exit.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pets_protocols.service import InferenceClient
from service_support import Server, export_model, raw_request, running_server

import pets
from pets.serialization import pack, unpack

PETS_ERRORS = set(pets.errors.__all__)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    path, example, _ = export_model(tmp_path_factory.mktemp("model"), (8, 6, 3))
    with running_server(str(path), "--example", str(example), "--workers", "1",
                        "--max-rows", "64", "--max-request-mib", "8", "--max-key-mib", "64",
                        "--body-timeout", "3", "--head-timeout", "3",
                        "--max-sessions", "6") as running:
        yield running


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[InferenceClient]:
    with InferenceClient(server.url) as session:
        yield session


class Blob(bytes):
    """Bytes that print short (test reports show fixtures)."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes>"


@pytest.fixture(scope="module")
def tensor(client: InferenceClient) -> bytes:
    """A valid one-sample request under the client's keys."""
    return Blob(client.backend.encrypt_for(np.full((1, 8), 0.25), client.requirements).to_bytes())


def infer_url(server: Server, client: InferenceClient) -> str:
    return f"{server.url}/sessions/{client.session_id}/inferences"


def refused(answer: httpx.Response, status: int, error: str, message: str = "") -> None:
    """The answer is ``status`` with a pets error body naming ``error``."""
    body = answer.json()
    assert (answer.status_code, body["error"]) == (status, error), body
    assert message in body["message"]


def still_serving(server: Server, client: InferenceClient) -> None:
    assert server.alive()
    assert httpx.get(f"{server.url}/health", timeout=30).json()["status"] == "ok"
    assert client.infer(np.zeros((1, 8))).shape == (1, 3)


def forged(data: bytes, **meta: Any) -> bytes:
    """``data`` with header fields replaced and a valid checksum (a deliberate forgery)."""
    envelope = unpack(data, kind="tensor")
    envelope.meta.update(meta)
    return pack(envelope)


# ---- the old server's fatal 16-byte frames ------------------------------------------------


@pytest.mark.parametrize(("method", "path", "status", "error"), [
    ("POST", "/sessions", 400, "SerializationError"),
    ("POST", "/sessions/{sid}/inferences", 400, "SerializationError"),
    ("DELETE", "/sessions/%00PETW%FF", 404, "MissingKeyError"),
    ("POST", "/model", 405, "RequestRefusedError"),
    ("PUT", "/nowhere", 404, "RequestRefusedError"),
])
def test_sixteen_garbage_bytes_to_any_endpoint_get_a_4xx(
    server: Server, client: InferenceClient, method: str, path: str, status: int, error: str,
) -> None:
    url = server.url + path.format(sid=client.session_id)
    refused(httpx.request(method, url, content=b"\x00PETW\xff" + bytes(range(10))), status, error)
    still_serving(server, client)


def test_a_malformed_http_request_line_gets_400_and_nothing_else_breaks(
    server: Server, client: InferenceClient,
) -> None:
    tls_hello = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n"
    answer = raw_request(server.port, tls_hello)
    assert answer.startswith(b"HTTP/1.1 400")
    still_serving(server, client)


def test_an_endless_request_head_is_refused_as_it_arrives(
    server: Server, client: InferenceClient,
) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Filler: " + b"a" * 200_000 + b"\r\n\r\n"
    answer = raw_request(server.port, head)
    assert answer.startswith(b"HTTP/1.1 400")
    still_serving(server, client)


def test_truncated_key_set_and_tensor_are_refused(
    server: Server, client: InferenceClient, tensor: bytes,
) -> None:
    keys = client.backend.public().to_bytes()
    refused(httpx.post(f"{server.url}/sessions", content=keys[: len(keys) // 2]), 400,
            "SerializationError", "truncated or corrupted")
    refused(httpx.post(infer_url(server, client), content=tensor[:-100]), 400,
            "SerializationError", "truncated or corrupted")
    still_serving(server, client)


def test_a_tensor_sent_as_keys_and_keys_sent_as_a_tensor_are_refused(
    server: Server, client: InferenceClient, tensor: bytes,
) -> None:
    refused(httpx.post(f"{server.url}/sessions", content=tensor), 400, "SerializationError",
            "hold a pets tensor, not a backend")
    refused(httpx.post(infer_url(server, client), content=pets.backend("plain").to_bytes()),
            400, "SerializationError", "hold a pets backend, not a tensor")


def test_foreign_keys_are_refused(server: Server, client: InferenceClient) -> None:
    refused(httpx.post(f"{server.url}/sessions", content=pets.backend("plain").to_bytes()), 422,
            "KeyMismatchError", "this server evaluates with ckks keys, got a plain key set")


def test_a_key_set_with_the_secret_key_is_refused_and_not_stored(
    server: Server, client: InferenceClient,
) -> None:
    sessions = httpx.get(f"{server.url}/health").json()["sessions"]
    secret = client.backend.to_bytes(include_secret_key=True)
    refused(httpx.post(f"{server.url}/sessions", content=secret), 422, "KeyMismatchError",
            "the key set holds the secret key and was refused (nothing was stored)")
    # the same bytes with the header's flag forged to say "no secret": the key loader
    # finds the extra part (and a worker would find the secret key once loaded)
    envelope = unpack(secret, kind="backend")
    envelope.meta["secret"] = False
    refused(httpx.post(f"{server.url}/sessions", content=pack(envelope)), 400,
            "SerializationError", "CKKS key bytes hold 4 parts where their header announces 3")
    assert httpx.get(f"{server.url}/health").json()["sessions"] == sessions
    assert "BEGIN" not in server.log()


def test_a_tensor_under_another_sessions_keys_is_refused(
    server: Server, client: InferenceClient,
) -> None:
    with InferenceClient(server.url) as other:
        theirs = other.backend.encrypt_for(np.zeros((1, 8)), other.requirements).to_bytes()
        refused(httpx.post(infer_url(server, client), content=theirs), 422, "KeyMismatchError",
                f"but the session holds ckks key {client.backend.key_id}")
        assert other.infer(np.zeros((1, 8))).shape == (1, 3)


# ---- forged shapes: refused before anything is allocated ------------------------------


@pytest.mark.parametrize("rows", [10**12, 10**13, 10**14, 10**15])
def test_a_forged_row_count_is_refused_before_any_allocation(
    server: Server, client: InferenceClient, tensor: bytes, rows: int,
) -> None:
    body = forged(tensor, shape=[rows, 8], rows=rows)
    answer = httpx.post(infer_url(server, client), content=body)
    refused(answer, 422, "ShapeMismatchError",
            f"this server takes 1 to 64 samples per request, the tensor announces {rows}")
    still_serving(server, client)


@pytest.mark.parametrize(("shape", "status", "error"), [
    ([1, 10**15], 422, "ShapeMismatchError"),
    ([-5, 8], 422, "ShapeMismatchError"),
    ([0, 8], 422, "ShapeMismatchError"),
    ([1, 2, 8], 400, "SerializationError"),
    ([], 400, "SerializationError"),
    ("1x8", 400, "SerializationError"),
    ([True, 8], 400, "SerializationError"),
    ([[1], 8], 400, "SerializationError"),
    ([1.0, 8], 400, "SerializationError"),
])
def test_absurd_shapes_are_refused(server: Server, client: InferenceClient, tensor: bytes,
                                   shape: Any, status: int, error: str) -> None:
    refused(httpx.post(infer_url(server, client), content=forged(tensor, shape=shape)),
            status, error)


def test_a_header_contradicting_its_shape_is_refused(
    server: Server, client: InferenceClient, tensor: bytes,
) -> None:
    refused(httpx.post(infer_url(server, client), content=forged(tensor, rows=10**12)), 400,
            "SerializationError", "the tensor header says rows=1000000000000 but shape (1, 8)")


mutations = st.fixed_dictionaries({}, optional={
    "shape": st.one_of(st.lists(st.integers(-2**70, 2**70), max_size=3), st.text(max_size=5)),
    "rows": st.one_of(st.integers(-2**70, 2**70), st.none(), st.text(max_size=3)),
    "cols": st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=False, allow_infinity=False)),
    "groups": st.one_of(st.lists(st.integers(-2**40, 2**40), max_size=4), st.none()),
    "layout": st.sampled_from(["batched", "per_sample", "dense", "", "x" * 200]),
    "staged_for": st.one_of(st.none(), st.lists(st.integers(-3, 2**40), max_size=3)),
})


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(meta=mutations)
def test_forged_tensor_headers_are_answered_with_a_pets_error(
    server: Server, client: InferenceClient, tensor: bytes, meta: dict[str, Any],
) -> None:
    answer = httpx.post(infer_url(server, client), content=forged(tensor, **meta), timeout=60)
    if answer.status_code != 200:  # harmless edits (e.g. the same value) may still load
        assert 400 <= answer.status_code < 500, answer.text
        assert answer.json()["error"] in PETS_ERRORS
    assert server.alive()


# ---- sizes ----------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "what"), [
    ("/sessions/{sid}/inferences", b"the ciphertext request"),
    ("/sessions", b"the key set"),  # a session's memory: --max-key-mib
])
def test_an_announced_body_over_the_limit_is_refused_unread(
    server: Server, client: InferenceClient, path: str, what: bytes,
) -> None:
    sessions = httpx.get(f"{server.url}/health").json()["sessions"]
    head = (f"POST {path.format(sid=client.session_id)} HTTP/1.1\r\nHost: x\r\n"
            "Content-Length: 1000000000000000\r\n\r\n").encode()
    answer = raw_request(server.port, head + b"PETS")
    assert answer.startswith(b"HTTP/1.1 413")
    assert what + b" is 1000000000000000 bytes, above this server's limit" in answer
    assert httpx.get(f"{server.url}/health").json()["sessions"] == sessions
    still_serving(server, client)


def test_a_streamed_body_over_the_limit_is_cut_off(server: Server, client: InferenceClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked, 9 MiB against 8
        for _ in range(9):
            yield b"\0" * (1 << 20)

    try:
        answer = httpx.post(infer_url(server, client), content=chunks(), timeout=30)
        refused(answer, 413, "SerializationError", "over this server's limit of 8388608 bytes")
    except httpx.WriteError:  # the server answered and closed while we were still sending
        pass
    still_serving(server, client)


# ---- slow and idle clients --------------------------------------------------------------


def test_an_idle_connection_blocks_no_one_and_is_closed(
    server: Server, client: InferenceClient,
) -> None:
    idle = socket.create_connection(("127.0.0.1", server.port))
    half = socket.create_connection(("127.0.0.1", server.port))
    half.sendall(b"GET /health HTTP/1.1\r\nHo")  # headers that never finish
    try:
        still_serving(server, client)  # answered while both connections hang
        for sock in (idle, half):
            sock.settimeout(30)
            answer = sock.recv(65536)  # the head deadline (3 s) closes them
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408")
    finally:
        idle.close()
        half.close()
    still_serving(server, client)


def test_a_client_sending_a_byte_at_a_time_gets_408_and_blocks_no_one(
    server: Server, client: InferenceClient, tensor: bytes,
) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall((f"POST /sessions/{client.session_id}/inferences HTTP/1.1\r\nHost: x\r\n"
                  f"Content-Length: {len(tensor)}\r\n\r\n").encode())
    answers: list[bytes] = []
    stop = threading.Event()

    def dribble() -> None:
        for byte in tensor[:40]:
            if stop.is_set():
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return
            time.sleep(0.5)

    def listen() -> None:  # until the server closes the connection
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError:
            pass
        answers.append(received)

    threads = [threading.Thread(target=dribble), threading.Thread(target=listen)]
    for thread in threads:
        thread.start()
    try:
        with InferenceClient(server.url) as other:  # a whole session while the dribble goes on
            assert other.infer(np.zeros((2, 8))).shape == (2, 3)
        threads[1].join(timeout=60)
        assert answers and answers[0].startswith(b"HTTP/1.1 408"), answers
        assert b'"error":"RequestRefusedError"' in answers[0]
        assert b"did not arrive within 3 s" in answers[0]
    finally:
        stop.set()
        sock.close()
        for thread in threads:
            thread.join(timeout=10)
    still_serving(server, client)


def test_a_second_request_in_one_session_while_one_runs_is_refused(
    server: Server, client: InferenceClient, tensor: bytes,
) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:  # a request whose body is still arriving keeps the session busy
        sock.sendall((f"POST /sessions/{client.session_id}/inferences HTTP/1.1\r\nHost: x\r\n"
                      f"Content-Length: {len(tensor)}\r\n\r\n").encode() + tensor[:10])
        time.sleep(0.5)
        refused(httpx.post(infer_url(server, client), content=tensor), 429, "RequestRefusedError",
                "is already running an inference")
        sock.sendall(tensor[10:])
        sock.settimeout(60)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        sock.close()


def test_the_server_log_records_refusals(server: Server) -> None:
    assert "-> 4" in server.log()
    assert server.alive()
