"""What a client learns from the server's description is checked before any key is made
(issue #16): a wrong shape or an input beyond the calibrated range costs no key set and no
upload; a server calibrated only on the rows saved in its model file says so at start-up.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from pets_protocols.service import InferenceClient
from service_support import ROOT, Server, export_model, running_server

import pets


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    path, _, _ = export_model(tmp_path_factory.mktemp("model"), (8, 6, 3), samples=4)
    with running_server(str(path), "--workers", "1") as running:  # no --example
        yield running


def sessions(server: Server) -> int:
    return int(httpx.get(f"{server.url}/health", timeout=30).json()["sessions"])


def test_a_range_from_the_saved_rows_is_announced_at_start_up(server: Server) -> None:
    bound = InferenceClient(server.url, open_session=False).input_bound
    assert re.search(
        r"model.pt2: input range calibrated on the 4 example rows saved in the file: this "
        rf"server accepts inputs with \|x\| <= {bound:.3g} and clients are refused beyond; to "
        r"widen it, restart with --example typical_inputs.npy", server.log()), server.log()


def test_a_wrong_shape_fails_before_any_key_is_made(server: Server) -> None:
    before = sessions(server)
    with InferenceClient(server.url, open_session=False) as client:
        with pytest.raises(pets.ShapeMismatchError, match=re.escape(
            "this model takes inputs of shape (8,), got (2, 5); send a batch (n, *(8,))"
        )):
            client.infer(np.zeros((2, 5)))
        assert client.session_id is None and client.traffic.key_bytes == 0
    assert sessions(server) == before


def test_an_input_beyond_the_calibrated_range_fails_before_any_key_is_made(
    server: Server,
) -> None:
    with InferenceClient(server.url, open_session=False) as client:
        bound = client.input_bound
        assert bound is not None
        with pytest.raises(pets.ValueRangeError, match=re.escape(
            f"inputs reach |x| = 11, beyond the |x| <= {bound:.3g} the server's model was "
            "calibrated for"
        )):
            client.infer(np.full((1, 8), 11.0))
        assert client.session_id is None and client.traffic.key_bytes == 0


def test_pets_infer_refuses_a_wrong_shape_without_uploading_keys(server: Server,
                                                                 tmp_path: Path) -> None:
    np.save(tmp_path / "wrong.npy", np.zeros((3, 5)))
    before = sessions(server)
    result = subprocess.run(
        [sys.executable, "-m", "pets", "infer", server.url, "--input", str(tmp_path / "wrong.npy")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert result.returncode != 0
    assert "this model takes inputs of shape (8,), got (3, 5)" in result.stderr, result.stderr
    assert "session" not in result.stderr
    assert sessions(server) == before


def test_inputs_within_the_range_get_their_answers(server: Server) -> None:
    with InferenceClient(server.url, open_session=False) as client:
        assert client.infer(np.full((2, 8), 0.1)).shape == (2, 3)
        assert client.session_id is not None and client.traffic.key_bytes > 0
