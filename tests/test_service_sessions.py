"""Sessions expire when idle, are capped in number, and a dying worker is replaced."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from pets_protocols.service import InferenceClient
from pets_protocols.service.errors import Refusal
from pets_protocols.service.sessions import Session, SessionStore
from pets_protocols.service.workers import WorkerPool, ping
from service_support import Server, export_model, running_server

import pets


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_idle_session_expires_and_its_keys_are_deleted(tmp_path: Path) -> None:
    clock = Clock()
    store = SessionStore(tmp_path, max_sessions=2, idle_timeout=10, clock=clock)
    sid = store.reserve("10.0.0.1")
    store.key_path(sid).write_bytes(b"keys")
    store.add(Session(sid, "k", store.key_path(sid), 4, last_used=clock()))
    clock.now = 9.0
    assert store.get(sid).id == sid
    clock.now = 20.0
    with pytest.raises(Refusal, match="expired after 10 s idle") as refusal:
        store.get(sid)
    assert refusal.value.status == 404 and isinstance(refusal.value.error, pets.MissingKeyError)
    assert not store.key_path(sid).exists()


def test_a_busy_session_does_not_expire_and_takes_one_request_at_a_time(tmp_path: Path) -> None:
    clock = Clock()
    store = SessionStore(tmp_path, max_sessions=2, idle_timeout=10, clock=clock)
    sid = store.reserve("10.0.0.1")
    store.add(Session(sid, "k", store.key_path(sid), 4, last_used=clock()))
    with store.using(store.get(sid)):
        clock.now = 100.0
        assert store.expire_idle() == []
        with pytest.raises(Refusal, match="is already running an inference"), \
                store.using(store.get(sid)):
            pass
    clock.now = 105.0  # idle time counts from the end of the last request
    assert store.get(sid).last_used == 100.0


def test_reservations_count_against_the_cap(tmp_path: Path) -> None:
    store = SessionStore(tmp_path, max_sessions=1, idle_timeout=10)
    sid = store.reserve("10.0.0.1")
    with pytest.raises(Refusal, match=re.escape("maximum of 1 sessions")) as refusal:
        store.reserve("10.0.0.1")
    assert refusal.value.status == 503
    store.release(sid)
    store.reserve("10.0.0.1")


def test_sessions_are_capped_per_client_as_well_as_in_total(tmp_path: Path) -> None:
    store = SessionStore(tmp_path, max_sessions=3, idle_timeout=10, max_per_client=2)
    for _ in range(2):
        sid = store.reserve("10.0.0.1")
        store.add(Session(sid, "k", store.key_path(sid), 4, last_used=store.clock(),
                          client="10.0.0.1"))
    with pytest.raises(Refusal, match=re.escape(
        "this client holds 2 sessions, the most one client may"
    )) as refusal:
        store.check_room("10.0.0.1")
    assert refusal.value.status == 429
    assert isinstance(refusal.value.error, pets.RequestRefusedError)
    store.reserve("10.0.0.2")  # another client still gets one
    with pytest.raises(Refusal, match=re.escape("maximum of 3 sessions")) as full:
        store.reserve("10.0.0.3")
    assert isinstance(full.value.error, pets.ServiceUnavailableError)


class NoModel:
    """A model source for a pool that runs no model."""

    name = "none"

    def open(self) -> object:
        return lambda backend: None


def test_a_worker_that_dies_is_replaced_and_the_request_gets_a_pets_error() -> None:
    async def scenario() -> tuple[int, list[int]]:
        pool = WorkerPool(NoModel(), workers=1, cache_size=1)  # type: ignore[arg-type]
        try:
            first = (await pool.start())[0]
            with pytest.raises(pets.WorkerError, match="an evaluation worker died while this "
                               "request was in it"):
                await pool.run(os._exit, 3)  # what an engine segfault looks like from here
            return first, [await pool.run(ping)]
        finally:
            pool.shutdown()

    first, after = asyncio.run(scenario())
    assert after[0] != first  # a new worker answers


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    path, example, _ = export_model(tmp_path_factory.mktemp("model"), (4, 3, 2))
    with running_server(str(path), "--example", str(example), "--workers", "1",
                        "--idle-timeout", "1") as running:
        yield running


def test_the_server_closes_idle_sessions(server: Server) -> None:
    with InferenceClient(server.url) as client:  # closing an expired session is no error
        assert client.infer(np.zeros((1, 4))).shape == (1, 2)
        time.sleep(3)  # > the 1 s idle timeout, and a sweep
        assert httpx.get(f"{server.url}/health").json()["sessions"] == 0
        with pytest.raises(pets.MissingKeyError, match=r"\(404\): no session .* expired after "
                           r"1 s idle"):
            client.infer(np.zeros((1, 4)))
    assert "expired after 1 s idle" in server.log()
