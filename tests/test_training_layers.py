"""fit's layers and losses: one step on the plain backend equals torch's to 1e-6.

The model holds every layer fit trains (Conv2d with padding, BatchNorm with
frozen statistics, ReLU, MaxPool2d, a second Conv2d, Tanh, AvgPool2d,
Flatten, Dropout, Linear, Sigmoid); torch runs BatchNorm in eval mode (the
frozen statistics) and Dropout with the mask fit draws from its seed.
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

SEED = 5


def _cnn(final: nn.Module | None = None, outputs: int = 3) -> nn.Sequential:
    torch.manual_seed(1)
    layers: list[nn.Module] = [
        nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Dropout(0.3), nn.Linear(16, 8), nn.Sigmoid(), nn.Linear(8, outputs),
    ]
    if final is not None:
        layers.append(final)
    net = nn.Sequential(*layers)
    with torch.no_grad():  # statistics that are not the defaults
        net[1].running_mean.copy_(torch.tensor([0.1, -0.2, 0.3]))
        net[1].running_var.copy_(torch.tensor([0.5, 2.0, 1.5]))
        net[1].weight.copy_(torch.tensor([1.2, 0.8, 1.1]))
    return net


def _dropout_masks(count: int, shape: tuple[int, ...], p: float, steps: int) -> list[np.ndarray]:
    """The masks fit draws for its steps (shuffle=False), from its public seed."""
    dropout = np.random.default_rng([SEED, 1])
    return [(dropout.random((count, *shape)) >= p) / (1.0 - p) for _ in range(steps)]


def _torch_step(net: nn.Sequential, x: np.ndarray, target: np.ndarray, loss: str,
                optimiser: str, lr: float, steps: int) -> nn.Module:
    net = copy.deepcopy(net).double()
    net.train()
    net[1].eval()  # frozen statistics
    masked = _Masked(_dropout_masks(len(x), (16,), 0.3, steps))
    net[8] = masked
    opt = (torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=0.01)
           if optimiser == "sgd" else torch.optim.Adam(net.parameters(), lr=lr))
    for _ in range(steps):
        opt.zero_grad()
        out = net(torch.tensor(x))
        t = torch.tensor(target)
        if loss == "cross_entropy":
            value = nn.functional.cross_entropy(out, t.argmax(dim=1))
        elif loss == "mse":
            value = nn.functional.mse_loss(out, t)
        else:
            value = nn.functional.binary_cross_entropy(out, t)
        value.backward()
        opt.step()
    return net


class _Masked(nn.Module):
    """Dropout with given masks, one per call."""

    def __init__(self, masks: list[np.ndarray]) -> None:
        super().__init__()
        self.masks = masks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tensor(self.masks.pop(0))


def _data(outputs: int, loss: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 1, 8, 8))
    if loss == "cross_entropy":
        return x, np.eye(outputs)[rng.integers(0, outputs, 6)]
    if loss == "bce":
        return x, rng.integers(0, 2, (6, outputs)).astype(float)
    return x, rng.normal(size=(6, outputs))


@pytest.mark.parametrize(("loss", "final", "outputs"), [
    ("cross_entropy", None, 3), ("mse", None, 2), ("bce", nn.Sigmoid(), 1),
])
def test_one_sgd_step_equals_torch(loss: str, final: nn.Module | None, outputs: int) -> None:
    net = _cnn(final, outputs)
    x, target = _data(outputs, loss)
    be = pets.backend("plain")
    model = pets.compile(net, backend=be, example_input=torch.zeros(2, 1, 8, 8))
    model.fit(be.encrypt(x), be.encrypt(target), epochs=1, lr=0.2, batch_size=6, loss=loss,
              shuffle=False, seed=SEED, momentum=0.9, weight_decay=0.01,
              logit_interval=(-30.0, 30.0))
    expected = _torch_step(net, x, target, loss, "sgd", 0.2, 1)
    trained = model.to_torch()
    assert trained is not None
    want = expected.state_dict()
    for name, got in trained.state_dict().items():
        if name in want:
            np.testing.assert_allclose(got.double().numpy(), want[name].numpy(), atol=1e-6,
                                       err_msg=name)


def test_plain_adam_and_momentum_take_torchs_steps() -> None:
    net = _cnn(None, 3)
    x, target = _data(3, "cross_entropy")
    for optimiser in ("adam", "sgd"):
        be = pets.backend("plain")
        model = pets.compile(net, backend=be, example_input=torch.zeros(2, 1, 8, 8))
        options = {"momentum": 0.9, "weight_decay": 0.01} if optimiser == "sgd" else {}
        model.fit(be.encrypt(x), be.encrypt(target), epochs=3, lr=0.05, batch_size=6,
                  shuffle=False, seed=SEED, optimizer=optimiser, logit_interval=(-30.0, 30.0),
                  **options)
        expected = _torch_step(net, x, target, "cross_entropy", optimiser, 0.05, 3)
        trained = model.to_torch()
        assert trained is not None
        want = expected.state_dict()
        for name, got in trained.state_dict().items():
            np.testing.assert_allclose(got.double().numpy(), want[name].numpy(), atol=1e-6,
                                       err_msg=f"{optimiser} {name}")


def test_mpc_cnn_step_follows_plain_within_fixed_point_error() -> None:
    net = _cnn(None, 3)
    x, target = _data(3, "cross_entropy")
    weights = {}
    for name in ("plain", "mpc"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pets.InsecureProviderWarning)
            be = pets.backend(name)
        model = pets.compile(net, backend=be, example_input=torch.zeros(2, 1, 8, 8))
        model.fit(be.encrypt(x), be.encrypt(target), epochs=1, lr=0.2, batch_size=6,
                  shuffle=False, seed=SEED)
        trained = model.to_torch()
        assert trained is not None
        weights[name] = trained.state_dict()
    for key, want in weights["plain"].items():
        np.testing.assert_allclose(weights["mpc"][key].numpy(), want.numpy(), atol=2e-3,
                                   err_msg=key)


def test_a_layer_without_backward_pass_is_refused_with_the_reason() -> None:
    net = nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 2))
    be = pets.backend("plain")
    model = pets.compile(net, backend=be, example_input=torch.zeros(2, 4))
    with pytest.raises(pets.UnsupportedModelError, match=re.escape(
        "gelu has no backward pass in pets.fit."
    )):
        model.fit(be.encrypt(np.zeros((2, 4))), be.encrypt(np.eye(2)), epochs=1)


def test_bce_needs_a_final_sigmoid() -> None:
    net = nn.Sequential(nn.Linear(4, 1))
    be = pets.backend("plain")
    model = pets.compile(net, backend=be, example_input=torch.zeros(2, 4))
    with pytest.raises(pets.CompileError, match=re.escape(
        "loss='bce' trains a model whose last layer is Sigmoid"
    )):
        model.fit(be.encrypt(np.zeros((2, 4))), be.encrypt(np.ones((2, 1))), loss="bce")
