"""pets.compile for backends with exact comparisons (plain, mpc): op by op, any rank.

Plain results are compared with the float64 torch model at 1e-9 (where every
function is exact) or 1e-6; MPC in one process (CrypTen's fixed point, 16
fractional bits) within ``MPC_ATOL`` on outputs of order 1.
"""

from __future__ import annotations

import copy
import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import pets

MPC_ATOL = 2e-2


@pytest.fixture(scope="module")
def mpc() -> pets.Backend:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pets.InsecureProviderWarning)
        return pets.backend("mpc")


def _torch(net: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return np.asarray(copy.deepcopy(net).double()(x.double()).numpy())


class _Cnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(64, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.bn(self.conv(x))))
        return torch.softmax(self.fc(torch.flatten(x, 1)), dim=1)


class _Normed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.gn = nn.GroupNorm(2, 4)
        self.avg = nn.AvgPool2d(2)
        self.ln = nn.LayerNorm(16)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avg(nn.functional.gelu(self.gn(self.conv(x))))
        x = self.ln(torch.flatten(x, 1))
        return torch.tanh(self.fc(x)) + torch.sigmoid(self.fc(x)) * 0.5


def _seeded() -> None:
    torch.manual_seed(0)


def test_cnn_with_max_pool_and_softmax_matches_torch_on_plain() -> None:
    _seeded()
    net, x = _Cnn().eval(), torch.randn(6, 1, 8, 8)
    model = pets.compile(net, backend=pets.backend("plain"), example_input=x)
    np.testing.assert_allclose(model.predict(x), _torch(net, x), atol=1e-9)


def test_cnn_with_max_pool_and_softmax_matches_torch_under_mpc(mpc: pets.Backend) -> None:
    _seeded()
    net, x = _Cnn().eval(), torch.randn(6, 1, 8, 8)
    model = pets.compile(net, backend=mpc, example_input=x)
    np.testing.assert_allclose(model.predict(x), _torch(net, x), atol=MPC_ATOL)
    assert model.predict(x).argmax(1).tolist() == _torch(net, x).argmax(1).tolist()


def test_normalisations_and_smooth_activations_match_torch(mpc: pets.Backend) -> None:
    _seeded()
    net, x = _Normed().eval(), torch.randn(5, 2, 6, 6)
    plain = pets.compile(net, backend=pets.backend("plain"), example_input=x)
    np.testing.assert_allclose(plain.predict(x), _torch(net, x), atol=1e-9)
    shared = pets.compile(net, backend=mpc, example_input=x)
    np.testing.assert_allclose(shared.predict(x), _torch(net, x), atol=MPC_ATOL)


def test_inputs_keep_their_shape_and_flat_inputs_are_reshaped() -> None:
    _seeded()
    net, x = _Cnn().eval(), torch.randn(3, 1, 8, 8)
    model = pets.compile(net, backend="plain", example_input=x)
    assert model.encrypt(x).shape == (3, 1, 8, 8)
    assert model.encrypt(x.reshape(3, -1)).shape == (3, 1, 8, 8)
    assert (model.input_shape, model.output_shape) == ((1, 8, 8), (5,))


def test_every_unsupported_operation_is_listed_at_once() -> None:
    class Bad(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.log_softmax(torch.sqrt(x * x + 1.0), dim=1)

    with pytest.raises(pets.UnsupportedModelError) as caught:
        pets.compile(Bad(), backend="plain", example_input=torch.randn(2, 3))
    issues = {issue.problem for issue in caught.value.issues}
    assert issues == {
        "sqrt has no implementation on private data.",
        "log_softmax has no implementation on private data.",
    }
    assert "use softmax (or take argmax of the logits after revealing them)" in str(caught.value)


def test_wrong_input_shape_is_a_shape_mismatch() -> None:
    _seeded()
    model = pets.compile(_Cnn().eval(), backend="plain", example_input=torch.randn(2, 1, 8, 8))
    be = model.backend
    with pytest.raises(pets.ShapeMismatchError, match=re.escape(
        "this model takes samples of shape (1, 8, 8), got a private tensor of shape (2, 64)"
    )):
        model(be.encrypt(np.zeros((2, 64))))


def test_exact_lowering_needs_comparisons() -> None:
    with pytest.raises(pets.CompileError, match=re.escape(
        "approximate=False needs exact comparisons, which the ckks backend lacks"
    )):
        pets.compile(nn.Linear(2, 1), backend="ckks", example_input=torch.ones(2, 2),
                     approximate=False)


def test_secret_weights_need_a_backend_that_keeps_them() -> None:
    with pytest.raises(pets.CompileError, match=re.escape(
        "weights_from needs the exact lowering of a backend with private weights"
    )):
        pets.compile(nn.Linear(2, 1), backend="ckks", example_input=torch.ones(2, 2),
                     weights_from=0)
    with pytest.raises(pets.PartyError, match=re.escape(
        "weights_from=1 names no party: this plain backend has 1 party (ranks 0..0)"
    )):
        pets.compile(nn.Linear(2, 1), backend="plain", example_input=torch.ones(2, 2),
                     weights_from=1)


def test_weights_from_the_only_party_computes_the_same(mpc: pets.Backend) -> None:
    _seeded()
    net, x = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval(), torch.randn(5, 4)
    model = pets.compile(net, backend=mpc, example_input=x, weights_from=0)
    assert all(isinstance(v, pets.PrivateTensor) for v in model.parameters.values())
    np.testing.assert_allclose(model.predict(x), _torch(net, x), atol=MPC_ATOL)


def test_a_range_naming_no_approximated_function_is_refused() -> None:
    net = nn.Sequential(nn.Linear(3, 3), nn.Sigmoid())
    with pytest.raises(ValueError, match=re.escape(
        "ranges names ['relu'], which match no approximated function; under the exact lowering "
        "a name is a graph node: one of ['sigmoid']"
    )):
        pets.compile(net, backend="plain", example_input=torch.randn(4, 3),
                     ranges={"relu": (-1.0, 1.0)})


def test_a_float64_module_compiles_exactly() -> None:
    _seeded()
    net = nn.Sequential(nn.Linear(3, 2), nn.ReLU()).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    model = pets.compile(net, backend="plain", example_input=x)
    np.testing.assert_allclose(model.predict(x), _torch(net, x), atol=1e-12)


def test_declared_ranges_replace_calibration() -> None:
    _seeded()
    net = nn.Sequential(nn.Linear(3, 3), nn.Sigmoid())
    model = pets.compile(net, backend="plain", example_input=torch.randn(4, 3),
                         ranges={"sigmoid": (-9.0, 9.0)})
    assert model.intervals == {"sigmoid.input": (-9.0, 9.0)}
