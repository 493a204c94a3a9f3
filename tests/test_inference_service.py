"""The encrypted-inference service over HTTP: a real ``pets serve`` process, a real client.

Answers are compared with the torch model within 1e-3 (CKKS at the parameters
compile picks keeps ~1e-5 on these values). Errors are the pets error the server
names, raised again on the client.
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
from pets.backends.levelled import LevelledRequirements

TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    return export_model(tmp_path_factory.mktemp("model"), (8, 6, 3))


@pytest.fixture(scope="module")
def server(model_files: tuple[Path, Path, object]) -> Iterator[Server]:
    path, example, _ = model_files
    with running_server(str(path), "--example", str(example), "--max-sessions", "4",
                        "--max-rows", "64", "--workers", "1") as running:
        yield running


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[InferenceClient]:
    with InferenceClient(server.url) as session:
        yield session


def torch_outputs(net: object, x: np.ndarray) -> np.ndarray:
    import torch

    assert isinstance(net, torch.nn.Module)
    return net(torch.tensor(x, dtype=torch.float32)).detach().double().numpy()


def test_client_gets_the_models_answers_from_a_server_without_the_key(
    server: Server, model_files: tuple[Path, Path, object],
) -> None:
    x = np.random.default_rng(0).uniform(-1, 1, (40, 8))
    with pets.measure() as cost, InferenceClient(server.url) as client:
        assert client.backend.has_secret_key
        batched = client.infer(x)  # 40 rows: the batched packing
        single = client.infer(x[:1])  # one row: per sample, staged for the first product
        forced = client.infer(x[:2], layout="per_sample")
    expected = torch_outputs(model_files[2], x)
    np.testing.assert_allclose(batched, expected, atol=TOLERANCE)
    np.testing.assert_allclose(single, expected[:1], atol=TOLERANCE)
    np.testing.assert_allclose(forced, expected[:2], atol=TOLERANCE)
    traffic = client.traffic
    assert traffic.key_bytes > 1 << 20 and traffic.request_bytes > 8 * 100_000
    assert cost.bytes_sent == traffic.key_bytes + traffic.request_bytes
    assert cost.bytes_received >= traffic.response_bytes > 0  # + descriptions and receipts
    assert cost.rounds == traffic.requests == 6  # model, session, 3 inferences, close
    assert "public key set" in server.log() and "bytes in" in server.log()


def test_batches_over_the_row_limit_go_as_several_requests(
    client: InferenceClient, model_files: tuple[Path, Path, object],
) -> None:
    x = np.random.default_rng(1).uniform(-1, 1, (65, 8))  # the server takes 64 per request
    before = client.traffic.requests
    np.testing.assert_allclose(client.infer(x), torch_outputs(model_files[2], x), atol=TOLERANCE)
    assert client.traffic.requests - before == 2


def test_description_gives_shapes_and_requirements_not_weights(server: Server) -> None:
    description = httpx.get(f"{server.url}/model").json()
    assert description["input_shape"] == [8] and description["output_shape"] == [3]
    requirements = pets.Requirements.from_dict(description["requirements"])
    levelled = requirements.extension
    assert isinstance(levelled, LevelledRequirements)
    assert levelled.depth == 3 and levelled.matmul_shapes == ((8, 6), (6, 3))
    assert description["limits"]["max_rows"] == 64
    assert "weight" not in str(description)


def test_openapi_schema_documents_every_endpoint(server: Server) -> None:
    schema = httpx.get(f"{server.url}/openapi.json").json()
    paths = schema["paths"]
    assert set(paths) == {"/health", "/model", "/sessions", "/sessions/{session_id}",
                          "/sessions/{session_id}/inferences"}
    infer = paths["/sessions/{session_id}/inferences"]["post"]
    assert "application/octet-stream" in infer["requestBody"]["content"]
    assert "application/octet-stream" in infer["responses"]["200"]["content"]
    assert {"400", "404", "413", "422"} <= set(infer["responses"])
    assert "delete" in paths["/sessions/{session_id}"]
    assert "ErrorAnswer" in schema["components"]["schemas"]


def test_wrong_input_shape_is_refused_by_the_client(client: InferenceClient) -> None:
    with pytest.raises(pets.ShapeMismatchError, match=re.escape(
        "this model takes inputs of shape (8,), got (2, 10); send a batch (n, *(8,))"
    )):
        client.infer(np.ones((2, 10)))


def test_wrong_input_shape_is_refused_by_the_server_as_the_same_error(
    client: InferenceClient,
) -> None:
    tensor = client.backend.encrypt(np.ones((2, 5)), layout="per_sample")
    with pytest.raises(pets.ShapeMismatchError, match=re.escape(
        "the server refused the request (422): this model takes 8 features per sample, the "
        "tensor has shape (2, 5); encrypt (samples, 8) arrays"
    )):
        client._call("POST", f"/sessions/{client.session_id}/inferences", tensor.to_bytes())
    assert client.infer(np.zeros((1, 8))).shape == (1, 3)  # the session still works


def test_an_engine_error_inside_a_request_comes_back_as_its_pets_error(
    client: InferenceClient,
) -> None:
    x = client.backend.encrypt(np.full((1, 8), 0.5), layout="per_sample")
    used = x * x * x  # two levels spent: the model's depth 3 no longer fits
    with pytest.raises(pets.DepthExhaustedError, match=r"^the server refused the request "
                       r"\(422\): no multiplicative depth left"):
        client._call("POST", f"/sessions/{client.session_id}/inferences", used.to_bytes())
    assert client.infer(np.zeros((1, 8))).shape == (1, 3)


def test_a_closed_session_is_gone(server: Server) -> None:
    client = InferenceClient(server.url)
    session = client.session_id
    client.close()
    answer = httpx.post(f"{server.url}/sessions/{session}/inferences", content=b"x")
    assert answer.status_code == 404
    assert answer.json() == {"error": "MissingKeyError", "message": (
        f"no session '{session}' here: it was closed, expired after 600 s idle, or never "
        "existed; open a new one (POST /sessions with your public key set)")}
    with pytest.raises(pets.ServiceError, match="this client was closed"):
        client.infer(np.zeros((1, 8)))


def test_sessions_beyond_the_limit_are_refused_until_one_closes(server: Server) -> None:
    open_now = httpx.get(f"{server.url}/health").json()["sessions"]
    clients = [InferenceClient(server.url) for _ in range(4 - open_now)]
    try:
        with pytest.raises(pets.ServiceUnavailableError, match=re.escape(
            "the server refused the request (503): the server holds its maximum of 4 sessions"
        )):
            InferenceClient(server.url)
        clients.pop().close()
        clients.append(InferenceClient(server.url))
    finally:
        for c in clients:
            c.close()


def test_unreachable_server_names_the_fix() -> None:
    with pytest.raises(pets.ServiceUnavailableError, match=re.escape(
        "cannot reach http://127.0.0.1:1 (") and re.escape("start the server first (pets serve)")
    ):
        InferenceClient("http://127.0.0.1:1", timeout=5)


def test_pets_infer_and_serve_on_the_command_line(server: Server, tmp_path: Path,
                                                  model_files: tuple[Path, Path, object]) -> None:
    x = np.random.default_rng(2).uniform(-1, 1, (3, 8))
    np.save(tmp_path / "x.npy", x)
    result = subprocess.run(
        [sys.executable, "-m", "pets", "infer", server.url, "--input", str(tmp_path / "x.npy"),
         "--output", str(tmp_path / "y.npy")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "MiB received, 4 rounds" in result.stdout and "traffic: 4 requests" in result.stdout
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), torch_outputs(model_files[2], x),
                               atol=TOLERANCE)


def test_serving_a_torch_save_file_says_how_to_make_a_pt2(tmp_path: Path) -> None:
    import torch

    torch.save(torch.nn.Linear(2, 1), tmp_path / "net.pt")
    result = subprocess.run([sys.executable, "-m", "pets", "serve", str(tmp_path / "net.pt"),
                             "--port", "0"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"pets: SerializationError: {str(tmp_path / 'net.pt')!r} is not a torch.export file "
        "(RuntimeError); a torch.save (.pt) file cannot be served: export the model first: "
        "torch.export.save(torch.export.export(net.eval(), (x,)), 'model.pt2') with x a batch "
        "of typical inputs, then pets serve model.pt2"
    )


def test_an_approximated_activation_needs_calibration_inputs(tmp_path: Path) -> None:
    import torch
    from pets_protocols.service import ExportedModel, ServiceConfig
    from pets_protocols.service.app import describe_model

    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    torch.export.save(torch.export.export(net.eval(), (torch.randn(8, 4),)), tmp_path / "r.pt2")
    with pytest.raises(pets.CompileError, match=re.escape(
        "the model approximates relu by a polynomial over a range calibrated on typical "
        "inputs; pass them: pets serve MODEL --example inputs.npy"
    )):
        describe_model(ExportedModel(tmp_path / "r.pt2"), ServiceConfig())
    calibrated = ExportedModel(tmp_path / "r.pt2", np.random.default_rng(0).normal(size=(64, 4)))
    assert describe_model(calibrated, ServiceConfig()).input_shape == [4]


def test_a_saved_compiled_model_is_served_without_compiling_again(tmp_path: Path) -> None:
    import torch

    path, example, net = export_model(tmp_path, (8, 6, 3), seed=3)
    x = np.load(example)
    compiled = pets.compile(torch.export.load(path), backend=pets.backend("ckks"),
                            example_input=x)
    compiled.save(tmp_path / "model.pets")
    with running_server(str(tmp_path / "model.pets"), "--workers", "1") as server, \
            InferenceClient(server.url) as client:
        answers = client.infer(x[:5])
    np.testing.assert_allclose(answers, torch_outputs(net, x[:5]), atol=TOLERANCE)
