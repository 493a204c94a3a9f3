"""pets.compile for HE: bad inputs, parameters sized from the model, saved models."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch

import pets


def test_a_lambda_instead_of_a_module_names_the_fix() -> None:
    with pytest.raises(pets.CompileError, match=re.escape(
        "compile takes a torch.nn.Module or a torch.export.ExportedProgram, got a lambda; "
        "wrap the function in a module"
    )):
        pets.compile(lambda x: x * 2, backend="ckks", example_input=np.ones((2, 3)))


@pytest.mark.parametrize("shape", [(0, 3), (2, 0)])
def test_an_empty_example_input_names_the_fix(shape: tuple[int, int]) -> None:
    with pytest.raises(pets.CompileError, match=re.escape(
        f"example_input is empty (shape {shape}); pass a batch of typical inputs"
    )):
        pets.compile(torch.nn.Linear(3, 2), backend="ckks", example_input=np.zeros(shape))


# ---- convolutions as convolutions ---------------------------------------------------------

from torch import nn  # noqa: E402

from pets.compiler.layers import Affine, Square  # noqa: E402
from pets.slots import SparseMatrix  # noqa: E402

#: CKKS against the same arithmetic in the clear (values up to ~100)
CKKS_ATOL = 1e-2


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), pets.nn.Square(), nn.AvgPool2d(2),
        nn.Conv2d(2, 4, 3, padding=1), pets.nn.Square(), nn.Flatten(), nn.Linear(64, 3),
    ).eval()


def _pooled_cnn() -> nn.Module:
    """16x16 images: a pool then a conv, whose outputs are worth keeping on the canvas."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), pets.nn.Square(), nn.AvgPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1), pets.nn.Square(), nn.Flatten(), nn.Linear(256, 3),
    ).eval()


def _torch64(module: nn.Module, x: torch.Tensor) -> np.ndarray:
    import copy

    with torch.no_grad():
        return np.asarray(copy.deepcopy(module).double()(x.double()).numpy())


def test_convolutions_stay_sparse_and_match_torch() -> None:
    module, x = _cnn(), torch.randn(4, 1, 8, 8)
    model = pets.compile(module, backend="plain", example_input=x, approximate=True)
    assert [type(layer) for layer in model.layers] == [Affine, Square, Affine, Square, Affine]
    first, second = model.layers[0], model.layers[2]
    assert isinstance(first, Affine) and isinstance(first.weights[0], SparseMatrix)
    assert first.weights[0].nnz == 2 * (8 * 8 * 9 - 4 * 8 * 3 + 4)  # 3x3 windows inside 8x8
    assert isinstance(second, Affine) and isinstance(second.weights[0], SparseMatrix)
    assert "Convolution 2x8x8 -> 4x4x4 (sparse" in str(model)  # pool and conv in one layer
    np.testing.assert_allclose(model.predict(x), _torch64(module, x), atol=1e-9)


