"""One client's long inference blocks no one: health, the description and another
session's inference are answered while it runs (evaluation is in worker processes).

No timing is asserted, only order: the other answers arrive while the long
request is still running, as the server's own count of running inferences and
the long request's thread both show.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from pets_protocols.service import InferenceClient
from service_support import Server, export_model, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # 32 -> 256 -> 10: a batched request is ~8,000 ciphertext products (seconds of work),
    # a single sample a few dozen rotations
    path, example, _ = export_model(tmp_path_factory.mktemp("wide"), (32, 256, 10))
    with running_server(str(path), "--example", str(example), "--workers", "2") as running:
        yield running


@pytest.mark.slow
def test_health_and_another_session_answer_while_a_long_inference_runs(server: Server) -> None:
    with InferenceClient(server.url) as first, InferenceClient(server.url) as second:
        done = threading.Event()
        results: list[np.ndarray] = []

        def long_inference() -> None:
            try:
                results.append(first.infer(np.full((2000, 32), 0.1)))  # batched: the long one
            finally:
                done.set()

        thread = threading.Thread(target=long_inference)
        thread.start()
        try:
            for _ in range(600):  # until the server says it is running the long request
                if httpx.get(f"{server.url}/health", timeout=30).json()["inferences_running"]:
                    break
                assert not done.wait(0.05), "the long inference ended before it was seen running"
            else:
                pytest.fail("the long inference never started")
            assert httpx.get(f"{server.url}/model", timeout=30).json()["input_shape"] == [32]
            answer = second.infer(np.full((1, 32), 0.1))  # another session, meanwhile
            still = httpx.get(f"{server.url}/health", timeout=30).json()["inferences_running"]
            assert not done.is_set() and still == 1, "the other answers had to wait for it"
        finally:
            thread.join(timeout=600)
        assert results and results[0].shape == (2000, 10)
        np.testing.assert_allclose(answer[0], results[0][0], atol=1e-3)
