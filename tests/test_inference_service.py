"""The encrypted-inference service between two real processes over TCP."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

import pets
from protocols.inference_service import InferenceClient


@pytest.fixture
def server() -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pets", "serve", "--model", "digits", "--quick", "--port", "0",
         "--max-clients", "2", "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"serving encrypted inference on 127\.0\.0\.1:(\d+)", line)
        if match:
            break
    else:
        pytest.fail(f"server did not start: {proc.wait()}")
    yield proc, int(match.group(1))
    proc.kill()
    proc.wait()


def test_client_gets_plaintext_answers_from_a_server_without_the_key(
    server: tuple[subprocess.Popen[str], int],
) -> None:
    from pets.bench.workloads import digits, train_digits_mlp

    _, port = server
    data = digits()
    reference = pets.compile(train_digits_mlp(epochs=10), backend=pets.backend("plain"),
                             example_input=data.x_train)
    with pets.measure() as cost, InferenceClient("127.0.0.1", port) as client:
        assert client.backend.has_secret_key
        batched = client.infer(data.x_test[:64])
        single = client.infer(data.x_test[:1], layout="per_sample")
    expected = reference.predict(data.x_test[:64])
    np.testing.assert_allclose(batched, expected, atol=1e-3)
    np.testing.assert_allclose(single, expected[:1], atol=1e-3)
    assert cost.bytes_sent > 64 * 64 * 8  # ciphertexts and public keys actually crossed
    assert cost.rounds == 4  # MODEL, READY, RESULT, RESULT


def test_server_errors_come_back_as_pets_errors(
    server: tuple[subprocess.Popen[str], int],
) -> None:
    from protocols.inference_service import INFER, RESULT, _expect

    _, port = server
    with InferenceClient("127.0.0.1", port) as client:
        with pytest.raises(pets.ShapeMismatchError, match=re.escape(
            "this model takes inputs of shape (64,), got (2, 10)"
        )):
            client.infer(np.ones((2, 10)))
        # bypass the client's own check: the server refuses, the same error type comes back
        client.conn.send(INFER, client.backend.encrypt(np.ones((2, 10))).to_bytes())
        with pytest.raises(pets.ShapeMismatchError, match=re.escape(
            "refused the request: this model takes 64 features per sample"
        )):
            _expect(client.conn, RESULT)
        np.testing.assert_allclose(client.infer(np.zeros((1, 64))).shape, (1, 10))


def test_a_dead_server_raises_party_error_not_a_hang(
    server: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = server
    client = InferenceClient("127.0.0.1", port, timeout=20)
    proc.kill()
    proc.wait()
    with pytest.raises(pets.PartyError, match=r"closed the connection|could not send|failed"):
        client.infer(np.zeros((1, 64)))


def test_unreachable_server_names_the_fix() -> None:
    with pytest.raises(pets.PartyError, match=re.escape("start the server first (pets serve)")):
        InferenceClient("127.0.0.1", 1, timeout=2)


def test_server_runs_an_exported_model_file(tmp_path: object) -> None:
    import pathlib

    import torch

    folder = pathlib.Path(str(tmp_path))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), pets.nn.Square(),
                              torch.nn.Linear(5, 2)).eval()
    x = torch.randn(16, 6)
    torch.export.save(torch.export.export(net, (x,)), folder / "model.pt2")
    np.save(folder / "inputs.npy", x.numpy())
    proc = subprocess.Popen(
        [sys.executable, "-m", "pets", "serve", "--model", str(folder / "model.pt2"),
         "--example", str(folder / "inputs.npy"), "--port", "0", "--max-clients", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert proc.stdout is not None
        port = next(int(m.group(1)) for line in proc.stdout
                    if (m := re.search(r"on 127\.0\.0\.1:(\d+)", line)))
        with InferenceClient("127.0.0.1", port) as client:
            out = client.infer(x[:3].numpy())
        np.testing.assert_allclose(out, net(x[:3]).detach().numpy(), atol=1e-4)
    finally:
        proc.kill()
        proc.wait()