def test_a_huge_dense_region_is_reported_not_allocated(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setattr(sys.modules["pets.compiler.build"], "DENSE_LIMIT", 100)
    module = nn.Sequential(nn.Linear(20, 30), pets.nn.Square(), nn.Linear(30, 2))
    with pytest.raises(pets.UnsupportedModelError, match="as one dense matrix"):
        pets.compile(module, backend="plain", example_input=torch.randn(3, 20), approximate=True)


@pytest.fixture(scope="module")
def cnn_on_ckks() -> tuple[nn.Module, torch.Tensor, pets.PrivateModel]:
    module, x = _pooled_cnn(), torch.randn(6, 1, 16, 16)
    model = pets.compile(module, backend=pets.backend("ckks"), example_input=x)
    return module, x, model


def test_a_first_convolution_is_gathered_by_the_client(
    cnn_on_ckks: tuple[nn.Module, torch.Tensor, pets.PrivateModel],
) -> None:
    """im2col at the client: one plaintext product per ciphertext, no dense matrix."""
    module, x, model = cnn_on_ckks
    one = model.encrypt(x[:1].numpy())
    assert one.layout == "per_sample" and one.data.gathered
    assert 1 <= len(one.data.cts[0]) <= 3  # 9 terms x 1024 slots: a few ciphertexts
    np.testing.assert_allclose(model.backend.decrypt(one), x[:1].reshape(1, -1).numpy(),
                               atol=1e-6)  # the windows scatter back onto the image
    np.testing.assert_allclose(model.decrypt(model(one)), _torch64(module, x[:1]),
                               atol=CKKS_ATOL)


def test_a_strided_convolution_keeps_its_outputs_on_the_canvas(
    cnn_on_ckks: tuple[nn.Module, torch.Tensor, pets.PrivateModel],
) -> None:
    """pool + stride-2 conv: outputs stay at their inputs' slots, 4 channels per 2x2 cell."""
    module, x, model = cnn_on_ckks
    strided = model.layers[2]
    assert isinstance(strided, Affine) and strided.placement is not None
    assert strided.placement[:4].tolist() == [0, 2, 4, 6]  # every other slot of a row
    assert sorted(strided.placement.tolist())[:4] == [0, 1, 2, 3]  # channels share a cell
    products = model.levelled_requirements.products
    assert len(products[1]["offsets"]) <= 49  # 7x7 shifts, not 256 diagonals
    out = model(model.backend.encrypt(model.flatten(x[:2]), layout="per_sample"))
    np.testing.assert_allclose(model.decrypt(out), _torch64(module, x[:2]), atol=CKKS_ATOL)


def test_a_cnn_runs_batched_too() -> None:
    torch.manual_seed(1)
    module = nn.Sequential(nn.Conv2d(1, 2, 3), pets.nn.Square(), nn.AvgPool2d(2),
                           nn.Flatten(), nn.Linear(8, 2)).eval()
    x = torch.randn(20, 1, 6, 6)
    model = pets.compile(module, backend=pets.backend("ckks"), example_input=x)
    batch = model.encrypt(x.numpy(), layout="batched")
    np.testing.assert_allclose(model.decrypt(model(batch)), _torch64(module, x), atol=CKKS_ATOL)


# ---- compiled models that save and load ---------------------------------------------------


def test_a_saved_model_runs_on_the_server_without_recompiling(
    cnn_on_ckks: tuple[nn.Module, torch.Tensor, pets.PrivateModel], tmp_path: Any,
) -> None:
    module, x, model = cnn_on_ckks
    path = tmp_path / "cnn.pets"
    model.save(path)
    client = model.backend
    server = pets.load_backend(client.public().to_bytes())
    served = pets.load_model(path, backend=server)
    assert str(served).splitlines()[1:3] == str(model).splitlines()[1:3]
    request = model.encrypt(x[:1].numpy()).to_bytes()
    response = served(server.load_tensor(request)).to_bytes()
    logits = model.decrypt(client.load_tensor(response))
    np.testing.assert_allclose(logits, _torch64(module, x[:1]), atol=CKKS_ATOL)


def test_an_approximated_model_round_trips(tmp_path: Any) -> None:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).eval()
    x = torch.randn(32, 4)
    model = pets.compile(module, backend="plain", example_input=x, approximate=True)
    model.save(tmp_path / "m.pets")
    loaded = pets.load_model(tmp_path / "m.pets", backend="plain")
    assert loaded.approximations == model.approximations
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


@pytest.mark.parametrize("damage", ["flip", "truncate", "foreign", "empty"])
def test_a_damaged_or_foreign_model_file_is_refused(tmp_path: Any, damage: str) -> None:
    model = pets.compile(nn.Linear(3, 2), backend="plain", example_input=torch.randn(4, 3),
                         approximate=True)
    path = tmp_path / "m.pets"
    model.save(path)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x55
    elif damage == "truncate":
        data = data[: len(data) - 40]
    elif damage == "foreign":
        data = bytearray(b"\x80\x04\x95" + bytes(200))  # a pickle's first bytes
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with pytest.raises(pets.SerializationError):
        pets.load_model(path, backend="plain")


def test_a_forged_model_header_is_refused(tmp_path: Any) -> None:
    from pets.serialization import pack, unpack

    model = pets.compile(nn.Linear(3, 2), backend="plain", example_input=torch.randn(4, 3),
                         approximate=True)
    model.save(tmp_path / "m.pets")
    envelope = unpack((tmp_path / "m.pets").read_bytes(), kind="model")
    envelope.meta["layers"][0]["weights"][0]["dense"]["shape"] = [30, 2]
    with pytest.raises(pets.SerializationError, match="holds 48 bytes, not 480"):
        pets.load_model(pack(envelope), backend="plain")


def test_a_model_for_another_backend_names_the_one_to_use(tmp_path: Any) -> None:
    model = pets.compile(nn.Linear(3, 2), backend="plain", example_input=torch.randn(4, 3),
                         approximate=True)
    model.save(tmp_path / "m.pets")
    with pytest.raises(pets.SerializationError, match=re.escape(
        "this model was compiled for the plain backend; load it with pets.backend('plain')"
    )):
        pets.load_model(tmp_path / "m.pets", backend=pets.backend("ckks", depth=1))


# ---- parameters from the precision a model needs; accuracy you can trust -------------------


