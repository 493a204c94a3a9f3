"""One client cannot starve the service (issue #18's service cases), against a real server.

The attacker connects from 127.0.0.1, the other client from 127.0.0.2 (another loopback
address: another client to the server). Nothing is timed: each test asserts what was
answered, and the server's resident memory is read from /proc.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import numpy as np
import pytest
from pets_protocols.service import InferenceClient
from service_support import Server, export_model, receive_answer, resident_mib, running_server
from test_service_attacks import forged, refused

import pets

ATTACKER, OTHER = "127.0.0.1", "127.0.0.2"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    path, example, _ = export_model(tmp_path_factory.mktemp("model"), (8, 6, 3))
    # the default head (30 s) and body (120 s) deadlines: the attacks outlast each test
    with running_server(str(path), "--example", str(example), "--workers", "1",
                        "--max-rows", "64", "--max-request-mib", "64",
                        "--max-key-mib", "64") as running:
        yield running


def connect(server: Server, source: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30,
                                    source_address=(source, 0))
    return sock


def half_sent_heads(stack: ExitStack, server: Server, count: int) -> list[socket.socket]:
    """``count`` requests whose headers never end, from the attacker."""
    socks = []
    for _ in range(count):
        try:
            sock = stack.enter_context(connect(server, ATTACKER))
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        except OSError:  # refused or reset: the server would not hold it
            continue
        socks.append(sock)
    return socks


def slow_bodies(stack: ExitStack, server: Server, count: int, path: str,
                length: int) -> list[socket.socket]:
    """``count`` requests to ``path`` announcing ``length`` bytes and sending 10."""
    socks = []
    for _ in range(count):
        try:
            sock = stack.enter_context(connect(server, ATTACKER))
            sock.sendall((f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
                          ).encode() + b"PETS\x00\x01" + b"\x00" * 4)
        except OSError:
            continue
        socks.append(sock)
    return socks


def other_client(server: Server) -> InferenceClient:
    return InferenceClient(server.url, local_address=OTHER)


def test_a_hundred_half_sent_heads_from_one_client_starve_no_other(server: Server) -> None:
    with ExitStack() as stack:
        half_sent_heads(stack, server, 100)
        with httpx.Client(transport=httpx.HTTPTransport(local_address=OTHER)) as http:
            answer = http.get(f"{server.url}/health", timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "ok"


def test_slow_session_bodies_take_no_session_slot(server: Server) -> None:
    with ExitStack() as stack:
        slow_bodies(stack, server, 16, "/sessions", 8 << 20)
        with other_client(server) as client:
            assert client.infer(np.zeros((1, 8))).shape == (1, 3)


def test_an_absurd_value_bound_with_a_recomputed_checksum_is_a_4xx(server: Server) -> None:
    with other_client(server) as client:
        tensor = client.backend.encrypt_for(np.full((1, 8), 0.25), client.requirements)
        url = f"{server.url}/sessions/{client.session_id}/inferences"
        for bound in (1e308, 1.7976931348623157e308, 1e300, -1.0):
            refused(httpx.post(url, content=forged(tensor.to_bytes(), bound=bound)), 400,
                    "SerializationError", "bound")
        assert client.infer(np.zeros((1, 8))).shape == (1, 3)


def test_refused_large_bodies_are_released_at_once(server: Server) -> None:
    body = b"PETS" + bytes(60 << 20)  # under the 64 MiB limit, refused once read
    with other_client(server) as client:
        url = f"{server.url}/sessions/{client.session_id}/inferences"
        before = resident_mib(server.process.pid)
        for _ in range(6):
            refused(httpx.post(url, content=body, timeout=120), 400, "SerializationError")
        after = resident_mib(server.process.pid)
        assert after - before < 30, (before, after)  # each body alone is 60 MiB


def test_one_client_holding_heads_and_bodies_leaves_room_for_another(server: Server) -> None:
    with ExitStack() as stack:
        half_sent_heads(stack, server, 100)
        slow_bodies(stack, server, 16, "/sessions", 8 << 20)
        before = resident_mib(server.process.pid)
        with other_client(server) as client:
            assert client.infer(np.zeros((2, 8))).shape == (2, 3)
        assert resident_mib(server.process.pid) - before < 100


def test_connections_beyond_the_per_client_limit_are_refused_at_once(server: Server) -> None:
    with ExitStack() as stack:
        for _ in range(8):  # the default --max-connections-per-client
            stack.enter_context(connect(server, ATTACKER))
        extra = stack.enter_context(connect(server, ATTACKER))
        answer = receive_answer(extra)
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert (b'"error": "ServiceUnavailableError"' in answer
                and b"this client already holds 8 connections, the most one client may" in answer)
        with httpx.Client(transport=httpx.HTTPTransport(local_address=OTHER)) as http:
            assert http.get(f"{server.url}/health", timeout=30).status_code == 200


def test_bytes_in_flight_are_capped_per_client(server: Server) -> None:
    size = 60 << 20  # two of these fill the default 2 x 64 MiB a client may have arriving
    with ExitStack() as stack:
        slow_bodies(stack, server, 2, "/sessions", size)
        for _ in range(600):  # until the server holds both (bounded: 60 s)
            if httpx.get(f"{server.url}/health", timeout=30).json()["bytes_in_flight"] >= 2 * size:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the server never held the two bodies")
        third = slow_bodies(stack, server, 1, "/sessions", size)[0]
        answer = receive_answer(third)
        assert answer.startswith(b"HTTP/1.1 429"), answer
        assert b"this client already has 125829120 bytes of request bodies arriving" in answer
        with other_client(server) as client:  # another client is not held back
            assert client.infer(np.zeros((1, 8))).shape == (1, 3)


def test_without_httptools_the_server_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from pets_protocols.service.connections import ConnectionLimits, guarded_protocol

    monkeypatch.setitem(sys.modules, "httptools", None)  # as if it were not installed
    with pytest.raises(pets.ServiceError, match=re.escape(
        "the inference service needs httptools for its request deadlines"
    )):
        guarded_protocol(ConnectionLimits(head_timeout=1, body_timeout=1, max_connections=2,
                                          max_per_client=1))
