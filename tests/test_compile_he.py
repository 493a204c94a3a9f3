"""pets.compile for HE: bad inputs, parameters sized from the model, saved models."""

from __future__ import annotations

import re

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
    products = model.requirements.extra["products"]
    assert len(products[1]["offsets"]) <= 49  # 7x7 shifts, not 256 diagonals
    out = model(model.backend.encrypt(model.flatten(x[:2]), layout="per_sample"))
    np.testing.assert_allclose(model.decrypt(out), _torch64(module, x[:2]), atol=CKKS_ATOL)


def test_a_cnn_runs_batched_too() -> None:
    torch.manual_seed(1)
    module = nn.Sequential(nn.Conv2d(1, 2, 3), pets.nn.Square(), nn.AvgPool2d(2),
                           nn.Flatten(), nn.Linear(8, 2)).eval()
    x = torch.randn(20, 1, 6, 6)
    model = pets.compile(module, backend=pets.backend("ckks"), example_input=x)
    batch = model.encrypt(x.numpy())
    assert batch.layout == "batched"
    np.testing.assert_allclose(model.decrypt(model(batch)), _torch64(module, x), atol=CKKS_ATOL)
