"""No silent accuracy loss: compile warns when its polynomials change predictions, names the
fixes, and pets.nn.he_friendly applies the last of them; embeddings get the one-hot advice."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import pets
from pets.compiler import ApproximationWarning
from pets.errors import ParameterError, UnsupportedModelError


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8), torch.tensor(y)


@pytest.fixture(scope="module")
def relu_cnn(digits: tuple[torch.Tensor, torch.Tensor]) -> nn.Module:
    """The issue's model: Conv -> ReLU -> AvgPool -> Linear -> ReLU -> Linear, trained briefly."""
    x, y = digits
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(2):
        for start in range(0, 1400, 64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(x[start:start + 64]), y[start:start + 64]).backward()
            optimizer.step()
    return net.eval()


def _compile(net: nn.Module, example: torch.Tensor, **options: Any) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = pets.compile(net, backend="plain", example_input=example, approximate=True,
                             **options)
    return model, [str(w.message) for w in caught if issubclass(w.category, ApproximationWarning)]


def test_the_relu_cnn_warns_or_predicts_as_torch(
    relu_cnn: nn.Module, digits: tuple[torch.Tensor, torch.Tensor]
) -> None:
    example = digits[0][1400:]
    model, messages = _compile(relu_cnn, example)  # what CKKS computes, in the clear
    with torch.no_grad():
        expected = relu_cnn(example).argmax(dim=1).numpy()
    changed = int(np.sum(model.simulate(example.numpy()).argmax(axis=1) != expected))
    if changed == 0:
        return
    (message,) = [m for m in messages if "predictions on the example change" in m]
    assert f"{changed} of {len(example)} predictions on the example change" in message
    for fix in ('precision="predictions"', "a higher degree", "pets.nn.Square",
                "pets.nn.he_friendly"):
        assert fix in message


def test_an_exact_square_model_does_not_warn(digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), pets.nn.Square(), nn.Linear(16, 10))
    model, messages = _compile(net, digits[0][:50])
    assert model.approximations == [] and messages == []


def test_he_friendly_swaps_relus_and_the_result_compiles_exactly(
    relu_cnn: nn.Module, digits: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = digits
    result = pets.nn.he_friendly(relu_cnn, (x[:1400], y[:1400]), epochs=2,
                                 validation=(x[1400:], y[1400:]))
    assert [kind for _, kind, _ in result.replaced] == ["ReLU", "ReLU"]
    assert isinstance(relu_cnn[1], nn.ReLU)  # the given model is untouched
    with torch.no_grad():
        assert result.accuracy_before == pytest.approx(
            float((relu_cnn(x[1400:]).argmax(1) == y[1400:]).float().mean()))
    assert result.accuracy_after >= result.accuracy_before - 0.05  # fine-tuned, not ruined
    model, messages = _compile(result.model, x[1400:])
    assert model.approximations == [] and messages == []
    compiled = model.simulate(x[1400:].numpy()).argmax(axis=1)
    assert float(np.mean(compiled == y[1400:].numpy())) == pytest.approx(result.accuracy_after)
    assert "he_friendly: accuracy" in str(result)


def test_he_friendly_needs_an_activation_to_replace() -> None:
    net = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(ParameterError, match="has no ReLU, GELU or SiLU module to replace"):
        pets.nn.he_friendly(net, (torch.zeros(4, 4), torch.zeros(4)), epochs=1)


def test_he_friendly_refuses_data_that_is_not_a_pair() -> None:
    net = nn.Sequential(nn.Linear(4, 2), nn.ReLU())
    with pytest.raises(ParameterError, match=r"data must be a pair \(inputs, labels\)"):
        pets.nn.he_friendly(net, torch.zeros(4, 4), epochs=1)


@pytest.mark.parametrize("name", ["plain", "mpc", "ckks"])
def test_an_embedding_gets_the_one_hot_advice_on_every_backend(name: str) -> None:
    net = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(8, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pets.InsecureProviderWarning)
        backend = pets.backend(name)
    with pytest.raises(UnsupportedModelError,
                       match=r"0 \(Embedding\): looks rows up by integer index.* Fix: one-hot "
                             r"encode the indices .* nn\.Linear\(10, 4, bias=False\)"):
        pets.compile(net, backend=backend, example_input=torch.tensor([[1, 2], [3, 4]]))