def _trained_mlp(x: np.ndarray, y: np.ndarray, hidden: int = 16) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                        nn.ReLU(), nn.Linear(hidden, int(y.max()) + 1))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    inputs, targets = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    for _ in range(150):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(inputs), targets).backward()
        optimizer.step()
    return net.eval()


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, np.ndarray, nn.Module, pets.PrivateModel]:
    """Issue #7: a two-ReLU MLP on standardised breast cancer no longer fails to compile."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    net = _trained_mlp(x, y)
    model = pets.compile(net, backend=pets.backend("ckks"), example_input=x)
    return x, y, net, model


def test_a_two_relu_mlp_on_standardised_data_compiles_and_agrees(
    cancer: tuple[np.ndarray, np.ndarray, nn.Module, pets.PrivateModel],
) -> None:
    x, _y, _net, model = cancer
    simulated = model.simulate(x[:4])  # the approximated model, in the clear
    np.testing.assert_allclose(model.predict(x[:4]), simulated, atol=1e-2)


def test_print_and_describe_say_why_the_parameters_were_chosen(
    cancer: tuple[np.ndarray, np.ndarray, nn.Module, pets.PrivateModel],
) -> None:
    _x, _y, _net, model = cancer
    why = model.backend.describe()["why"]
    assert why[0].startswith("N=") and "smallest ring" in why[0]
    assert why[1].startswith("scale 2**") and "within the precision asked" in why[1]
    assert f"{model.precision:.2g}" in why[1]
    assert why[2].startswith("first prime = scale + ")
    assert "  parameters: N=" in str(model)


def test_inputs_outside_the_calibrated_range_are_refused_or_warned(
    cancer: tuple[np.ndarray, np.ndarray, nn.Module, pets.PrivateModel],
) -> None:
    x, _y, _net, model = cancer
    with pytest.raises(pets.ValueRangeError, match=re.escape(
        f"beyond the range this model was calibrated for (|x| <= {model.input_bound:.3g}"
    )):
        model.encrypt(x[:2] * 5)
    with pytest.warns(UserWarning, match="check_range='warn': encrypting anyway"):
        model.encrypt(x[:2] * 5, check_range="warn")
    model.encrypt(x[:2] * 5, check_range="off")


def test_a_far_off_approximation_warns() -> None:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(2, 3), nn.Sigmoid(), nn.Linear(3, 1)).eval()
    x = torch.randn(64, 2) * 6
    with pytest.warns(pets.compiler.ApproximationWarning, match="standing in for sigmoid"):
        pets.compile(module, backend="plain", example_input=x, approximate=True)


def test_precision_raises_degrees_until_the_example_agrees() -> None:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).eval()
    x = torch.randn(64, 2) * 2
    default = pets.compile(module, backend="plain", example_input=x, approximate=True)
    precise = pets.compile(module, backend="plain", example_input=x, approximate=True,
                           precision=0.05)
    assert precise.approximations[0].degree > default.approximations[0].degree
    np.testing.assert_allclose(precise.predict(x), _torch64(module, x), atol=0.025)


# ---- models from where users have them ----------------------------------------------------


def test_scikit_learn_models_compile_for_ckks() -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    x, y = load_iris(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    backend = pets.backend("ckks")
    logistic = LogisticRegression(max_iter=500).fit(x, y)
    model = pets.compile(logistic, backend=backend, example_input=x)
    np.testing.assert_allclose(model.predict(x[:3]), logistic.decision_function(x[:3]),
                               atol=1e-3)
    mlp = MLPClassifier(hidden_layer_sizes=(8,), activation="tanh", max_iter=300,
                        random_state=0).fit(x, y)
    model = pets.compile(mlp, backend="plain", example_input=x, approximate=True,
                         precision=0.05)
    assert model.approximations[0].function == "tanh"
    assert np.mean(model.predict(x).argmax(axis=1) == mlp.predict(x)) >= 0.95


def test_what_make_private_returns_compiles() -> None:
    import warnings

    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), pets.nn.Square(), nn.Linear(6, 2))
    data = TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        training = pets.dp.make_private(
            module=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
            data_loader=DataLoader(data, batch_size=16), target_epsilon=2.0,
            target_delta=1e-5, epochs=1, max_grad_norm=1.0, accountant="rdp")
    x = torch.randn(8, 4)
    for source in (training, training.module):  # the result, and Opacus' GradSampleModule
        model = pets.compile(source, backend="plain", example_input=x, approximate=True)
        np.testing.assert_allclose(model.predict(x), _torch64(net, x), atol=1e-9)


def test_the_dp_then_encrypted_example_agrees_with_plaintext() -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "dp_then_encrypted.py"
    done = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "predictions agree with plaintext on 100.0%" in done.stdout
    assert "Full backward hook" not in done.stderr


def test_a_precision_no_secure_size_reaches_names_the_costliest_layer() -> None:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 8), pets.nn.Square(), nn.Linear(8, 8), pets.nn.Square(),
                           nn.Linear(8, 2)).eval()
    with pytest.raises(pets.ParameterError, match=r"no 128-bit-secure CKKS parameters reach "
                       r"precision 1e-12 at depth 5(.|\n)*the layer that costs the most: "):
        pets.compile(module, backend=pets.backend("ckks"), example_input=torch.randn(16, 4),
                     precision=1e-12)
